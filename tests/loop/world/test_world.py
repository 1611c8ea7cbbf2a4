"""The world's behaviour: reproducibility, node failure, surge, Istio metrics, ping-mesh, Jaeger traces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ceenv.scenario import Scenario
from ceenv.workload import Workload
from flows.loop.world.emulator import World
from flows.loop.world.measure import measure_world, summarise
from flows.loop.world.metrics import MeshMetrics
from flows.loop.world.model import Cluster, WorldError, WorldOptions, pod_concurrency, pods_from_assignment
from flows.loop.world.traces import TraceLog, write_jaeger
from flows.profiles.hosts import CpuTypeResolver
from flows.profiles.jaeger import JaegerOptions, read_jaeger_profiles
from tests.loop.world.conftest import ALL_ON_CLOUD_1, SPREAD

TWO_ML = {**ALL_ON_CLOUD_1, "machine-learning": ["tb-cloud-vm-8-1", "tb-cloud-vm-8-2"]}


def _pods(scenario: Scenario, placement: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    return pods_from_assignment(Cluster.from_scenario(scenario), placement)


def test_a_seed_fixes_every_request_and_another_seed_changes_them(
    scenario: Scenario, workloads: dict[str, Workload]
) -> None:
    def latencies(seed: int) -> list[float]:
        world = World(scenario, workloads["aggregator_parallel"], _pods(scenario, SPREAD), WorldOptions(), seed)
        world.run(120.0)
        return world.completed.latency_ms

    assert latencies(7) == latencies(7)
    assert latencies(7) != latencies(8)


def test_pod_concurrency_comes_from_the_cpu_request() -> None:
    assert [pod_concurrency(c) for c in (0.5, 0.7, 1.0, 1.5, 2.0)] == [1, 1, 1, 2, 2]


def test_unknown_names_and_unplaced_services_are_clear_errors(
    scenario: Scenario, workloads: dict[str, Workload]
) -> None:
    with pytest.raises(WorldError, match="unknown node 'nowhere'"):
        _pods(scenario, {**ALL_ON_CLOUD_1, "db": ["nowhere"]})
    missing = {k: v for k, v in ALL_ON_CLOUD_1.items() if k != "db"}
    with pytest.raises(WorldError, match=r"have no pod: \['db'\]"):
        World(scenario, workloads["chain"], _pods(scenario, missing))
    with pytest.raises(WorldError, match="rps multiplier"):
        World(scenario, workloads["chain"], _pods(scenario, ALL_ON_CLOUD_1), WorldOptions(rps_multiplier=0))


def test_a_failed_node_costs_retries_while_its_pods_stay_in_the_endpoints(
    scenario: Scenario, workloads: dict[str, Workload]
) -> None:
    options = WorldOptions(endpoint_grace_s=60.0).idealised()
    world = World(scenario, workloads["chain"], _pods(scenario, TWO_ML), options, seed=5)
    world.run(60.0)
    world.fail_node("tb-cloud-vm-8-2")
    world.run(60.0)  # ml's dead replica is still picked half the time: a connect timeout, then a retry
    world.run(60.0)  # after the grace period, only the live replica is picked
    done = world.completed
    start, latency, ok = np.array(done.start_ms), np.array(done.latency_ms), np.array(done.ok)
    first, grace, rest = start < 60_000, (start >= 60_000) & (start < 120_000), (start >= 121_000) & (start < 178_000)
    assert ok[first].all() and ok[rest].all()
    # three attempts all meet the dead replica with probability 1/8: Istio's retries rescue the rest
    assert 0.03 < 1 - ok[grace].mean() < 0.25
    during = latency[grace & ok]
    assert during.mean() > latency[first].mean() + 0.3 * options.connect_timeout_ms
    assert during.max() >= options.connect_timeout_ms
    # afterwards ml always runs next to the aggregator: no transfer to the other node, nothing times out
    assert latency[rest].mean() < latency[first].mean()


def test_a_failed_node_that_holds_the_only_replica_fails_the_requests(
    scenario: Scenario, workloads: dict[str, Workload]
) -> None:
    world = World(scenario, workloads["chain"], _pods(scenario, ALL_ON_CLOUD_1), WorldOptions().idealised(), seed=5)
    world.fail_node("tb-cloud-vm-8-1")
    world.run(30.0)
    world.stop_arrivals()
    world.run(60.0)
    assert world.completed.ok and not any(world.completed.ok)
    with pytest.raises(WorldError, match="client node"):
        world.fail_node("tb-client-vm-2-1")


def test_a_surge_raises_the_request_rate(scenario: Scenario, workloads: dict[str, Workload]) -> None:
    world = World(scenario, workloads["chain"], _pods(scenario, ALL_ON_CLOUD_1), seed=2)
    world.run(100.0)
    before = len(world.completed.start_ms)
    world.surge(4.0)
    world.run(100.0)
    after = len(world.completed.start_ms) - before
    assert after > 3 * before  # 5 rps → 20 rps


def test_istio_metrics_count_every_call_and_the_clients_view_is_the_end_to_end_latency(
    scenario: Scenario, workloads: dict[str, Workload]
) -> None:
    metrics = MeshMetrics()
    world = World(scenario, workloads["chain"], _pods(scenario, SPREAD), WorldOptions(), seed=3, metrics=metrics)
    world.run(200.0)
    world.stop_arrivals()
    world.run(60.0)
    key = ("source", "client", "default", "aggregator", "default", "aggregator", "http", "200", "-")
    client_view = metrics.requests[key]
    assert client_view.count == len(world.completed.latency_ms)
    assert client_view.total == pytest.approx(sum(world.completed.latency_ms))
    served = metrics.requests[("destination", *key[1:])]
    assert served.count == client_view.count and served.total < client_view.total  # minus the network
    for caller, callee in (("aggregator", "machine-learning"), ("machine-learning", "detection"), ("detection", "db")):
        assert metrics.requests[("source", caller, "default", callee, "default", callee, "http", "200", "-")].count == (
            client_view.count
        )
    text = metrics.exposition()
    assert 'istio_request_duration_milliseconds_bucket{reporter="source",source_workload="client"' in text
    assert "# TYPE istio_requests_total counter" in text


def test_the_ping_mesh_measures_round_trips_of_the_current_delays(
    scenario: Scenario, workloads: dict[str, Workload]
) -> None:
    metrics = MeshMetrics()
    world = World(
        scenario, workloads["chain"], _pods(scenario, ALL_ON_CLOUD_1), WorldOptions().idealised(), metrics=metrics
    )
    world.run(31.0)
    cross = metrics.pings[("tb-cloud-vm-8-1", "ping", "tb-edge-vm-2-1", "tb-edge-vm-2-1")]
    local = metrics.pings[("tb-edge-vm-2-1", "ping", "tb-client-vm-2-1", "tb-client-vm-2-1")]
    assert cross.count == 6  # every 5 s
    assert cross.total / cross.count == pytest.approx(0.100)  # 2 × 50 ms
    assert local.total / local.count == pytest.approx(0.0002)
    assert len(metrics.pings) == 7 * 6


def test_the_worlds_traces_ingest_into_its_execution_times(
    tmp_path: Path, scenario: Scenario, workloads: dict[str, Workload]
) -> None:
    log = TraceLog(max_traces=200)
    work = workloads["aggregator_parallel"]
    measure_world(scenario, work, _pods(scenario, SPREAD), 120.0, WorldOptions().idealised(), 9, traces=log)
    path = tmp_path / "world.json"
    write_jaeger(log, path)
    table, report = read_jaeger_profiles(
        [path], CpuTypeResolver.for_scenario(scenario), JaegerOptions(ignore_services=frozenset({"client"}))
    )
    assert report.traces == 200 and report.invocations == 200 * 4
    expected = {
        (call.service, cpu_type): ms
        for endpoint in work.endpoints
        for call in endpoint.calls()
        for cpu_type, ms in call.execution_ms.items()
    }
    medians = table.groupby(["service", "cpu_type"])["execution_time_ms"].median()
    assert len(medians) >= 6
    for (service, cpu_type), median in medians.items():
        assert median == pytest.approx(expected[(service, int(cpu_type))], abs=0.002)  # µs rounding


def test_summarise_counts_only_the_window_and_reports_failures_apart(
    scenario: Scenario, workloads: dict[str, Workload]
) -> None:
    world = World(scenario, workloads["chain"], _pods(scenario, ALL_ON_CLOUD_1), seed=1)
    world.run(100.0)
    everything = summarise(world, 0.0, 100_000.0, 0.0)
    later = summarise(world, 50_000.0, 100_000.0, 0.0)
    assert 0 < later.requests < everything.requests
    assert everything.failed == 0


def test_requests_still_in_flight_after_the_drain_are_counted_as_unfinished_not_dropped(
    scenario: Scenario, workloads: dict[str, Workload], monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.loop.world.measure as measure

    pods, work = _pods(scenario, ALL_ON_CLOUD_1), workloads["chain"]
    # ml: 46 ms on 2 servers → ~43 rps; 5 rps × 20 = 100 rps saturates it: its queue grows by ~57 requests a second
    saturated = WorldOptions(rps_multiplier=20.0).idealised()
    drained = measure_world(scenario, work, pods, 10.0, saturated, seed=2)  # 120 s of drain empties the queue
    assert drained.unfinished == 0
    monkeypatch.setattr(measure, "DRAIN_S", 1.0)
    cut = measure_world(scenario, work, pods, 10.0, saturated, seed=2)  # the same arrivals, 1 s of drain
    assert cut.unfinished > 100
    assert cut.requests + cut.failed + cut.unfinished == drained.requests + drained.failed
    assert cut.mean_ms < drained.mean_ms  # the slowest requests are the unfinished ones: the finished are biased low
