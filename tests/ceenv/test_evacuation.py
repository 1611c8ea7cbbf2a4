"""A failed node in the request (``available: false``): its pods stay on it, it is never a target, and
the evacuation rule moves them off first, to the deployable node with the lowest predicted latency."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ceenv.evacuation import evacuation_move
from ceenv.latency import LatencyModel
from ceenv.layout import layout_from_scenario, placement_counts
from ceenv.observation import move_mask
from ceenv.payload import state_from_request
from ceenv.scenario import load_scenario
from ceenv.schema import ActionRequest
from ceenv.workload import load_workload

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "data" / "scenarios" / "7-21"
WORKLOAD = ROOT / "data" / "workloads" / "aggregator_sequential_call_patterns.json"
REQUEST = ROOT / "tests" / "contract" / "request_7-21.json"
FAILED = "tb-cloud-vm-8-1"  # hosts machine-learning-3a8f4dd2e1-1c84e and detection-bf0a919a4b-36a0a


def failed_request(node: str = FAILED) -> dict[str, Any]:
    body = json.loads(REQUEST.read_text())
    body["cluster_state"]["nodes"][node].update(available=False)
    return body


@pytest.fixture(scope="module")
def world() -> Any:
    scenario = load_scenario(SCENARIO)
    model = LatencyModel(scenario, load_workload(WORKLOAD, scenario))
    return layout_from_scenario(scenario), model


def test_a_failed_node_keeps_its_pods_has_nothing_free_and_is_no_target(world: Any) -> None:
    layout, _ = world
    state = state_from_request(layout, ActionRequest.model_validate(failed_request()))
    i = layout.node_names.index(FAILED)
    assert state.free_cpu_millicores[i] == 0 and state.free_memory_bytes[i] == 0
    assert not state.target_ok[:, i].any()
    on_failed = {state.slot_pod[s] for s in state.evacuation_slots()}
    assert on_failed == {"machine-learning-3a8f4dd2e1-1c84e", "detection-bf0a919a4b-36a0a"}
    assert all(state.slot_node[s] == i for s in state.evacuation_slots())


def test_without_the_field_every_listed_node_is_available(world: Any) -> None:
    layout, _ = world
    state = state_from_request(layout, ActionRequest.model_validate_json(REQUEST.read_text()))
    assert state.evacuation_slots() == []
    assert state.target_ok[:, layout.node_names.index(FAILED)].any()


def test_the_evacuation_goes_to_the_deployable_node_with_the_lowest_predicted_latency(world: Any) -> None:
    layout, model = world
    costs = model.nominal_costs()

    def latency_of(slot_node: Any) -> float:
        return float(model.latency(placement_counts(layout, slot_node), costs))

    body = failed_request()
    state = state_from_request(layout, ActionRequest.model_validate(body))
    mask = move_mask(layout, state.slot_node, state.target_ok)
    move = evacuation_move(layout, state, mask, latency_of)
    assert move is not None
    slot, node = move
    assert slot == state.evacuation_slots()[1]  # detection: its only pod is on the failed node
    pod = state.slot_pod[slot]
    allowed = [n for n in body["pod_deployable"][pod] if n != FAILED]
    assert layout.node_names[node] in allowed

    def after(target: str) -> float:
        placed = state.slot_node.copy()
        placed[slot] = layout.node_names.index(target)
        return latency_of(placed)

    assert after(layout.node_names[node]) == min(after(n) for n in allowed)


def test_a_service_left_without_a_live_pod_is_evacuated_before_one_that_still_serves(world: Any) -> None:
    layout, _ = world
    state = state_from_request(layout, ActionRequest.model_validate(failed_request()))
    mask = move_mask(layout, state.slot_node, state.target_ok)
    in_slot_order = [state.slot_pod[s] for s in state.evacuation_slots()]
    assert in_slot_order == ["machine-learning-3a8f4dd2e1-1c84e", "detection-bf0a919a4b-36a0a"]
    move = evacuation_move(layout, state, mask, lambda _: None)  # ml keeps a pod on tb-edge-vm-4-2
    assert move is not None and state.slot_pod[move[0]] == "detection-bf0a919a4b-36a0a"


def test_a_pod_on_a_failed_node_with_nowhere_to_go_is_skipped_for_the_next(world: Any) -> None:
    layout, _ = world
    body = failed_request()
    state = state_from_request(layout, ActionRequest.model_validate(body))
    second, first = state.evacuation_slots()  # detection (no live pod elsewhere) goes before ml
    body["pod_deployable"][state.slot_pod[first]] = []
    state = state_from_request(layout, ActionRequest.model_validate(body))
    mask = move_mask(layout, state.slot_node, state.target_ok)
    move = evacuation_move(layout, state, mask, lambda _: None)
    assert move is not None and move[0] == second
    body["pod_deployable"][state.slot_pod[second]] = []
    state = state_from_request(layout, ActionRequest.model_validate(body))
    assert evacuation_move(layout, state, move_mask(layout, state.slot_node, state.target_ok), lambda _: None) is None
