"""User placements and random starts: feasibility is checked, infeasible scenarios fail fast."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ceenv.latency import LatencyModel, nominal_conditions
from ceenv.layout import layout_from_scenario
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
