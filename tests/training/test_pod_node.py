"""Observation version 4 and the pod×node policy: size-agnostic weights, order-free decisions, padding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bento.pod_node import PodNodePolicy
from ceenv.env import CloudEdgeEnv
from ceenv.observation import decode_action, encode_state, policy_mask
from tests.conftest import scenario_dir, workload_file


def _policy(env: CloudEdgeEnv) -> PodNodePolicy:
    torch.manual_seed(0)
    layout = env.layout
    return PodNodePolicy(
        env.observation_space, env.action_space, lambda _: 3e-4, max_nodes=layout.max_nodes, max_slots=layout.max_slots
    )


def _decide(policy: PodNodePolicy, obs: np.ndarray, mask: np.ndarray) -> int:
    action, _ = policy.predict(obs, action_masks=mask, deterministic=True)
    return int(action)


def test_parameter_count_does_not_depend_on_the_limits_or_the_cluster() -> None:
    small = CloudEdgeEnv(scenario_dir("7-21"), workload_file("chain"), observation_version=4, max_nodes=8, max_slots=24)
    large = CloudEdgeEnv(scenario_dir("19-37"), workload_file("chain"), observation_version=4)
    counts = {sum(p.numel() for p in _policy(e).parameters()) for e in (small, large)}
    assert len(counts) == 1
    assert small.action_space.n != large.action_space.n


def test_a_cluster_larger_than_the_limits_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="more than the observation's limits"):
        CloudEdgeEnv(scenario_dir("19-37"), workload_file("chain"), observation_version=4, max_nodes=10)


@pytest.mark.parametrize("seed", range(4))
def test_permuting_the_pods_of_a_service_gives_the_same_decision(seed: int) -> None:
    env = CloudEdgeEnv(scenario_dir("13-29"), workload_file("aggregator_sequential"), observation_version=4)
    env.reset(seed=seed)
    sim, layout = env.simulator, env.layout
    policy = _policy(env)
    rng = np.random.default_rng(seed)
    permuted = np.arange(layout.slot_count)
    for s in range(len(layout.service_names)):
        block = np.flatnonzero(layout.slot_service == s)
        permuted[block] = rng.permutation(block)  # the request lists the service's pods in another order

    def decision(slot_node: np.ndarray) -> tuple[int, int, int] | None:
        other = sim.copy()
        other.reset_to(sim.conditions, slot_node)
        mask = other.action_mask()
        obs = encode_state(
            layout, other.model, other.model.nominal_costs(), other.free_cpu_millicores,
            other.free_memory_bytes, other.slot_node, mask,
        )  # fmt: skip
        decoded = decode_action(layout, _decide(policy, obs, policy_mask(layout, mask)))
        if decoded is None:
            return None
        slot, node = decoded
        return int(layout.slot_service[slot]), int(other.slot_node[slot]), node

    original = decision(sim.slot_node)
    assert original is not None  # a random start state always has a move worth making
    assert decision(sim.slot_node[permuted]) == original


def test_padding_is_masked_and_every_valid_action_decodes_to_a_real_move() -> None:
    env = CloudEdgeEnv(scenario_dir("7-21"), workload_file("chain"), observation_version=4)
    env.reset(seed=3)
    mask = env.action_masks()
    layout = env.layout
    assert mask.shape == (layout.max_nodes * layout.max_slots + 1,)
    moves = mask[:-1].reshape(layout.max_nodes, layout.max_slots)
    assert not moves[layout.node_count :].any() and not moves[:, layout.slot_count :].any()
    for action in np.flatnonzero(mask[:-1])[:5]:
        assert decode_action(layout, int(action)) is not None
    _, _, _, _, info = env.step(int(np.flatnonzero(mask[:-1])[0]))
    assert not info["invalid_action"]
    padding_action = layout.node_count * layout.max_slots  # node row past the cluster
    _, reward, terminated, _, info = env.step(padding_action)
    assert info["invalid_action"] and not terminated and reward == -env.step_cost_ms


def test_the_untrained_policy_follows_the_gain_prior() -> None:
    env = CloudEdgeEnv(scenario_dir("13-29"), workload_file("aggregator_sequential"), observation_version=4)
    obs, _ = env.reset(seed=11)
    policy = _policy(env)
    mask = env.action_masks()
    gains = obs[-layout_pairs(env) :].reshape(-1, 5)[:, 0]
    best = int(np.argmax(np.where(mask[:-1], gains, -np.inf)))
    assert _decide(policy, obs, mask) == best


def layout_pairs(env: CloudEdgeEnv) -> int:
    return env.layout.max_nodes * env.layout.max_slots * 5


def test_the_shipped_general_policy_loads_and_fine_tuning_starts_from_its_weights() -> None:
    from bento.artefact import load_artefact
    from flows.training.config import load_train_config
    from flows.training.envs import make_vec_env
    from flows.training.trainer import build_model

    root = Path(__file__).resolve().parents[2]
    shipped = load_artefact(root / "data" / "policies" / "general-v4")
    assert (shipped.layout.max_nodes, shipped.layout.max_slots) == (40, 80)
    config = load_train_config(root / "data" / "train" / "finetune.json", n_envs=1, batch_size=64)
    venv = make_vec_env(scenario_dir("7-21"), workload_file("chain"), config)
    model = build_model(config, venv, None)
    for name, value in shipped.model.policy.state_dict().items():
        assert torch.equal(model.policy.state_dict()[name], value), name


def test_the_masked_distribution_is_sb3_contribs_with_one_normalisation() -> None:
    """PodNodePolicy builds its masked Categorical directly; it must equal proba_distribution + apply_masking."""
    from sb3_contrib.common.maskable.distributions import MaskableCategoricalDistribution

    env = CloudEdgeEnv(scenario_dir("7-21"), workload_file("chain"), observation_version=4)
    policy = _policy(env)
    torch.manual_seed(1)
    logits = torch.randn(8, int(env.action_space.n)) * 3
    masks = torch.rand(8, int(env.action_space.n)) > 0.6
    masks[:, -1] = True
    reference = MaskableCategoricalDistribution(int(env.action_space.n)).proba_distribution(action_logits=logits)
    reference.apply_masking(masks)
    ours = policy._distribution(logits, masks)
    actions = reference.sample()
    assert torch.allclose(ours.log_prob(actions), reference.log_prob(actions))
    assert torch.allclose(ours.entropy(), reference.entropy())
    assert torch.equal(ours.mode(), reference.mode())
    assert not ours.distribution.probs[~masks].gt(1e-30).any(), "a masked action kept probability"
