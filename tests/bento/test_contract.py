"""Contract and golden tests: the shared payload fixtures, and env observation == service observation.

The fixtures in tests/contract/ are REACH ``POST /get_action`` bodies and answers that the
migrator's tests reuse; here they are checked against the schema and the 7-21 layout. The golden
tests build, for many env states, the request a cluster in that state would send
(:func:`ceenv.payload.request_from_state`) and assert that the service sees exactly the env's
observation and mask, and picks the action the policy picks inside the env.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from bento.policy import Policy
from bento.store import load_policy
from ceenv.env import CloudEdgeEnv
from ceenv.layout import layout_from_scenario
from ceenv.payload import request_from_state, state_from_request
from ceenv.scenario import load_scenario
from ceenv.schema import ActionRequest, ActionResponse
from tests.bento.conftest import CONTRACT_DIR, SCENARIO_DIR, WORKLOAD_FILE

CASES: dict[str, Any] = json.loads((CONTRACT_DIR / "cases.json").read_text())


@pytest.fixture(scope="module")
def policy(stored_model: str) -> Policy:
    return load_policy(stored_model)


def test_cases_index_lists_every_fixture_file() -> None:
    listed = {*CASES["valid"], *(c["file"] for c in CASES["invalid"]), *CASES["responses"], "cases.json"}
    present = {p.name for p in CONTRACT_DIR.iterdir() if p.suffix in {".json", ".txt"}}
    assert listed == present


@pytest.mark.parametrize("name", CASES["valid"])
def test_valid_fixtures_parse_and_fit_the_7_21_layout(name: str) -> None:
    request = ActionRequest.model_validate_json((CONTRACT_DIR / name).read_bytes())
    state = state_from_request(layout_from_scenario(load_scenario(SCENARIO_DIR)), request)
    assert (state.slot_node >= 0).sum() == sum(len(s.pods) for s in request.cluster_state.services.values())


@pytest.mark.parametrize("name", CASES["responses"])
def test_response_fixtures_are_consistent_with_the_request(name: str) -> None:
    answer = ActionResponse.model_validate_json((CONTRACT_DIR / name).read_bytes())
    request = json.loads((CONTRACT_DIR / "request_7-21.json").read_text())
    if answer.is_stop:
        assert answer.pod_name == "" and answer.target_node == ""
    else:
        assert answer.target_node in request["pod_deployable"][answer.pod_name]


def _walk_states(env: CloudEdgeEnv, seed: int, moves: int) -> list[tuple[np.ndarray, np.ndarray, dict[str, Any]]]:
    """(observation, mask, request) along a random walk of valid moves from a seeded start."""
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    states = []
    for _ in range(moves + 1):
        sim = env.simulator
        request = request_from_state(
            env.layout, sim.free_cpu_millicores, sim.free_memory_bytes, sim.slot_node, sim.target_ok()
        )
        states.append((obs, env.action_masks().copy(), request))
        valid_moves = np.flatnonzero(env.action_masks()[:-1])
        if len(valid_moves) == 0:
            break
        obs, *_ = env.step(int(rng.choice(valid_moves)))
    return states


@pytest.mark.parametrize("seed", range(8))
def test_golden_env_observation_equals_service_observation(policy: Policy, seed: int) -> None:
    env = CloudEdgeEnv(SCENARIO_DIR, WORKLOAD_FILE)
    for env_obs, env_mask, request in _walk_states(env, seed, moves=5):
        encoded = policy.encode(ActionRequest.model_validate(request))
        np.testing.assert_array_equal(encoded.observation, env_obs)
        np.testing.assert_array_equal(encoded.mask, env_mask)


@pytest.mark.parametrize("seed", range(4))
def test_golden_service_picks_the_action_the_policy_picks_in_the_env(policy: Policy, seed: int) -> None:
    env = CloudEdgeEnv(SCENARIO_DIR, WORKLOAD_FILE)
    layout = env.layout
    for env_obs, env_mask, request in _walk_states(env, seed, moves=3):
        in_env = policy.predictor.decide(env_obs, env_mask)
        answer = policy.decide(ActionRequest.model_validate(request))
        if in_env == layout.stop_action:
            assert answer.is_stop
        else:
            slot, node = in_env % layout.slot_count, in_env // layout.slot_count
            assert (answer.pod_name, answer.target_node) == (layout.slot_name(slot), layout.node_names[node])


@pytest.mark.parametrize("seed", range(3))
def test_golden_a_measured_block_is_decoded_and_observation_3_keeps_the_nominal_network(
    policy: Policy, seed: int
) -> None:
    from ceenv.payload import PayloadError, measured_from_conditions

    env = CloudEdgeEnv(SCENARIO_DIR, WORKLOAD_FILE, measured_conditions=True, measurement_noise=0.0)
    for env_obs, env_mask, request in _walk_states(env, seed, moves=3):
        request["measured"] = measured_from_conditions(env.scenario, env.simulator.conditions)
        encoded = policy.encode(ActionRequest.model_validate(request))
        assert encoded.state.measured_network is not None
        np.testing.assert_allclose(encoded.state.measured_network.delay_ms, env.simulator.network.delay_ms, atol=1e-9)
        np.testing.assert_array_equal(encoded.observation, env_obs)
        np.testing.assert_array_equal(encoded.mask, env_mask)
        assert policy.known_costs(encoded.state) is policy.latency.costs  # type: ignore[union-attr]
    request["measured"] = {"node_utilization": {"no-such-node": 0.1}}
    with pytest.raises(PayloadError, match="no-such-node"):
        policy.encode(ActionRequest.model_validate(request))
