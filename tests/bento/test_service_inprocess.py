"""In-process tests of the policy service: the service class called directly, no HTTP.

Covers packaging round-trips (save to the model store, load back, metadata), the refusal of
models whose observation version or layout does not match the code, and the decision rules
(deterministic, mask from ``pod_deployable``, invalid pick → STOP, payload errors name the item).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pytest

from bento.artefact import METADATA_FILE, POLICY_FILE, PolicyError
from bento.policy import GateVerdict, Policy, check_card
from bento.store import load_policy, save_policy
from ceenv.layout import OBSERVATION_VERSION, SUPPORTED_OBSERVATION_VERSIONS
from ceenv.payload import PayloadError
from ceenv.schema import ActionRequest, ActionResponse
from tests.bento.conftest import CONTRACT_DIR


def contract(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CONTRACT_DIR / name).read_text())
    return data


@pytest.fixture(scope="module")
def service(stored_model: str) -> Any:
    from bento.service import PolicyService

    return PolicyService()


@pytest.fixture(scope="module")
def policy(stored_model: str) -> Policy:
    return load_policy(stored_model)


GENERAL = Path(__file__).resolve().parents[2] / "data" / "policies" / "general-v4"


@pytest.fixture(scope="module")
def moving_service(bentoml_home: Path) -> Any:
    """The service class with the shipped general-v4 policy serving 7-21 / aggregator_sequential (a name of its
    own: reach-policy:latest stays the test model). Unlike the 256-step test policy (near-uniform: STOP or any move
    by a hair), it is known to move on request_7-21.json: one move (detection to tb-edge-vm-4-1, predicted
    195 → 147 ms) has probability ~1, STOP ~0."""
    from bento.service import PolicyService
    from tests.bento.conftest import SCENARIO_DIR, WORKLOAD_FILE

    stored = save_policy(GENERAL, gate=GateVerdict(passed=True, reason="test fixture"), name="reach-policy-general-v4")
    service: Any = object.__new__(PolicyService.inner)  # type: ignore[attr-defined]  # its get_action, with this policy
    service.policy = load_policy(stored, str(SCENARIO_DIR), str(WORKLOAD_FILE))
    return service


def call(service: Any, body: dict[str, Any]) -> ActionResponse:
    request = ActionRequest.model_validate(body)
    result: ActionResponse = service.get_action(
        cluster_state=request.cluster_state, pod_deployable=request.pod_deployable
    )
    return result


def test_saved_policy_round_trips_through_the_model_store_with_its_card(stored_model: str) -> None:
    stored = bentoml.models.get(stored_model)
    metadata: dict[str, Any] = dict(stored.info.metadata)
    assert {p.name for p in Path(stored.path).iterdir()} >= {POLICY_FILE, METADATA_FILE}
    assert metadata["observation_version"] == OBSERVATION_VERSION
    assert metadata["scenario"]["name"] == "7-21"
    assert metadata["workload"]["name"] == "aggregator_sequential"
    assert metadata["gate"] == {"passed": True, "reason": "test fixture"}
    assert stored.info.labels["scenario"] == "7-21"
    card, layout = check_card(metadata, stored_model)
    assert layout.fingerprint() == card.layout_fingerprint
    assert len(layout.node_names) == 7 and layout.slot_count == 21
    assert load_policy(stored_model).tag == stored_model


def test_service_answers_a_reach_request_with_a_valid_move_or_stop(service: Any) -> None:
    body = contract("request_7-21.json")
    response = call(service, body)
    if response.is_stop:
        assert response.pod_name == "" and response.target_node == ""
    else:
        assert response.target_node in body["pod_deployable"][response.pod_name]
    assert response.model_extra is not None and response.model_extra["model_version"].startswith("reach-policy:")


def test_service_answers_a_move_that_the_request_allows_when_its_policy_moves(moving_service: Any) -> None:
    body = contract("request_7-21.json")
    response = call(moving_service, body)
    assert not response.is_stop, f"general-v4 is known to move on this request: {response}"
    assert response.pod_name in body["pod_deployable"], response
    assert response.target_node in body["pod_deployable"][response.pod_name], response


def test_decisions_are_deterministic(service: Any) -> None:
    body = contract("request_7-21.json")
    answers = {call(service, body).model_dump_json() for _ in range(5)}
    assert len(answers) == 1


def test_empty_pod_deployable_leaves_only_stop(service: Any) -> None:
    body = contract("request_7-21.json")
    body["pod_deployable"] = {}
    response = call(service, body)
    assert response.is_stop and response.pod_name == "" and response.target_node == ""


def test_the_mask_comes_from_pod_deployable(policy: Policy) -> None:
    body = contract("request_7-21.json")
    encoded = policy.encode(ActionRequest.model_validate(body))
    layout = policy.layout
    moves = encoded.mask[:-1].reshape(layout.node_count, layout.slot_count)
    for node, slot in zip(*np.nonzero(moves), strict=True):
        pod = encoded.state.slot_pod[slot]
        assert layout.node_names[node] in body["pod_deployable"][pod]
    assert encoded.mask[-1]


class _Stubborn:
    """A predictor that always picks one fixed action, valid or not."""

    def __init__(self, action: int) -> None:
        self.action = action

    def decide(self, observation: Any, mask: Any) -> int:
        return self.action


def test_an_invalid_chosen_action_becomes_stop(policy: Policy) -> None:
    body = contract("request_7-21.json")
    mask = policy.encode(ActionRequest.model_validate(body)).mask
    invalid = int(np.flatnonzero(~mask)[0])
    stubborn = Policy(_Stubborn(invalid), policy.card, policy.layout, policy.tag, policy.latency)
    response = stubborn.decide(ActionRequest.model_validate(body))
    assert response.is_stop and response.pod_name == "" and response.target_node == ""
    assert response.model_extra is not None and response.model_extra["stop_reason"] == "policy chose an invalid move"


def test_a_valid_chosen_move_names_the_pod_and_node_and_predicts_latency(policy: Policy) -> None:
    body = contract("request_7-21.json")
    mask = policy.encode(ActionRequest.model_validate(body)).mask
    valid = int(np.flatnonzero(mask[:-1])[0])
    chosen = Policy(_Stubborn(valid), policy.card, policy.layout, policy.tag, policy.latency)
    response = chosen.decide(ActionRequest.model_validate(body))
    slot, node = valid % policy.layout.slot_count, valid // policy.layout.slot_count
    assert not response.is_stop
    assert response.target_node == policy.layout.node_names[node]
    assert response.target_node in body["pod_deployable"][response.pod_name]
    extra = response.model_extra or {}
    assert extra["predicted_latency_before_ms"] > 0 and extra["predicted_latency_after_ms"] > 0
    assert slot < policy.layout.slot_count


@pytest.mark.parametrize(
    ("fixture", "mentions"),
    [
        ("invalid_unknown_node.json", "tb-cloud-vm-8-9"),
        ("invalid_unknown_service.json", "payment"),
        ("invalid_too_many_pods.json", "aggregator"),
        ("invalid_unknown_deployable_node.json", "tb-edge-vm-4-7"),
    ],
)
def test_payloads_that_do_not_fit_the_layout_are_refused_naming_the_item(
    service: Any, fixture: str, mentions: str
) -> None:
    from bento.service import InvalidPayload

    with pytest.raises(InvalidPayload, match=mentions) as info:
        call(service, contract(fixture))
    assert info.value.error_code == 422
    assert isinstance(info.value.__cause__, PayloadError) or info.value.__suppress_context__


def test_pod_deployable_for_a_pod_not_in_the_cluster_state_is_refused(service: Any) -> None:
    from bento.service import InvalidPayload

    body = contract("request_7-21.json")
    body["pod_deployable"]["ghost-7d9f8-zzzzz"] = ["tb-cloud-vm-8-1"]
    with pytest.raises(InvalidPayload, match="ghost-7d9f8-zzzzz"):
        call(service, body)


def _store_with_metadata(stored_model: str, **changes: Any) -> str:
    """A copy of the test policy whose card differs, as an older or foreign packager would write it."""
    import shutil

    source = bentoml.models.get(stored_model)
    metadata = {**source.info.metadata, **changes}
    with bentoml.models.create("reach-policy-foreign", metadata=metadata) as model:
        for item in Path(source.path).iterdir():
            if item.name == "model.yaml":
                continue
            if item.is_dir():
                shutil.copytree(item, Path(model.path) / item.name)
            else:
                shutil.copyfile(item, Path(model.path) / item.name)
    return str(model.tag)


def test_a_model_of_another_observation_version_is_refused(stored_model: str) -> None:
    tag = _store_with_metadata(stored_model, observation_version=max(SUPPORTED_OBSERVATION_VERSIONS) + 1)
    with pytest.raises(PolicyError, match="observation version"):
        load_policy(tag)


def test_a_model_whose_layout_fingerprint_differs_from_the_code_is_refused(stored_model: str) -> None:
    tag = _store_with_metadata(stored_model, layout_fingerprint="0123456789abcdef")
    with pytest.raises(PolicyError, match="fingerprint"):
        load_policy(tag)


def test_a_model_whose_layout_the_code_cannot_read_is_refused(stored_model: str) -> None:
    tag = _store_with_metadata(stored_model, layout={"node_names": ["a"]})
    with pytest.raises(PolicyError, match="layout"):
        load_policy(tag)


def test_a_model_without_a_card_is_refused(bentoml_home: Path) -> None:
    with bentoml.models.create("not-a-reach-policy", metadata={"hello": "world"}) as model:
        (Path(model.path) / "weights.bin").write_bytes(b"\0")
    with pytest.raises(PolicyError, match="not a reach policy card"):
        load_policy(str(model.tag))


def test_a_stored_model_missing_its_weights_is_refused(stored_model: str) -> None:
    tag = _store_with_metadata(stored_model)
    (Path(bentoml.models.get(tag).path) / POLICY_FILE).unlink()
    with pytest.raises(PolicyError, match=f"model {tag}.*policy.zip: missing"):
        load_policy(tag)


def test_saving_an_artefact_of_another_observation_version_is_refused_before_writing(
    artefact_dir: Path, tmp_path: Path
) -> None:
    import shutil

    broken = tmp_path / "artefact"
    shutil.copytree(artefact_dir, broken)
    metadata = json.loads((broken / METADATA_FILE).read_text())
    metadata["observation_version"] = max(SUPPORTED_OBSERVATION_VERSIONS) + 1
    (broken / METADATA_FILE).write_text(json.dumps(metadata))
    before = len(bentoml.models.list())
    with pytest.raises(PolicyError, match="observation_version"):
        save_policy(broken, gate=GateVerdict(passed=True, reason="test"))
    assert len(bentoml.models.list()) == before


def test_metadata_names_the_model_scenario_and_evaluation(service: Any, stored_model: str) -> None:
    summary = service.metadata()
    assert summary["model_tag"] == stored_model
    assert summary["scenario"]["name"] == "7-21"
    assert summary["workload"]["name"] == "aggregator_sequential"
    assert summary["evaluation"]["episodes"] == 0
    assert summary["trained_utc"]
    assert summary["gate"]["passed"] is True


def test_a_pod_on_a_failed_node_is_evacuated_first_whatever_the_policy_picks(policy: Policy) -> None:
    body = contract("request_7-21.json")
    failed = "tb-cloud-vm-8-1"
    body["cluster_state"]["nodes"][failed]["available"] = False
    stop_always = Policy(_Stubborn(policy.layout.stop_action), policy.card, policy.layout, policy.tag, policy.latency)
    response = stop_always.decide(ActionRequest.model_validate(body))
    extra = response.model_extra or {}
    assert not response.is_stop and extra["decision_rule"] == "evacuate-unavailable-node"
    assert response.pod_name in {"machine-learning-3a8f4dd2e1-1c84e", "detection-bf0a919a4b-36a0a"}
    allowed = [n for n in body["pod_deployable"][response.pod_name] if n != failed]
    assert response.target_node in allowed
    assert policy.latency is not None
    state = policy.encode(ActionRequest.model_validate(body)).state
    slot = state.slot_pod.index(response.pod_name)

    def after(target: str) -> float | None:
        placed = state.slot_node.copy()
        placed[slot] = policy.layout.node_names.index(target)
        return policy.latency.of(policy.layout, placed) if policy.latency else None

    assert extra["predicted_latency_after_ms"] == min(after(n) or np.inf for n in allowed)
    body["cluster_state"]["nodes"][failed]["available"] = True
    assert stop_always.decide(ActionRequest.model_validate(body)).is_stop


def test_a_general_policy_evacuates_a_failed_node_too(bentoml_home: Path) -> None:
    """A general (padded) policy's actions are indexed over its limits, not over the cluster: the evacuation
    rule must read the cluster's own move mask (it once read the padded one, found no target and let the
    network pick)."""
    from tests.conftest import scenario_dir, workload_file

    general = Path(__file__).resolve().parents[2] / "data" / "policies" / "general-v4"
    latest_before = _latest_tag()
    # A name of its own: reach-policy:latest stays the 7-21 test model that the other service tests load.
    model = save_policy(general, gate=GateVerdict(passed=True, reason="test"), name="reach-policy-general-evacuation")
    assert _latest_tag() == latest_before
    served = load_policy(str(model.tag), str(scenario_dir("7-21")), str(workload_file("aggregator_sequential")))
    assert served.layout.padded
    stop_always = Policy(_Stubborn(served.layout.stop_action), served.card, served.layout, served.tag, served.latency)
    body = contract("request_7-21.json")
    body["cluster_state"]["nodes"]["tb-cloud-vm-8-1"]["available"] = False
    response = stop_always.decide(ActionRequest.model_validate(body))
    assert not response.is_stop and (response.model_extra or {})["decision_rule"] == "evacuate-unavailable-node"
    # detection's only pod is on the failed node; machine-learning keeps one on tb-edge-vm-4-2
    assert response.pod_name == "detection-bf0a919a4b-36a0a"
    assert response.target_node in body["pod_deployable"][response.pod_name]


def _latest_tag() -> str | None:
    try:
        return str(bentoml.models.get("reach-policy:latest").tag)
    except bentoml.exceptions.NotFound:
        return None
