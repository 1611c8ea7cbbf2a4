"""Entry point of the migrator process: wire settings to the Kubernetes, policy and Prometheus clients and run.

``run_migrator`` is what ``reach migrate`` and ``python -m migrator`` (the in-cluster Deployment)
call. It configures logging (one JSON record per line on stderr), builds the real clients, and
stops cleanly on SIGTERM/SIGINT after the current step; a migrator killed harder than that leaves
annotations that the next start rolls back (``Controller.clean_up``).
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from migrator.actuator import SystemClock
from migrator.controller import Controller
from migrator.kube import KubeOps, make_api_client
from migrator.policy import PolicyClient
from migrator.settings import MigratorSettings
from migrator.telemetry import InstrumentedController, MeteredJournal, MigratorTelemetry, TimedAdvisor


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(stream=sys.stderr, level=level, format="%(message)s")


def build_controller(settings: MigratorSettings, telemetry: MigratorTelemetry | None = None) -> Controller:
    """The production wiring of a controller from settings (no network call happens here).

    With ``telemetry`` the controller counts its records and times its questions and cycles.
    """
    api_client = make_api_client(settings.kubeconfig)
    ops = KubeOps(
        api_client, settings.namespace, settings.pod_selector, settings.event_component, settings.api_timeout_s
    )
    policy = PolicyClient(
        settings.policy_url,
        settings.policy_timeout_s,
        settings.policy_retries,
        settings.policy_backoff_s,
        endpoint_file=Path(settings.policy_endpoint_file) if settings.policy_endpoint_file else None,
    )
    controller: Controller
    if telemetry is None:
        controller = Controller(settings, ops, policy, SystemClock())
    else:
        advisor = TimedAdvisor(policy, telemetry)
        journal = MeteredJournal(telemetry=telemetry)
        controller = InstrumentedController(settings, ops, advisor, SystemClock(), journal=journal, telemetry=telemetry)
    if settings.prometheus_url:
        from migrator.metrics import PrometheusMetrics

        metrics = PrometheusMetrics(
            settings.prometheus_url,
            settings.latency_query,
            settings.node_usage_query,
            max_age_s=settings.latency_max_age_s,
            measured_delay_query=settings.measured_delay_query,
            node_utilization_query=settings.node_utilization_query,
        )
        controller.latency = metrics.read_latency
        controller.measured_conditions = metrics.measured_conditions
    return controller


def run_migrator(settings: MigratorSettings) -> int:
    """Run the controller until its mode ends (``once``) or a stop signal; returns an exit code."""
    configure_logging()
    stop_requested = {"flag": False}

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        stop_requested["flag"] = True
        logging.getLogger("reach.migrator").info('{"event": "stop-requested", "signal": %d}', signum)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    telemetry = None
    if settings.metrics_port is not None:
        telemetry = MigratorTelemetry()
        telemetry.serve(settings.metrics_port, settings.metrics_host)
    controller = build_controller(settings, telemetry)
    controller.run(should_stop=lambda: stop_requested["flag"])
    return 0
