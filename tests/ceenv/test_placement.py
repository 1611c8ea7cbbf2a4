"""User placements and random starts: feasibility is checked, infeasible scenarios fail fast."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ceenv.generator import generate_scenario
from ceenv.latency import LatencyModel, draw_conditions, nominal_conditions
from ceenv.layout import Layout, layout_from_scenario
from ceenv.placement import draw_start, load_assignment, slots_from_assignment
from ceenv.scenario import load_scenario
from ceenv.validation import ScenarioError
from ceenv.workload import load_workload
from tests.ceenv.helpers import reference_docs, write_scenario
from tests.conftest import scenario_dir, workload_file

GOOD = {
    "client": ["tb-client-vm-2-1"],
    "aggregator": ["tb-cloud-vm-8-1"],
    "machine-learning": ["tb-cloud-vm-8-1"],
    "detection": ["tb-edge-vm-4-1"],
    "db": ["tb-edge-vm-2-1"],
}


def _check(assignment: dict[str, list[str]]) -> np.ndarray:
    scenario = load_scenario(scenario_dir("7-21"))
    model = LatencyModel(scenario, load_workload(workload_file("chain"), scenario))
    return slots_from_assignment(
        model, layout_from_scenario(scenario), nominal_conditions(scenario), assignment, "placement.json"
    )


def test_a_feasible_placement_becomes_slots_in_service_order() -> None:
    slots = _check(GOOD)
    assert slots[0] == 6 and slots[1] == 0 and slots[2] == -1 and slots[6] == 0


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"cache": ["tb-cloud-vm-8-1"]}, "unknown service"),
        ({"db": ["tb-cloud-vm-8-9"]}, "unknown node"),
        ({"db": ["tb-client-vm-2-1"]}, "layer rule violated"),
        ({"client": ["tb-cloud-vm-8-1"]}, "layer rule violated"),
        ({"db": ["tb-cloud-vm-8-1"] * 6}, "exceed max-replica"),
        ({"machine-learning": ["tb-edge-vm-2-1", "tb-edge-vm-2-1"]}, "over capacity"),
        ({"db": []}, "has no pod"),
    ],
)
def test_infeasible_placements_are_rejected_with_the_reason(change: dict[str, list[str]], problem: str) -> None:
    with pytest.raises(ScenarioError, match=problem):
        _check({**GOOD, **change})


def test_placement_file_shape_is_checked(tmp_path: Path) -> None:
    file = tmp_path / "placement.json"
    file.write_text(json.dumps({"db": "tb-cloud-vm-8-1"}))
    with pytest.raises(ScenarioError, match=r"\$.db: wrong type"):
        load_assignment(file)


def test_random_starts_are_feasible_and_reproducible() -> None:
    scenario = load_scenario(scenario_dir("13-29"))
    model = LatencyModel(scenario, load_workload(workload_file("chain"), scenario))
    layout = layout_from_scenario(scenario)
    a = draw_start(model, layout, np.random.default_rng(5))
    b = draw_start(model, layout, np.random.default_rng(5))
    np.testing.assert_array_equal(a[1], b[1])
    for conditions, slot_node in (draw_start(model, layout, np.random.default_rng(s)) for s in range(30)):
        occupied = slot_node >= 0
        assert layout.allowed[layout.slot_service[occupied], slot_node[occupied]].all()
        used = np.zeros(layout.node_count)
        np.add.at(
            used,
            slot_node[occupied],
            [scenario.services[s].cpu_millicores for s in layout.slot_service[occupied]],
        )
        assert (used <= conditions.cpu_millicores).all()


def test_a_cluster_too_small_for_any_start_is_an_error_not_a_hang(tmp_path: Path) -> None:
    nodes, services = reference_docs()
    for layer in ("cloud", "edge"):
        for spec in nodes["cluster_setup"][layer].values():
            spec["cpu_availability"] = ["100m"]
    scenario = load_scenario(write_scenario(tmp_path, nodes, services))
    model = LatencyModel(scenario, load_workload(workload_file("chain"), scenario))
    with pytest.raises(ScenarioError, match="no feasible start placement in 20 random draws"):
        draw_start(model, layout_from_scenario(scenario), np.random.default_rng(0), attempts=20)


def _numpy_draw_start(model: LatencyModel, layout: Layout, rng: np.random.Generator, dynamic: bool) -> tuple:
    """draw_start as it was written with numpy arrays until 2026-12-03 (the reference), plus its attempts."""
    scenario = model.scenario
    for attempt in range(1, 201):
        conditions = draw_conditions(scenario, rng) if dynamic else nominal_conditions(scenario)
        cpu_left = conditions.cpu_millicores.copy()
        memory_left = conditions.memory_bytes.copy()
        slot_node = np.full(layout.slot_count, -1, dtype=np.int64)
        slot = 0
        feasible = True
        for s, service in enumerate(scenario.services):
            replicas = int(rng.integers(1, service.max_replica + 1))
            cpu, memory = service.cpu_millicores, round(service.memory_bytes)
            for r in range(replicas):
                room = np.flatnonzero(layout.allowed[s] & (cpu_left >= cpu) & (memory_left >= memory))
                if room.size == 0:
                    feasible = False
                    break
                n = int(room[rng.integers(room.size)])
                cpu_left[n] -= cpu
                memory_left[n] -= memory
                slot_node[slot + r] = n
            if not feasible:
                break
            slot += service.max_replica
        if feasible:
            return conditions, slot_node, attempt
    raise AssertionError("the reference found no start")


def _tight_scenario(tmp_path: Path) -> Path:
    """7-21 with nodes so small that many draws need several attempts (the retry path)."""
    nodes, services = reference_docs()
    nodes["cluster_setup"]["cloud"]["tb-cloud-vm-8"]["cpu_availability"] = ["1", "2", "3"]
    nodes["cluster_setup"]["edge"]["tb-edge-vm-4"]["cpu_availability"] = ["1", "2"]
    nodes["cluster_setup"]["edge"]["tb-edge-vm-2"]["memory_availability"] = ["0.9G", "1.6G"]
    return write_scenario(tmp_path, nodes, services)


def test_random_starts_draw_what_the_numpy_reference_draws_from_the_same_generator(tmp_path: Path) -> None:
    clusters = [(scenario_dir(name), workload_file("chain")) for name in ("7-21", "13-29", "19-37")]
    clusters.append((_tight_scenario(tmp_path / "tight"), workload_file("aggregator_parallel")))
    models = [
        LatencyModel(scenario, load_workload(w, scenario))
        for scenario, w in ((load_scenario(s), w) for s, w in clusters)
    ]
    models += [LatencyModel(*generate_scenario(np.random.default_rng(seed)).parse()) for seed in (3, 11, 40)]
    retried = 0
    for model in models:
        layout = layout_from_scenario(model.scenario)
        for seed in range(40):
            for dynamic in (True, False):
                ours, theirs = np.random.default_rng(seed), np.random.default_rng(seed)
                conditions, slot_node = draw_start(model, layout, ours, dynamic)
                expected_conditions, expected_slots, attempts = _numpy_draw_start(model, layout, theirs, dynamic)
                retried += attempts > 1
                np.testing.assert_array_equal(slot_node, expected_slots)
                assert slot_node.dtype == expected_slots.dtype
                for field in ("cpu_millicores", "memory_bytes", "utilization", "delay_ms"):
                    np.testing.assert_array_equal(getattr(conditions, field), getattr(expected_conditions, field))
                assert ours.bit_generator.state == theirs.bit_generator.state  # the same draws, no more
    assert retried > 10, "the tight scenario should exercise the retry path"
