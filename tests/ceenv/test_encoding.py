"""The one shared encoder: the golden env-vs-payload test, action codec, layout, payload errors."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from ceenv.env import CloudEdgeEnv
from ceenv.layout import Layout
from ceenv.observation import decode_action, encode_action, move_gain_features, move_mask, observe
from ceenv.payload import PayloadError, request_from_state, state_from_request
from ceenv.schema import ActionRequest, ActionResponse
from tests.conftest import scenario_dir, workload_file


def _env_request(scenario: str, seed: int, moves: int = 0) -> tuple[CloudEdgeEnv, dict[str, Any]]:
    env = CloudEdgeEnv(scenario_dir(scenario), workload_file("chain"))
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(moves):
        valid = np.flatnonzero(env.action_masks()[:-1])
        env.step(int(valid[rng.integers(valid.size)]))
    sim = env.simulator
    return env, request_from_state(
        env.layout, sim.free_cpu_millicores, sim.free_memory_bytes, sim.slot_node, sim.target_ok()
    )


@pytest.mark.parametrize(("scenario", "seed", "moves"), [("7-21", 0, 0), ("13-29", 1, 7), ("19-37", 2, 15)])
def test_golden_env_observation_equals_the_observation_rebuilt_from_the_wire_payload(
    scenario: str, seed: int, moves: int
) -> None:
    env, raw = _env_request(scenario, seed, moves)
    decoded = state_from_request(env.layout, ActionRequest.model_validate(raw))
    mask = move_mask(env.layout, decoded.slot_node, decoded.target_ok)
    np.testing.assert_array_equal(mask, env.action_masks())
    gains = move_gain_features(env.layout, env.model, env.model.nominal_costs(), decoded.slot_node, mask)
    rebuilt = observe(env.layout, decoded.free_cpu_millicores, decoded.free_memory_bytes, decoded.slot_node, gains)
    np.testing.assert_allclose(rebuilt, env.simulator.observation(), rtol=1e-6, atol=1e-7)


def test_action_index_round_trips() -> None:
    env = CloudEdgeEnv(scenario_dir("7-21"), workload_file("chain"))
    layout = env.layout
    for slot in range(layout.slot_count):
        for node in range(layout.node_count):
            assert decode_action(layout, encode_action(layout, slot, node)) == (slot, node)
    assert decode_action(layout, layout.stop_action) is None
    with pytest.raises(ValueError, match="outside"):
        decode_action(layout, layout.action_count)


def test_layout_survives_its_dict_form_and_the_fingerprint_tracks_changes() -> None:
    layout = CloudEdgeEnv(scenario_dir("13-29"), workload_file("chain")).layout
    again = Layout.from_dict(layout.to_dict())
    assert again == layout and again.fingerprint() == layout.fingerprint()
    other = CloudEdgeEnv(scenario_dir("7-21"), workload_file("chain")).layout
    assert other.fingerprint() != layout.fingerprint()


def test_a_layouts_cached_sizes_belong_to_its_own_fields() -> None:
    """The derived sizes (``action_count``, ``padded``...) are computed once per layout (the env asks for
    them a dozen times per step); a layout made from it with other fields gets its own, and the cache
    neither enters the dict form nor equality."""
    import pickle

    layout = CloudEdgeEnv(scenario_dir("13-29"), workload_file("chain")).layout
    n, p = layout.node_count, layout.slot_count
    assert (layout.padded, layout.action_count, layout.stop_action) == (False, n * p + 1, n * p)
    padded = dataclasses.replace(layout, version=4, max_nodes=40, max_slots=80)
    assert (padded.padded, padded.action_nodes, padded.action_slots) == (True, 40, 80)
    assert (padded.action_count, padded.stop_action) == (40 * 80 + 1, 40 * 80)
    assert padded.observation_size == 40 * 10 + 80 * 8 + 40 * 80 * 5
    wider = dataclasses.replace(padded, max_nodes=60)
    assert (wider.action_nodes, wider.action_count) == (60, 60 * 80 + 1)
    assert (layout.padded, layout.action_count) == (False, n * p + 1)  # the first one keeps its own
    assert Layout.from_dict(padded.to_dict()) == padded and "action_count" not in padded.to_dict()
    again = pickle.loads(pickle.dumps(padded))
    assert again == padded and (again.action_count, again.padded) == (padded.action_count, True)


def test_version_2_observation_appends_each_services_placement_fractions_and_pod_share() -> None:
    env = CloudEdgeEnv(scenario_dir("7-21"), workload_file("chain"), observation_version=2)
    env.reset(seed=4)
    layout, sim = env.layout, env.simulator
    v1 = dataclasses.replace(layout, version=1)
    obs = sim.observation()
    old = observe(v1, sim.free_cpu_millicores, sim.free_memory_bytes, sim.slot_node)
    assert obs.shape == (layout.observation_size,) and old.shape == (v1.observation_size,)
    np.testing.assert_array_equal(obs[: old.size], old)  # version 2 extends version 1
    services, n = len(layout.service_names), layout.node_count
    fractions = obs[old.size : old.size + services * n].reshape(services, n)
    share = obs[old.size + services * n :]
    for s in range(services):
        nodes = sim.slot_node[(layout.slot_service == s) & (sim.slot_node >= 0)]
        expected = np.bincount(nodes, minlength=n) / max(nodes.size, 1)
        np.testing.assert_allclose(fractions[s], expected, rtol=1e-6)
        assert share[s] == pytest.approx(nodes.size / layout.service_slots[s])
    assert env.observation_space.contains(obs)


def test_a_version_1_env_builds_version_1_observations_and_unknown_versions_are_refused() -> None:
    env = CloudEdgeEnv(scenario_dir("7-21"), workload_file("chain"), observation_version=1)
    obs, _ = env.reset(seed=0)
    n, slots = env.layout.node_count, env.layout.slot_count
    assert obs.shape == (2 * n + slots * (n + 1),)
    with pytest.raises(ValueError, match="observation version 5 is not supported"):
        CloudEdgeEnv(scenario_dir("7-21"), workload_file("chain"), observation_version=5)


def _edit(raw: dict[str, Any], edit: Any) -> ActionRequest:
    changed = copy.deepcopy(raw)
    edit(changed)
    return ActionRequest.model_validate(changed)


PAYLOAD_DEFECTS = [
    (
        "unknown node",
        lambda r: r["cluster_state"]["nodes"].update(
            {"mystery": {"node_name": "mystery", "cpu_availability": 1, "memory_availability": 1}}
        ),
        "unknown node 'mystery'",
    ),
    (
        "unknown service",
        lambda r: r["cluster_state"]["services"].update({"cache": {"service_name": "cache", "pods": []}}),
        "unknown service 'cache'",
    ),
    (
        "too many pods",
        lambda r: r["cluster_state"]["services"]["client"]["pods"].append(
            {"pod_name": "client-x", "node_name": "tb-client-vm-2-1"}
        ),
        "2 pods but the model has 1 slots",
    ),
    (
        "pod on unknown node",
        lambda r: r["cluster_state"]["services"]["db"]["pods"][0].update({"node_name": "nowhere"}),
        "runs on unknown node 'nowhere'",
    ),
    ("unknown pod in pod_deployable", lambda r: r["pod_deployable"].update({"ghost": []}), "unknown pod 'ghost'"),
    ("unknown deployable node", lambda r: r["pod_deployable"].update({"db-0": ["nowhere"]}), "unknown node 'nowhere'"),
    (
        "name mismatch",
        lambda r: r["cluster_state"]["nodes"]["tb-cloud-vm-8-1"].update({"node_name": "tb-cloud-vm-8-2"}),
        "expected 'tb-cloud-vm-8-1'",
    ),
    (
        "service name mismatch",
        lambda r: r["cluster_state"]["services"]["db"].update({"service_name": "detection"}),
        "services.db.service_name is 'detection', expected 'db'",
    ),
]


@pytest.mark.parametrize(("case", "edit", "message"), PAYLOAD_DEFECTS, ids=[c[0] for c in PAYLOAD_DEFECTS])
def test_payload_defects_name_the_offending_item(case: str, edit: Any, message: str) -> None:
    env, raw = _env_request("7-21", 0)
    with pytest.raises(PayloadError, match=message):
        state_from_request(env.layout, _edit(raw, edit))


def test_negative_resources_are_rejected_by_the_schema() -> None:
    _, raw = _env_request("7-21", 0)
    raw["cluster_state"]["nodes"]["tb-cloud-vm-8-1"]["cpu_availability"] = -5
    with pytest.raises(ValidationError, match="cpu_availability"):
        ActionRequest.model_validate(raw)


@pytest.mark.parametrize(
    ("field", "value"),
    [("cpu_availability", True), ("cpu_availability", "4000"), ("memory_availability", False), ("available", 1)],
)
def test_numbers_and_flags_are_strict_json_types(field: str, value: object) -> None:
    """``true`` is not 1 millicore and ``1`` is not ``true``: a client's type mistake is refused, not guessed."""
    _, raw = _env_request("7-21", 0)
    raw["cluster_state"]["nodes"]["tb-cloud-vm-8-1"][field] = value
    with pytest.raises(ValidationError, match=field):
        ActionRequest.model_validate_json(json.dumps(raw))
    raw["cluster_state"]["nodes"]["tb-cloud-vm-8-1"][field] = 0 if field != "available" else False
    ActionRequest.model_validate_json(json.dumps(raw))  # an integer number and a JSON boolean are fine


def test_a_response_whose_stop_flag_is_not_a_boolean_is_refused() -> None:
    with pytest.raises(ValidationError, match="is_stop"):
        ActionResponse.model_validate_json('{"pod_name": "", "target_node": "", "is_stop": "false"}')
    assert ActionResponse.model_validate_json('{"is_stop": true}').is_stop


def test_missing_nodes_are_unavailable_targets() -> None:
    env, raw = _env_request("19-37", 0)
    empty = [
        n
        for n in env.layout.node_names
        if n not in {p["node_name"] for s in raw["cluster_state"]["services"].values() for p in s["pods"]}
    ]
    assert empty, "19-37 seed 0 leaves at least one node without pods"
    raw["cluster_state"]["nodes"].pop(empty[0])
    decoded = state_from_request(env.layout, ActionRequest.model_validate(raw))
    assert not decoded.target_ok[:, env.layout.node_names.index(empty[0])].any()
