"""The greedy stand-in: the simulator's best single move over the wire payload, or stop — never the learned policy."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from ceenv.payload import state_from_request
from ceenv.schema import ActionRequest
from flows.loop.standin import STOP, GreedyAdvisor, GreedyStandIn, greedy_advisor

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "data" / "scenarios" / "7-21"
WORKLOAD = ROOT / "data" / "workloads" / "aggregator_sequential_call_patterns.json"
REQUEST = ROOT / "tests" / "contract" / "request_7-21.json"


@pytest.fixture(scope="module")
def advisor() -> GreedyAdvisor:
    return greedy_advisor(SCENARIO, WORKLOAD)


def latency_of(advisor: GreedyAdvisor, request: ActionRequest) -> float:
    state = state_from_request(advisor.layout, request)
    return float(advisor.simulator(state.free_cpu_millicores, state.free_memory_bytes, state.slot_node).latency_ms)


def test_the_answer_is_a_deployable_move_that_lowers_the_model_latency(advisor: GreedyAdvisor) -> None:
    request = ActionRequest.model_validate_json(REQUEST.read_text())
    answer = advisor.answer(request)
    assert not answer["is_stop"]
    assert answer["target_node"] in request.pod_deployable[answer["pod_name"]]
    body = json.loads(REQUEST.read_text())
    for service in body["cluster_state"]["services"].values():
        for p in service["pods"]:
            if p["pod_name"] == answer["pod_name"]:
                p["node_name"] = answer["target_node"]
    assert latency_of(advisor, ActionRequest.model_validate(body)) < latency_of(advisor, request)


def test_repeating_the_advice_converges_to_stop(advisor: GreedyAdvisor) -> None:
    body = json.loads(REQUEST.read_text())
    for _ in range(30):
        answer = advisor.answer(ActionRequest.model_validate(body))
        if answer["is_stop"]:
            break
        for service in body["cluster_state"]["services"].values():
            for p in service["pods"]:
                if p["pod_name"] == answer["pod_name"]:
                    p["node_name"] = answer["target_node"]
    assert answer == STOP


def test_capacity_comes_from_the_request_not_from_the_scenario(advisor: GreedyAdvisor) -> None:
    request = ActionRequest.model_validate_json(REQUEST.read_text())
    state = state_from_request(advisor.layout, request)
    sim = advisor.simulator(state.free_cpu_millicores, state.free_memory_bytes, state.slot_node)
    assert np.allclose(sim.free_cpu_millicores, state.free_cpu_millicores)


def test_the_http_server_speaks_the_wire_payload_on_loopback(advisor: GreedyAdvisor) -> None:
    server = GreedyStandIn(advisor).start()
    try:
        assert server.url.startswith("http://127.0.0.1:")
        post = urllib.request.Request(f"{server.url}/get_action", data=REQUEST.read_bytes(), method="POST")
        with urllib.request.urlopen(post, timeout=5) as response:
            answer = json.loads(response.read())
        assert set(answer) == {"pod_name", "target_node", "is_stop"} and server.answers == [answer]
        bad = urllib.request.Request(f"{server.url}/get_action", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(bad, timeout=5)
        assert err.value.code == 422
    finally:
        server.close()


def test_pods_on_a_failed_node_are_moved_off_first_and_never_onto_it(advisor: GreedyAdvisor) -> None:
    body = json.loads(REQUEST.read_text())
    failed = "tb-cloud-vm-8-1"
    body["cluster_state"]["nodes"][failed]["available"] = False
    moved: list[str] = []
    for _ in range(2):
        answer = advisor.answer(ActionRequest.model_validate(body))
        assert answer.get("decision_rule") == "evacuate-unavailable-node", answer
        assert answer["target_node"] != failed
        assert answer["target_node"] in body["pod_deployable"][answer["pod_name"]]
        moved.append(answer["pod_name"])
        for service in body["cluster_state"]["services"].values():
            for p in service["pods"]:
                if p["pod_name"] == answer["pod_name"]:
                    p["node_name"] = answer["target_node"]
    assert sorted(moved) == ["detection-bf0a919a4b-36a0a", "machine-learning-3a8f4dd2e1-1c84e"]
    answer = advisor.answer(ActionRequest.model_validate(body))
    assert "decision_rule" not in answer and answer.get("target_node") != failed
