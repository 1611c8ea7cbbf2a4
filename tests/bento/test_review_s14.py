"""Review fixes of the policy service: exact planning arguments, errors that keep their fix, the served twin
honouring failed nodes and ``pod_deployable``, strict ``schema_version``, and the golden version-4 encoder test.

Uses the shipped general policy (``data/policies/general-v4``) on 7-21, stored under a name of its own in the
package's private BentoML store (``reach-policy:latest`` stays the test model other tests load).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest
from pydantic import ValidationError

from bento.planning_settings import (
    PlanningSettings,
    gated_planning_error,
    readable_gated_planning,
    settings_planning,
)
from bento.policy import GateVerdict, Policy, check_capacity
from bento.store import load_policy, save_policy
from ceenv.env import CloudEdgeEnv
from ceenv.layout import Layout, layout_from_scenario
from ceenv.payload import PayloadError, measured_from_conditions, request_from_state, state_from_request
from ceenv.scenario import load_scenario
from ceenv.schema import BYTES_PER_GIB, ActionRequest, MeasuredConditions
from tests.bento.conftest import CONTRACT_DIR
from tests.conftest import scenario_dir, workload_file

GENERAL = Path(__file__).resolve().parents[2] / "data" / "policies" / "general-v4"
REQUEST: dict[str, Any] = json.loads((CONTRACT_DIR / "request_7-21.json").read_text())
FAILED = "tb-cloud-vm-8-1"  # holds machine-learning's second pod and detection's only pod in request_7-21.json


@pytest.fixture(scope="module")
def general_tag(bentoml_home: Path) -> str:
    gate = GateVerdict(passed=True, reason="test fixture")
    return str(save_policy(GENERAL, gate=gate, name="reach-policy-general-review").tag)


@pytest.fixture(scope="module")
def planner(general_tag: str) -> Policy:
    scenario, workload = str(scenario_dir("7-21")), str(workload_file("aggregator_sequential"))
    return load_policy(general_tag, scenario, workload, PlanningSettings.chosen())


# --- 1. the bento arguments carry the planning at full precision ------------------------------------------


@pytest.mark.parametrize("margin", [4 / 3, 1.2345678, 2.0])
def test_planning_arguments_read_back_as_the_very_planning_the_gate_judged(margin: float) -> None:
    judged = PlanningSettings(plan_k=4, plan_margin=margin, plan_noise=1 / 3)
    built = judged.arguments()
    assert PlanningSettings.from_recorded(built) == judged
    assert PlanningSettings.from_recorded(built).same_decisions(judged)
    assert PlanningSettings(plan_k=2, plan_margin=2.0).arguments()["plan_margin"] == "2"  # exact values stay short
    assert "plan_margin=1.33333," in PlanningSettings(plan_k=4, plan_margin=4 / 3).describe()  # people read it short


# --- 2. a 422 keeps its fix, however many names the model knows ---------------------------------------------


def test_a_422_for_a_cluster_of_40_long_node_names_still_names_the_fix() -> None:
    from bento.guard import MAX_QUOTED_CHARS, error_body
    from bento.service import payload_message

    names = tuple(f"gke-reach-production-cluster-default-pool-{i:02d}-7f9c2b1a-xk2p" for i in range(40))
    layout = cast(Layout, SimpleNamespace(node_names=names, service_names=(), node_count=40, slot_count=0))
    body = {"cluster_state": {"nodes": {"stranger": {"node_name": "stranger", "cpu_availability": 1.0,
                                                     "memory_availability": 1.0}}, "services": {}}}  # fmt: skip
    with pytest.raises(PayloadError) as caught:
        state_from_request(layout, ActionRequest.model_validate(body))
    assert "40 names, first 10" in str(caught.value) and names[10] not in str(caught.value)
    for general in (True, False):
        message = payload_message(caught.value, general)
        answered = error_body(json.dumps([{"error": message}]).encode(), 422)["error"]
        assert "'stranger'" in answered and answered.endswith(message[message.index("; fix the request or") :])
        assert len(answered) <= MAX_QUOTED_CHARS
    long_error = PayloadError("x" * 5000)
    assert payload_message(long_error, True).endswith("max-replica bounds the pods)")


# --- 3. the planner's twin honours failed nodes and pod_deployable -------------------------------------------


def _failed_request(stuck: bool) -> ActionRequest:
    """request_7-21.json with FAILED marked unavailable; ``stuck``: its pods may go nowhere (no evacuation)."""
    body = copy.deepcopy(REQUEST)
    body["cluster_state"]["nodes"][FAILED]["available"] = False
    for pod in body["pod_deployable"]:
        body["pod_deployable"][pod] = [n for n in body["pod_deployable"][pod] if n != FAILED]
    if stuck:
        for service in body["cluster_state"]["services"].values():
            for pod in service["pods"]:
                if pod["node_name"] == FAILED:
                    body["pod_deployable"][pod["pod_name"]] = []
    return ActionRequest.model_validate(body)


def _served_twin(policy: Policy, request: ActionRequest) -> Any:
    from bento.planning import twin_from_state

    state = policy.encode(request).state
    assert policy.latency is not None
    costs = policy.known_costs(state)
    return twin_from_state(
        policy.latency.model, policy.layout, costs, state.free_cpu_millicores, state.free_memory_bytes,
        state.slot_node, state.node_available, state.target_ok,
    )  # fmt: skip


def test_the_served_twin_never_targets_a_failed_node_nor_moves_pods_off_it_in_later_moves(planner: Policy) -> None:
    layout = planner.layout
    failed = layout.node_names.index(FAILED)
    twin = _served_twin(planner, _failed_request(stuck=True))
    for _ in range(6):  # a few moves deep, as a planned sequence goes
        moves = twin.action_mask()[:-1].reshape(layout.node_count, layout.slot_count)
        assert not moves[failed].any(), "a later move targets the failed node"
        assert not moves[:, twin.slot_node == failed].any(), "a later move moves a pod off the failed node"
        valid = np.argwhere(moves)
        if not len(valid):
            break
        node, slot = valid[0]
        twin = twin.copy()
        twin.move(int(slot), int(node))


def test_the_served_twin_keeps_a_service_off_nodes_its_pods_may_not_be_deployed_to(planner: Policy) -> None:
    body = copy.deepcopy(REQUEST)
    for pod in body["pod_deployable"]:
        if pod.startswith("db-"):
            body["pod_deployable"][pod] = [n for n in body["pod_deployable"][pod] if n != "tb-edge-vm-4-1"]
    layout = planner.layout
    twin = _served_twin(planner, ActionRequest.model_validate(body))
    db = layout.service_names.index("db")
    edge = layout.node_names.index("tb-edge-vm-4-1")
    assert twin.fits()[db, edge], "the twin's capacity alone would allow db there"
    moves = twin.action_mask()[:-1].reshape(layout.node_count, layout.slot_count)
    assert not moves[edge, layout.slot_service == db].any()
    assert moves[edge].any(), "other services may still go there"


def test_a_twin_of_a_simulated_state_moves_exactly_as_the_simulator(planner: Policy) -> None:
    env = CloudEdgeEnv(scenario_dir("7-21"), workload_file("aggregator_sequential"), observation_version=4)
    for seed in range(5):
        env.reset(seed=seed)
        sim = env.simulator
        raw = request_from_state(
            env.layout, sim.free_cpu_millicores, sim.free_memory_bytes, sim.slot_node, sim.target_ok()
        )
        twin = _served_twin(planner, ActionRequest.model_validate(raw))
        np.testing.assert_array_equal(twin.action_mask(), sim.action_mask())


def test_planning_with_a_failed_node_evacuates_it_and_never_targets_it(planner: Policy) -> None:
    request = _failed_request(stuck=False)
    answer = planner.decide(request)
    assert not answer.is_stop and (answer.model_extra or {})["decision_rule"] == "evacuate-unavailable-node"
    assert answer.target_node != FAILED and answer.target_node in request.pod_deployable[answer.pod_name]


def test_no_planned_sequence_moves_onto_or_off_a_failed_node(planner: Policy, monkeypatch: pytest.MonkeyPatch) -> None:
    from bento.planning import ServedTwin

    failed = planner.layout.node_names.index(FAILED)
    seen: list[tuple[int, int]] = []
    move = ServedTwin.move

    def recorded(self: ServedTwin, slot: int, node: int, latency_ms: float | None = None) -> float:
        seen.append((int(self.slot_node[slot]), int(node)))
        return move(self, slot, node, latency_ms)

    monkeypatch.setattr(ServedTwin, "move", recorded)
    request = _failed_request(stuck=True)
    answer = planner.decide(request)
    assert seen, "the planner searched no sequence"
    assert all(failed not in (source, target) for source, target in seen), "a planned step uses the failed node"
    stuck = {p.pod_name for p in request.cluster_state.services["detection"].pods}
    assert answer.is_stop or (answer.target_node != FAILED and answer.pod_name not in stuck)


# --- 4/5. errors that say what to do ----------------------------------------------------------------------------


def _layout_7_21() -> Layout:
    return layout_from_scenario(load_scenario(scenario_dir("7-21")), 3)


def test_a_pod_listed_twice_names_the_services_and_the_fix() -> None:
    body = copy.deepcopy(REQUEST)
    pod = body["cluster_state"]["services"]["detection"]["pods"][0]
    body["cluster_state"]["services"]["db"]["pods"].pop()
    body["cluster_state"]["services"]["db"]["pods"].append(dict(pod))
    with pytest.raises(PayloadError, match="by services 'detection' and 'db'; list each pod once"):
        state_from_request(_layout_7_21(), ActionRequest.model_validate(body))
    body = copy.deepcopy(REQUEST)
    body["cluster_state"]["services"]["detection"]["pods"].append(dict(pod))
    with pytest.raises(PayloadError, match="twice by service 'detection'; list each pod once"):
        state_from_request(_layout_7_21(), ActionRequest.model_validate(body))


def test_a_pod_on_a_node_missing_from_the_nodes_is_refused_with_the_fix() -> None:
    body = copy.deepcopy(REQUEST)
    del body["cluster_state"]["nodes"][FAILED]
    with pytest.raises(PayloadError, match=f"runs on node '{FAILED}', which is missing from cluster_state.nodes; list"):
        state_from_request(_layout_7_21(), ActionRequest.model_validate(body))


def test_a_misspelled_key_in_the_serve_arguments_variable_names_the_variable_and_the_valid_keys() -> None:
    from bento.arguments import overlay
    from bento.service import ServiceArguments

    with pytest.raises(
        ValueError, match=r"\$REACH_SERVE_ARGUMENTS names unknown bento argument\(s\) \['plan_kk'\]"
    ) as e:
        overlay({}, {"REACH_SERVE_ARGUMENTS": '{"plan_kk": 4}'}, ServiceArguments.model_fields)
    assert "'plan_k'" in str(e.value) and "'scenario'" in str(e.value)
    assert overlay({}, {"REACH_SERVE_ARGUMENTS": '{"plan_k": 4}'}, ServiceArguments.model_fields) == {"plan_k": 4}


@pytest.mark.parametrize("plan_k", ["inf", "-inf", "nan", "many", float("inf")])
def test_a_hand_edited_report_with_a_non_finite_plan_k_is_unreadable_not_a_crash(plan_k: Any) -> None:
    from bento.served import describe, served_block

    settings = {"plan_k": plan_k, "plan_horizon": 8, "plan_width": 12, "plan_margin": 1.0}
    report = {"groups": [{"name": "all"}], "settings": settings}
    with pytest.raises(ValueError, match="plan_k"):
        settings_planning(settings)
    assert readable_gated_planning(report) is None
    error = gated_planning_error(report)
    assert error is not None and "plan_k" in error
    served = served_block({"name": "7-21"}, {"name": "chain"}, 7, 21, PlanningSettings(), None, error)
    line = describe({"model_tag": "m", "served": served, "gate": {"passed": True}})
    assert "without a stored evaluation" not in line and "cannot be read" in line
    assert gated_planning_error(None) is None and gated_planning_error({"groups": [], "settings": settings}) is None


# --- 6. schema_version is a JSON integer -----------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2", 2.0, True])
def test_schema_version_must_be_the_integer_2(version: Any) -> None:
    with pytest.raises(ValidationError, match="schema_version"):
        MeasuredConditions.model_validate({"schema_version": version})
    with pytest.raises(ValidationError, match="schema_version"):
        MeasuredConditions.model_validate_json(json.dumps({"schema_version": version}))
    assert MeasuredConditions.model_validate_json('{"schema_version": 2}').schema_version == 2


# --- 7. memory at exactly the node's capacity; the golden version-4 test ---------------------------------------


def test_free_memory_of_exactly_the_nodes_capacity_in_gib_is_accepted_and_a_hair_more_is_refused() -> None:
    layout = _layout_7_21()
    capacity_gib = 27.68e9 / BYTES_PER_GIB  # tb-cloud-vm-8: memory_availability up to "27.68G" (decimal G)
    assert layout.node_memory_scale_bytes[layout.node_names.index(FAILED)] == 27.68e9
    body = copy.deepcopy(REQUEST)
    body["cluster_state"]["nodes"][FAILED]["memory_availability"] = capacity_gib
    check_capacity(layout, state_from_request(layout, ActionRequest.model_validate(body)))
    body["cluster_state"]["nodes"][FAILED]["memory_availability"] = capacity_gib * (1 + 1e-5)
    with pytest.raises(PayloadError, match=f"cluster_state.nodes.{FAILED}.memory_availability"):
        check_capacity(layout, state_from_request(layout, ActionRequest.model_validate(body)))


@pytest.mark.parametrize("measured", [False, True])
def test_golden_version_4_env_observation_equals_the_services(general_tag: str, measured: bool) -> None:
    policy = load_policy(general_tag, str(scenario_dir("7-21")), str(workload_file("aggregator_sequential")))
    env = CloudEdgeEnv(
        scenario_dir("7-21"), workload_file("aggregator_sequential"), observation_version=4,
        measured_conditions=measured, measurement_noise=0.0,
        max_nodes=policy.layout.max_nodes, max_slots=policy.layout.max_slots,
    )  # fmt: skip
    rng = np.random.default_rng(7)
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        for _ in range(4):
            sim = env.simulator
            block = measured_from_conditions(env.scenario, sim.conditions) if measured else None
            raw = request_from_state(
                env.layout, sim.free_cpu_millicores, sim.free_memory_bytes, sim.slot_node, sim.target_ok(), block
            )
            encoded = policy.encode(ActionRequest.model_validate(raw))
            assert (encoded.state.measured_network is not None) == measured
            np.testing.assert_allclose(encoded.observation, obs, rtol=1e-6, atol=1e-7)
            np.testing.assert_array_equal(encoded.mask, env.action_masks())
            valid = np.flatnonzero(env.action_masks()[:-1])
            if not len(valid):
                break
            obs, *_ = env.step(int(rng.choice(valid)))


def _own_target_ok(twin: Any) -> np.ndarray:
    """The served twin's rules slot by slot, as ``ServedTwin.target_ok`` computed them before the batched rules."""
    layout = twin.layout
    result: np.ndarray = (twin.fits() & ~twin.blocked)[layout.slot_service] & ~twin.unavailable[None, :]
    on_node = twin.slot_node >= 0
    stuck = np.zeros(layout.slot_count, dtype=bool)
    stuck[on_node] = twin.unavailable[twin.slot_node[on_node]]
    result[stuck] = False
    return result


