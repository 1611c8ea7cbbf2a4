"""Node failure and traffic surge events: pure functions that re-place pods like a default scheduler."""

from __future__ import annotations

import numpy as np
import pytest

from ceenv.events import EventError, draw_failed_nodes, fail_nodes, schedule_pod, surge_service
from ceenv.latency import LatencyModel
from ceenv.layout import layout_from_scenario
from ceenv.placement import draw_start
from ceenv.scenario import load_scenario
from ceenv.simulator import Simulator
from ceenv.workload import load_workload
from tests.conftest import scenario_dir, workload_file


def _sim(seed: int = 3, size: str = "13-29") -> Simulator:
    scenario = load_scenario(scenario_dir(size))
    model = LatencyModel(scenario, load_workload(workload_file("aggregator_sequential"), scenario))
    layout = layout_from_scenario(scenario)
    return Simulator(model, layout, *draw_start(model, layout, np.random.default_rng(seed)))


def _hosting_node(sim: Simulator) -> int:
    layers = np.array(sim.layout.node_layers)
    hosting = np.unique(sim.slot_node[sim.slot_node >= 0])
    return int(next(n for n in hosting if layers[n] != "client"))


def test_failed_node_has_no_capacity_and_no_pods_afterwards() -> None:
    sim = _sim()
    node = _hosting_node(sim)
    outcome = fail_nodes(sim, (node,))
    assert outcome.conditions.cpu_millicores[node] == 0 and outcome.conditions.memory_bytes[node] == 0
    assert not (outcome.slot_node == node).any()
    after = Simulator(sim.model, sim.layout, outcome.conditions, outcome.slot_node)
    assert (after.free_cpu_millicores >= -1e-6).all() and (after.free_memory_bytes >= -1e-6).all()
    assert not after.action_mask()[:-1].reshape(sim.layout.node_count, -1)[node].any()


def test_evicted_pods_are_rescheduled_or_reported_pending() -> None:
    sim = _sim()
    node = _hosting_node(sim)
    evicted = set(np.flatnonzero(sim.slot_node == node).tolist())
    outcome = fail_nodes(sim, (node,))
    assert set(outcome.rescheduled_slots) | set(outcome.pending_slots) == evicted
    assert all(outcome.slot_node[s] >= 0 for s in outcome.rescheduled_slots)
    assert all(outcome.slot_node[s] == -1 for s in outcome.pending_slots)


def test_events_never_change_the_input_simulator() -> None:
    sim = _sim()
    before = sim.slot_node.copy(), sim.conditions.cpu_millicores.copy(), sim.latency_ms
    fail_nodes(sim, (_hosting_node(sim),))
    surge_service(sim, "aggregator", 3)
    assert (sim.slot_node == before[0]).all() and (sim.conditions.cpu_millicores == before[1]).all()
    assert sim.latency_ms == before[2]


def test_scheduler_picks_the_least_allocated_feasible_node() -> None:
    sim = _sim()
    service = sim.layout.service_names.index("db")
    node = schedule_pod(sim, sim.conditions, service, sim.free_cpu_millicores, sim.free_memory_bytes)
    assert node is not None
    cpu, mem = sim.request_cpu_millicores[service], sim.request_memory_bytes[service]
    feasible = np.flatnonzero(
        sim.layout.allowed[service] & (sim.free_cpu_millicores >= cpu) & (sim.free_memory_bytes >= mem)
    )
    score = (
        (sim.free_cpu_millicores - cpu) / sim.conditions.cpu_millicores
        + (sim.free_memory_bytes - mem) / sim.conditions.memory_bytes
    ) / 2
    assert score[node] == pytest.approx(score[feasible].max())


def test_surge_adds_aggregator_pods_up_to_max_replica() -> None:
    sim = _sim()
    s = sim.layout.service_names.index("aggregator")
    slots = np.flatnonzero(sim.layout.slot_service == s)
    before = int((sim.slot_node[slots] >= 0).sum())
    outcome = surge_service(sim, "aggregator", 100)
    after = int((outcome.slot_node[slots] >= 0).sum())
    assert after == before + len(outcome.rescheduled_slots)
    assert len(outcome.rescheduled_slots) + len(outcome.pending_slots) == len(slots) - before


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda sim: fail_nodes(sim, (99,)), "outside"),
        (lambda sim: fail_nodes(sim, (sim.layout.node_layers.index("client"),)), "client node"),
        (lambda sim: surge_service(sim, "nope", 1), "unknown service"),
        (lambda sim: surge_service(sim, "aggregator", 0), "extra_replicas"),
        (lambda sim: draw_failed_nodes(sim, np.random.default_rng(0), 99), "cannot fail"),
    ],
)
def test_invalid_events_are_rejected_with_a_reason(call, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(EventError, match=message):
        call(_sim())


def test_failing_every_computing_node_is_an_error_not_a_silent_empty_service() -> None:
    sim = _sim(size="7-21")
    computing = tuple(i for i, layer in enumerate(sim.layout.node_layers) if layer != "client")
    with pytest.raises(EventError, match="no pod left"):
        fail_nodes(sim, computing)


def test_drawn_failed_nodes_host_pods_and_are_distinct() -> None:
    sim = _sim()
    nodes = draw_failed_nodes(sim, np.random.default_rng(1), 2)
    assert len(set(nodes)) == 2
    assert all((sim.slot_node == n).any() for n in nodes)
