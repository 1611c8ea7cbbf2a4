"""Entry point of the migrator process: wire settings to the Kubernetes, policy and Prometheus clients and run.

``run_migrator`` is what ``reach migrate`` and ``python -m migrator`` (the in-cluster Deployment)
call. It configures logging (one JSON record per line on stderr), builds the real clients, and
stops cleanly on SIGTERM/SIGINT after the current step; a migrator killed harder than that leaves
annotations that the next start rolls back (``Controller.clean_up``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from migrator.actuator import SystemClock
from migrator.controller import Controller
from migrator.kube import KubeLeaseStore, KubeOps, make_api_client
from migrator.lease import LeaderLease, LeaseRenewer, default_identity
from migrator.policy import PolicyClient
from migrator.settings import MigratorSettings
from migrator.telemetry import InstrumentedController, MeteredJournal, MigratorTelemetry, TimedAdvisor

LEASE_NOT_HELD_EXIT = 3  # ``once`` never got the cluster's migrator Lease: nothing was done


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(stream=sys.stderr, level=level, format="%(message)s")


def build_controller(
    settings: MigratorSettings, telemetry: MigratorTelemetry | None = None, with_lease: bool = False
) -> Controller:
    """The production wiring of a controller from settings (no network call happens here).

    With ``telemetry`` the controller counts its records and times its questions and cycles. With
    ``with_lease`` (the long-running migrator: :func:`run_migrator`, when ``leader_election`` is on and
    it is not a dry run) it writes only while it holds the cluster's migrator Lease (:mod:`migrator.lease`).
    In-process callers that build a controller per run (the demo, the benchmarks) leave it off: a
    controller they drop without ``run`` returning would keep the Lease until it expires.
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
    if with_lease:
        store = KubeLeaseStore(api_client, settings.lease_namespace, settings.lease_name, settings.api_timeout_s)
        identity = settings.lease_identity or default_identity()
        controller.lease = LeaderLease(store, identity, settings.lease_duration_s)
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
    controller = build_controller(settings, telemetry, with_lease=settings.leader_election and not settings.dry_run)
    stopping = lambda: stop_requested["flag"]  # noqa: E731
    with contextlib.ExitStack() as stack:
        if controller.lease is not None:  # renewed from its own thread too: migrations and rollbacks included
            stack.enter_context(LeaseRenewer(controller.lease))
        ran = controller.run(should_stop=stopping, interrupt=stopping)
    if ran:
        return 0
    lease = controller.lease
    holder = f" {lease.store.where}" if lease is not None else ""
    logging.getLogger("reach.migrator").info(
        json.dumps({"event": "exit", "code": LEASE_NOT_HELD_EXIT, "reason": "--once: another migrator held the Lease"
                    f"{holder} throughout; nothing was done (run with --dry-run to only look)"})
    )  # fmt: skip
    return LEASE_NOT_HELD_EXIT
