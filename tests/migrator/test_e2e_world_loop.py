"""The closed loop judged by the world: live cluster → world (Istio metrics) → Prometheus → policy → migrator.

On the real local Kubernetes 1.20 control plane the 7-21 app is placed deliberately poorly. The
world (:mod:`flows.loop.world_live`, the request-level emulation, not the twin's formula) runs in
real time on the pods the API server reports and publishes Istio's request-duration histogram;
a real Prometheus scrapes it, and the migrator reads the application's latency with the PromQL of
an Istio cluster (mean = rate(sum) / rate(count) over the client's calls to the aggregator). The
policy is the greedy stand-in (moves chosen by the twin). Pass or fail is decided by the world's
latency as Prometheus reports it: the mean and the p95 after the moves must be lower than before.
The traces the live world exported on the poor start (``reach demo``'s stage 1) must pass the
profile checks that the pipeline's ingest step runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .e2e_support import SCENARIO, running_prometheus
from .test_e2e_closed_loop import (  # noqa: F401  (fixtures, used by name)
    WORKLOAD,
    migrated_records,
    poor_app,
    prometheus_binary,
    run_until_stop,
    standin,
)

pytestmark = pytest.mark.e2e
NS = "default"
WINDOW = "20s"  # the rate window: short, so that "after" holds no request of "before"
WORLD_RPS = 2.0  # 10 requests/s in real time: ~200 in a window


@pytest.fixture
def world(kubeconfig: str, tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """The live world in a thread, its metrics on a free loopback port, its recent traces in ``world-traces.json``
    (as ``world_live --traces`` writes them for ``reach demo``'s stage 1); yields host:port and the LiveWorld."""
    from prometheus_client import CollectorRegistry, start_http_server

    from ceenv.scenario import load_scenario
    from ceenv.workload import load_workload
    from flows.local.processes import free_port
    from flows.loop.exporter import pod_lister
    from flows.loop.world.model import WorldOptions
    from flows.loop.world_live import LiveWorld, MeshCollector, TraceExport

    scenario = load_scenario(SCENARIO)
    workload = load_workload(WORKLOAD, scenario)
    live = LiveWorld(
        scenario,
        workload,
        pod_lister(kubeconfig, NS, "reach.io/app=demo"),
        WorldOptions(rps_multiplier=WORLD_RPS),
        seed=0,
        traces=TraceExport(tmp_path / "world-traces.json", window_s=20.0),
    )
    stop = threading.Event()
    runner = threading.Thread(target=live.run, args=(stop,), daemon=True)
    runner.start()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MeshCollector(live))
    port = free_port()
    server, _ = start_http_server(port, addr="127.0.0.1", registry=registry)
    yield f"127.0.0.1:{port}", live
    stop.set()
    runner.join(timeout=10)
    server.shutdown()
    server.server_close()


@pytest.fixture
def mesh_prometheus(prometheus_binary: str, world: tuple[str, Any], tmp_path: Path) -> Iterator[str]:  # noqa: F811
    """A real Prometheus on 127.0.0.1 scraping the world every second; stopped by PID."""
    with running_prometheus(prometheus_binary, tmp_path, "reach-world", world[0]) as url:
        yield url


def world_latency(prometheus_url: str, query: str, settle_s: float, timeout_s: float = 60.0) -> float:
    """The world's latency by ``query`` once a full rate window passed on the current placement."""
    from migrator.metrics import PrometheusMetrics

    time.sleep(settle_s)
    reader = PrometheusMetrics(prometheus_url, query, "reach_node_cpu_usage_millicores")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = reader.latency_ms()
        if value is not None:
            return value
        time.sleep(1.0)
    raise AssertionError(f"Prometheus reported no world latency for {query}: {reader.last_error}")


def ingest_world_traces(path: Path, tmp_path: Path) -> Any:
    """Validate the world's exported traces as ``reach profiles validate --jaeger --keep-current`` does."""
    from flows.profiles.checks import CheckOptions
    from flows.profiles.ingest import ProfileInputs, validate_profiles

    copy = tmp_path / "captured-traces.json"
    copy.write_bytes(path.read_bytes())
    return validate_profiles(ProfileInputs(jaeger=(copy,)), SCENARIO, [WORKLOAD], CheckOptions(keep_current=True), None)


def test_the_worlds_measured_latency_falls_after_the_policys_moves(
    core: Any,
    poor_app: dict[str, list[str]],  # noqa: F811
    standin: Any,  # noqa: F811
    mesh_prometheus: str,
    world: tuple[str, Any],
    settings_for: Any,
    tmp_path: Path,
) -> None:
    from flows.loop.world_live import mean_query, p95_query
    from migrator.app import build_controller
    from migrator.telemetry import MigratorTelemetry

    settle_s = 25.0  # a 20 s window plus scrapes
    before_mean = world_latency(mesh_prometheus, mean_query(WINDOW), settle_s)
    before_p95 = world_latency(mesh_prometheus, p95_query(WINDOW), 0.0)
    profiled = ingest_world_traces(world[1].traces.path, tmp_path)
    settings = settings_for(
        standin.url, prometheus_url=mesh_prometheus, latency_query=mean_query(WINDOW), qos_threshold_ms=1.0
    )
    controller = build_controller(settings, MigratorTelemetry())
    kinds = run_until_stop(controller)
    after_mean = world_latency(mesh_prometheus, mean_query(WINDOW), settle_s)
    after_p95 = world_latency(mesh_prometheus, p95_query(WINDOW), 0.0)

    moves = migrated_records(controller)
    live = world[1]
    assert live.world is not None and live.pods_seen >= len(poor_app)
    assert moves, f"the stand-in moved nothing: {kinds}"
    assert "rolled-back" not in kinds, controller.journal.records
    # the world (not the twin) decides: the moves must help requests as the emulated mesh measures them
    summary = f"world mean {before_mean:.1f} → {after_mean:.1f} ms, p95 {before_p95:.1f} → {after_p95:.1f} ms"
    assert after_mean < before_mean, summary
    assert after_p95 < before_p95, summary
    # stage 1 of `reach demo`: the poor start's traces, as the live world exported them, pass the profile checks
    assert profiled.outcome.success, [c.observed for c in profiled.outcome.failures]
    assert profiled.report["spans"]["traces"] >= 100  # ~10 requests/s over the 20 s window
    print(summary, f"after {len(moves)} moves")
