"""The closed loop end to end: live cluster → exporter → Prometheus → policy → migrator → live cluster.

On the real local Kubernetes 1.20 control plane (private ports, see conftest), the 7-21 app is
placed deliberately poorly; the latency exporter (latency **simulated by the CEEnv model from the
live placement**) is scraped by a real Prometheus on 127.0.0.1, which the migrator reads through
prometheus-api-client. To stay fast and independent of training quality the policy is the greedy
stand-in (:mod:`flows.loop.standin`, the simulator's best single move — not the learned policy).
Since the exporter's latency comes from the same model the stand-in chose its moves by, a lower
latency after the moves holds by construction: it shows that the plumbing works (the migrator's
moves reach the cluster and the exporter, through Prometheus, reports the new placement), not that
a policy lowers a real latency. The first test checks that plumbing, that no moved service's Ready
count ever dropped, and that every move was recorded (journal, Kubernetes Event, metric). A second test drains the two busiest nodes (the default scheduler re-places their pods) and
checks that the loop then moves pods again, never onto the drained nodes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .e2e_support import SCENARIO, ReadyWatcher, running_prometheus
from .e2e_support import prometheus_binary as find_prometheus

pytestmark = pytest.mark.e2e
NS = "default"
WORKLOAD = SCENARIO.parents[1] / "workloads" / "aggregator_sequential_call_patterns.json"
MOVABLE = ("aggregator", "machine-learning", "detection", "db")


@pytest.fixture
def prometheus_binary() -> str:
    return find_prometheus()


@pytest.fixture
def exporter(kubeconfig: str) -> Iterator[str]:
    """The latency exporter in-process on a free loopback port; yields its host:port."""
    from prometheus_client import CollectorRegistry, start_http_server

    from ceenv.latency import LatencyModel
    from ceenv.scenario import load_scenario
    from ceenv.workload import load_workload
    from flows.local.processes import free_port
    from flows.loop.exporter import LatencyCollector, PodCache, SimulatedLatency, pod_lister

    scenario = load_scenario(SCENARIO)
    model = LatencyModel(scenario, load_workload(WORKLOAD, scenario))
    cache = PodCache(pod_lister(kubeconfig, NS, "reach.io/app=demo"), 0.3).start()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LatencyCollector(cache.current, SimulatedLatency(scenario, model, noise_pct=0.0), "app"))
    port = free_port()
    server, _ = start_http_server(port, addr="127.0.0.1", registry=registry)
    yield f"127.0.0.1:{port}"
    cache.stop.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def prometheus(prometheus_binary: str, exporter: str, tmp_path: Path) -> Iterator[str]:
    """A real Prometheus on 127.0.0.1 scraping the exporter every second; stopped by PID."""
    with running_prometheus(prometheus_binary, tmp_path, "reach-exporter", exporter) as url:
        yield url


@pytest.fixture
def standin() -> Iterator[Any]:
    from flows.loop.standin import GreedyStandIn, greedy_advisor

    server = GreedyStandIn(greedy_advisor(SCENARIO, WORKLOAD)).start()
    yield server
    server.close()


@pytest.fixture
def poor_app(admin: Any, core: Any) -> Iterator[dict[str, list[str]]]:
    """The app on the worst of 300 seeded random placements (aggregator ×2, the rest ×1); removed afterwards."""
    from ceenv.latency import LatencyModel
    from ceenv.layout import layout_from_scenario
    from ceenv.scenario import load_scenario
    from ceenv.workload import load_workload
    from flows.loop import app
    from flows.loop.placement import DEFAULT_REPLICAS, place_app, poor_start, uncordon_all

    scenario = load_scenario(SCENARIO)
    model = LatencyModel(scenario, load_workload(WORKLOAD, scenario))
    start = poor_start(model, layout_from_scenario(scenario), DEFAULT_REPLICAS, seed=0)
    place_app(admin, NS, SCENARIO, start.assignment)
    yield start.assignment
    app.delete(admin, NS)
    uncordon_all(admin)


def latency_now(prometheus_url: str, settle_s: float = 3.0, timeout_s: float = 30.0) -> float:
    """The latency Prometheus reports once its scrapes caught up with the placement."""
    from migrator.metrics import PrometheusMetrics

    time.sleep(settle_s)
    reader = PrometheusMetrics(prometheus_url, "reach_app_latency_ms", "reach_node_cpu_usage_millicores")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = reader.latency_ms()
        if value is not None:
            return value
        time.sleep(0.5)
    raise AssertionError(f"Prometheus reported no latency: {reader.last_error}")


def run_until_stop(controller: Any, max_cycles: int = 8) -> list[str]:
    """Monitoring cycles until the policy says stop (or the cap); the outcome kinds."""
    kinds = []
    for _ in range(max_cycles):
        [outcome] = controller.monitoring_step()
        kinds.append(outcome.kind)
        if outcome.kind != "migrated":
            break
    return kinds


def loop_controller(settings_for: Any, url: str, prometheus_url: str) -> tuple[Any, Any]:
    from migrator.app import build_controller
    from migrator.telemetry import MigratorTelemetry

    telemetry = MigratorTelemetry()
    settings = settings_for(url, prometheus_url=prometheus_url, qos_threshold_ms=1.0, migration_deadline_s=30.0)
    return build_controller(settings, telemetry), telemetry


def migrated_records(controller: Any) -> list[dict[str, Any]]:
    return [r for r in controller.journal.records if r["event"] == "migrated"]


def test_the_migrators_moves_reach_the_cluster_and_the_exporter_reports_the_new_placement_without_dropping_ready(
    core: Any, poor_app: dict[str, list[str]], standin: Any, prometheus: str, settings_for: Any
) -> None:
    """Plumbing, not policy quality: the exporter's latency is the CEEnv model's and the stand-in plays that model's
    best single move, so the latency Prometheus reports drops exactly when the moves reached the live cluster and the
    exporter reported the placement they made (a latency that stays put means a move or the exporter got lost)."""
    before_ms = latency_now(prometheus)
    controller, telemetry = loop_controller(settings_for, standin.url, prometheus)
    watchers = {s: ReadyWatcher(core, NS, s).start() for s in MOVABLE}
    started = {s: w.lowest for s, w in watchers.items()}
    kinds = run_until_stop(controller)
    lowest = {s: w.stop() for s, w in watchers.items()}
    after_ms = latency_now(prometheus)

    moves = migrated_records(controller)
    assert moves, f"the stand-in moved nothing: {kinds}"
    assert "rolled-back" not in kinds, controller.journal.records
    assert after_ms < before_ms, (
        f"the exporter did not report the moved placement: {before_ms:.1f} → {after_ms:.1f} ms after {len(moves)} moves"
    )
    assert all(lowest[s] >= started[s] for s in MOVABLE), f"Ready dropped: {started} → {lowest}"
    moves_answered = [a for a in standin.answers if not a["is_stop"]]
    assert len(moves_answered) == len(moves)
    for record in moves:
        reasons = [
            e.reason
            for e in core.list_namespaced_event(NS, field_selector=f"involvedObject.name={record['pod']}").items
        ]
        assert "Migrated" in reasons, (record, reasons)
    assert telemetry.migrations.labels(result="migrated")._value.get() == len(moves)


def test_after_two_nodes_are_drained_the_loop_moves_again_and_never_onto_the_drained_nodes(
    admin: Any, core: Any, poor_app: dict[str, list[str]], standin: Any, prometheus: str, settings_for: Any
) -> None:
    """The real check is the last one: no pod lands on a drained (cordoned) node, which the observation and the
    guards must keep out of every move. The latency drop holds by construction (the stand-in plays the exporter's
    own model), as in the first test: it shows that the moves reached the cluster."""
    from flows.loop import app
    from flows.loop.placement import busiest_nodes, drain_nodes

    client_nodes = {n.metadata.name for n in core.list_node().items if n.metadata.labels["reach.io/layer"] == "client"}
    drained = busiest_nodes(admin, NS, 2, client_nodes)
    assert drain_nodes(admin, NS, drained)
    app.wait_ready(admin, NS, timeout_s=60)  # the default scheduler re-placed them
    disrupted_ms = latency_now(prometheus)
    controller, _ = loop_controller(settings_for, standin.url, prometheus)
    kinds = run_until_stop(controller)
    recovered_ms = latency_now(prometheus)
    assert "migrated" in kinds and "rolled-back" not in kinds, controller.journal.records
    assert recovered_ms < disrupted_ms, f"no recovery after draining {drained}: {disrupted_ms:.1f} → {recovered_ms:.1f}"
    pods = core.list_namespaced_pod(NS, label_selector="reach.io/app=demo").items
    assert not {p.spec.node_name for p in pods if not p.metadata.deletion_timestamp} & set(drained)
