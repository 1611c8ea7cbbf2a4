"""Measured conditions: the optional payload block, its network, and the env's noisy known costs."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from ceenv.env import CloudEdgeEnv
from ceenv.payload import PayloadError, measured_from_conditions, request_from_state, state_from_request
from ceenv.reference import reference_scenario
from ceenv.schema import ActionRequest
from ceenv.vector import BatchedCloudEdgeEnv


def _request(env: CloudEdgeEnv, measured: dict | None) -> ActionRequest:
    sim = env.simulator
    raw = request_from_state(
        env.layout, sim.free_cpu_millicores, sim.free_memory_bytes, sim.slot_node, sim.target_ok(), measured
    )
    return ActionRequest.model_validate(raw)


def test_a_full_measured_block_decodes_to_the_drawn_network() -> None:
    env = CloudEdgeEnv(reference_scenario("7-21"))
    env.reset(seed=4)
    sim = env.simulator
    measured = measured_from_conditions(env.scenario, sim.conditions)
    state = state_from_request(env.layout, _request(env, measured), env.scenario)
    assert state.measured_network is not None
    assert np.allclose(state.measured_network.delay_ms, sim.network.delay_ms, rtol=0, atol=1e-9)
    assert np.allclose(state.measured_network.ms_per_byte, sim.network.ms_per_byte, rtol=1e-12, atol=0)


def test_absent_fields_keep_the_nominal_values() -> None:
    env = CloudEdgeEnv(reference_scenario("7-21"))
    env.reset(seed=1)
    nominal = env.model.nominal_costs().network
    assert state_from_request(env.layout, _request(env, None), env.scenario).measured_network is None
    names = env.scenario.node_names
    partial = {"node_delay_ms": {names[0]: {names[1]: 42.0}}, "node_utilization": {names[2]: 0.5}}
    network = state_from_request(env.layout, _request(env, partial), env.scenario).measured_network
    assert network is not None
    assert network.delay_ms[0, 1] == 42.0
    changed = np.zeros_like(nominal.delay_ms, dtype=bool)
    changed[0, 1] = True
    assert np.array_equal(network.delay_ms[~changed], nominal.delay_ms[~changed])
    assert network.ms_per_byte[2, 3] == pytest.approx(2 * nominal.ms_per_byte[2, 3])  # half the bandwidth left
    assert network.ms_per_byte[3, 4] == nominal.ms_per_byte[3, 4]


def test_a_measured_block_naming_an_unknown_node_is_refused_by_name() -> None:
    env = CloudEdgeEnv(reference_scenario("7-21"))
    env.reset(seed=1)
    with pytest.raises(PayloadError, match="tb-edge-vm-4-9"):
        state_from_request(env.layout, _request(env, {"node_utilization": {"tb-edge-vm-4-9": 0.1}}), env.scenario)


@pytest.mark.parametrize(
    "bad",
    [
        {"node_delay_ms": {"a": {"b": float("inf")}}},
        {"node_delay_ms": {"a": {"b": -1.0}}},
        {"node_utilization": {"a": 1.01}},
        {"bandwidth_mbps": {"a": 0.0}},
        {"bandwidth_mbps": {"a": 1e-320}},  # positive, but its transfer cost overflows to infinity
        {"schema_version": 3},
    ],
)
def test_the_schema_rejects_non_finite_or_out_of_range_measurements(bad: dict) -> None:
    with pytest.raises(ValidationError, match="measured"):
        ActionRequest.model_validate({"cluster_state": {"nodes": {}, "services": {}}, "measured": bad})


def test_a_measured_network_that_is_not_finite_is_refused_by_node() -> None:
    """Past the schema (an in-process caller can skip it), a bandwidth that overflows the costs names the node."""
    from ceenv.payload import network_from_measured
    from ceenv.schema import MeasuredConditions

    scenario = reference_scenario("7-21")
    node = scenario.node_names[2]
    with pytest.raises(PayloadError, match=node):
        network_from_measured(scenario, MeasuredConditions.model_construct(bandwidth_mbps={node: 1e-320}))
    lowest = network_from_measured(
        scenario, MeasuredConditions(bandwidth_mbps={node: 1e-3}, node_utilization={node: 1.0})
    )
    assert np.isfinite(lowest.ms_per_byte).all()
    busy = network_from_measured(scenario, MeasuredConditions(node_utilization={node: 1.0}))
    nearly = network_from_measured(scenario, MeasuredConditions(node_utilization={node: 0.999}))
    assert np.array_equal(busy.ms_per_byte, nearly.ms_per_byte)  # fully busy counts as 99.9 % busy


def test_known_costs_are_nominal_by_default_and_the_truth_without_noise() -> None:
    plain = CloudEdgeEnv(reference_scenario("7-21"))
    plain.reset(seed=2)
    assert plain.simulator.known_costs is plain.model.nominal_costs()
    exact = CloudEdgeEnv(reference_scenario("7-21"), measured_conditions=True, measurement_noise=0.0)
    exact.reset(seed=2)
    assert np.array_equal(exact.simulator.known_costs.matrices, exact.simulator.costs.matrices)
    assert np.array_equal(exact.simulator.slot_node, plain.simulator.slot_node)  # same start state


def test_measurement_noise_is_seeded_bounded_and_leaves_observation_and_reward_alone() -> None:
    envs = [CloudEdgeEnv(reference_scenario("7-21"), measured_conditions=True, measurement_noise=0.2) for _ in range(2)]
    plain = CloudEdgeEnv(reference_scenario("7-21"))
    observations = [env.reset(seed=9)[0] for env in [*envs, plain]]
    known = [env.simulator.known_costs.network for env in envs]
    assert np.array_equal(known[0].delay_ms, known[1].delay_ms)
    true = envs[0].simulator.network
    off = ~np.eye(true.delay_ms.shape[0], dtype=bool)
    ratio = known[0].delay_ms[off] / true.delay_ms[off]
    assert not np.allclose(ratio, 1.0)
    assert (np.abs(np.log(ratio)) < 0.2 * 6).all()  # six sigma
    assert np.array_equal(observations[0], observations[2])  # observation 3 keeps the nominal network
    action = int(np.flatnonzero(plain.action_masks()[:-1])[0])
    assert envs[0].step(action)[1] == plain.step(action)[1]


def test_the_batched_env_draws_the_same_known_costs_as_single_envs() -> None:
    batched = BatchedCloudEdgeEnv(3, reference_scenario("7-21"), measured_conditions=True, measurement_noise=0.3)
    batched.reset(seed=20)
    assert batched.known_matrices is not None
    for i in range(3):
        env = CloudEdgeEnv(reference_scenario("7-21"), measured_conditions=True, measurement_noise=0.3)
        env.reset(seed=20 + i)
        assert np.array_equal(batched.known_matrices[i], env.simulator.known_costs.matrices)


def test_negative_noise_is_refused() -> None:
    with pytest.raises(ValueError, match="measurement_noise"):
        CloudEdgeEnv(reference_scenario("7-21"), measurement_noise=-0.1)