def test_a_beam_of_served_twins_gets_each_twins_own_rules_from_one_batched_pass(planner: Policy) -> None:
    """``ServedTwin.move_rules`` over a beam equals each twin's rules slot by slot, and so do the beam's moves.

    Copies of one twin (sharing its failed node and blocked services) a few moves apart, and twins of two
    requests with different failed nodes in one beam.
    """
    from ceenv.simulator import distinct_moves_together

    body = copy.deepcopy(REQUEST)
    for pod in body["pod_deployable"]:
        if pod.startswith("db-"):
            body["pod_deployable"][pod] = [n for n in body["pod_deployable"][pod] if n != "tb-edge-vm-4-1"]
    first = _served_twin(planner, _failed_request(stuck=True))
    other = _served_twin(planner, ActionRequest.model_validate(body))
    assert first.unavailable.any() and other.blocked.any() and not other.unavailable.any()
    rng = np.random.default_rng(0)
    beam = [first]
    for _ in range(7):
        twin = beam[-1].copy()
        valid = np.flatnonzero(twin.action_mask()[:-1])
        action = int(valid[rng.integers(len(valid))])
        twin.move(action % twin.layout.slot_count, action // twin.layout.slot_count)
        beam.append(twin)
    layout = first.layout
    for group in (beam, [*beam[:4], other, other.copy()]):
        services, slots = type(first).move_rules(group)
        assert services.shape == (len(group), len(layout.service_names), layout.node_count)
        for b, twin in enumerate(group):
            batched = services[b][layout.slot_service] & slots[b][:, None]
            np.testing.assert_array_equal(batched, _own_target_ok(twin))
            np.testing.assert_array_equal(twin.target_ok(), _own_target_ok(twin))
        moves, sizes = distinct_moves_together(group)
        expected = [twin.copy().distinct_move_array() for twin in group]
        assert sizes.tolist() == [len(rows) for rows in expected]
        np.testing.assert_array_equal(moves, np.concatenate(expected))
        assert not slots[0].all(), "the failed node's pods are stuck"
