"""Never act blind and no flapping, on the real local stack.

Never act blind: Prometheus stopped by PID mid-run, then restarted.
The 7-21 app runs on the local Kubernetes 1.20 control plane; a real Prometheus on 127.0.0.1
scrapes a latency gauge held above the QoS threshold every second, and the production controller
(``build_controller``: KubeOps, the policy client, PrometheusMetrics) reads it. While Prometheus is
stopped, monitoring cycles ask nothing and move nothing, and each writes one ``blind`` record with
the reason (and a count in ``reach_migrator_blind_cycles_total``); once Prometheus is back, the
next cycle says ``resumed`` and migrates the pod the fake policy names.

No flapping: a fake policy that, after moving a db pod S → T, keeps asking to move it back, first
with the service's predicted latencies saying the way back is worse, then without predictions. The
controller (its own settings: minimum predicted gain 1 ms, return hold-down 600 s) migrates once,
refuses ``gain-too-small`` and then ``return-hold-down``, and the pod stays on T.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e
NS = "default"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrometheusProcess:
    """A Prometheus on one loopback port and one TSDB, started and stopped by its PID."""

    def __init__(self, binary: str, workdir: Path, target: str):
        self.binary, self.workdir, self.port = binary, workdir, _free_port()
        self.config = workdir / "prometheus.yml"
        self.config.write_text(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: reach-exporter\n"
            f"    static_configs:\n      - targets: ['{target}']\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = [self.binary, f"--config.file={self.config}", f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}"]  # fmt: skip
        with (self.workdir / "prometheus.log").open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.workdir / "prometheus.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise TimeoutError(f"Prometheus on {self.url} not ready in 30 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        self.proc = None


@pytest.fixture
def latency_target() -> Iterator[str]:
    """A latency gauge at 300 ms (above REACH's 250 ms QoS), served on a free loopback port."""
    from prometheus_client import CollectorRegistry, Gauge, start_http_server

    registry = CollectorRegistry()
    Gauge("reach_app_latency_ms", "Application latency, fixed by the test", registry=registry).set(300.0)
    port = _free_port()
    server, _ = start_http_server(port, addr="127.0.0.1", registry=registry)
    yield f"127.0.0.1:{port}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def prometheus(latency_target: str, tmp_path: Path) -> Iterator[PrometheusProcess]:
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("REACH_REQUIRE_CLUSTER"):
            raise RuntimeError("REACH_REQUIRE_CLUSTER is set but prometheus is not installed (deploy/local/install.sh)")
        pytest.skip("prometheus is not installed: run deploy/local/install.sh")
    process = PrometheusProcess(binary, tmp_path, latency_target)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def wait_for_latency(controller: Any, timeout_s: float = 30.0) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reading = controller.latency()
        if reading.value_ms is not None:
            return float(reading.value_ms)
        time.sleep(0.5)
    raise AssertionError(f"Prometheus gave no fresh latency in {timeout_s:.0f} s: {controller.latency()}")


def app_placement(core: Any) -> dict[str, str]:
    pods = core.list_namespaced_pod(NS, label_selector="reach.io/app=demo").items
    return {p.metadata.name: p.spec.node_name for p in pods if not p.metadata.deletion_timestamp}


def first_move(request: dict[str, Any]) -> dict[str, Any]:
    """The first db pod that may move, to its first deployable node (the request's own answer)."""
    for ref in request["cluster_state"]["services"]["db"]["pods"]:
        targets = request["pod_deployable"].get(ref["pod_name"])
        if targets:
            return {"pod_name": ref["pod_name"], "target_node": targets[0], "is_stop": False}
    return {"pod_name": "", "target_node": "", "is_stop": True}


def test_prometheus_stopped_mid_run_means_no_move_and_a_reason_then_the_loop_resumes(
    core: Any, demo_app: Any, fake_policy: Any, settings_for: Any, prometheus: PrometheusProcess
) -> None:
    from migrator.app import build_controller
    from migrator.telemetry import MigratorTelemetry

    fake_policy.answer = first_move
    telemetry = MigratorTelemetry()
    settings = settings_for(fake_policy.url, prometheus_url=prometheus.url, qos_threshold_ms=250.0,
                            latency_max_age_s=30.0)  # fmt: skip
    controller = build_controller(settings, telemetry)
    assert wait_for_latency(controller) == 300.0

    prometheus.stop()
    before = app_placement(core)
    for _ in range(2):
        [outcome] = controller.monitoring_step()
        assert outcome.kind == "blind", outcome
    assert fake_policy.requests == [] and app_placement(core) == before
    blind = [r for r in controller.journal.records if r["event"] == "blind"]
    assert [r["reason"] for r in blind] == ["prometheus-unreachable"] * 2, blind
    assert prometheus.url in str(blind[0]["detail"]) and blind[0]["action"] == "none"
    counted = telemetry.registry.get_sample_value(
        "reach_migrator_blind_cycles_total", {"reason": "prometheus-unreachable"}
    )
    assert counted == 2

    prometheus.start()
    wait_for_latency(controller)
    [outcome] = controller.monitoring_step()
    assert outcome.kind == "migrated", controller.journal.records[-4:]
    assert len(fake_policy.requests) == 1
    assert "resumed" in [r["event"] for r in controller.journal.records]
    assert app_placement(core) != before


def test_a_policy_that_would_flap_is_stopped_after_one_move(
    core: Any, demo_app: Any, fake_policy: Any, settings_for: Any
) -> None:
    from migrator.app import build_controller

    moved: dict[str, str] = {}
    original_pods: set[str] = set()

    def flapping(request: dict[str, Any]) -> dict[str, Any]:
        if not moved:
            answer = first_move(request)
            original_pods.update(app_placement(core))
            moved.update(source=app_placement(core)[answer["pod_name"]], target=answer["target_node"])
            return {**answer, "predicted_latency_before_ms": 110.65, "predicted_latency_after_ms": 109.6}
        [pod] = [ref["pod_name"] for ref in request["cluster_state"]["services"]["db"]["pods"]
                 if ref["pod_name"] not in original_pods]  # the replacement, on the target  # fmt: skip
        back = {"pod_name": pod, "target_node": moved["source"], "is_stop": False}
        if len(fake_policy.requests) == 2:  # the service's own prediction: the way back is worse
            return {**back, "predicted_latency_before_ms": 109.6, "predicted_latency_after_ms": 110.65}
        return back  # a REACH-compatible policy without predictions

    fake_policy.answer = flapping
    controller = build_controller(settings_for(fake_policy.url, return_hold_down_s=600.0, min_predicted_gain_ms=1.0))
    kinds = [controller.run_cycle()[0] for _ in range(4)]
    assert [o.kind for o in kinds] == ["migrated", "refused", "refused", "refused"], [o.detail for o in kinds]
    reasons = [o.verdict.reason.value for o in kinds[1:] if o.verdict and o.verdict.reason]
    assert reasons == ["gain-too-small", "return-hold-down", "return-hold-down"]
    db_nodes = {node for pod, node in app_placement(core).items() if pod.startswith("db-")}
    assert moved["target"] in db_nodes
