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


def _mixed_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Observations and masks of 7-21, 19-37 and 13-29 states, padded to the same limits, in one batch."""
    obs, masks = [], []
    for size, seed in (("7-21", 0), ("19-37", 1), ("13-29", 2), ("19-37", 3), ("7-21", 4)):
        env = CloudEdgeEnv(
            scenario_dir(size), workload_file("chain"), observation_version=4, max_nodes=40, max_slots=80
        )
        observation, _ = env.reset(seed=seed)
        obs.append(observation)
        masks.append(env.action_masks())
    return torch.tensor(np.array(obs)), torch.tensor(np.array(masks))


def test_an_observation_scores_the_same_alone_and_in_a_batch_of_other_cluster_sizes() -> None:
    """The network crops node rows and gathers present pods per batch; neither may change a state's scores."""
    from bento.pod_node import PodNodeNet

    obs, masks = _mixed_batch()
    torch.manual_seed(2)
    net = PodNodeNet(40, 80)
    for parameter in net.parameters():  # away from the near-zero initial corrections, so every input counts
        torch.nn.init.normal_(parameter, std=0.3)
    with torch.no_grad():
        logits, values = net(obs)
        for i in range(obs.shape[0]):
            alone, value = net(obs[i : i + 1])
            valid = masks[i]
            assert torch.allclose(logits[i][valid], alone[0][valid], atol=1e-4), i
            assert torch.allclose(values[i], value[0], atol=1e-5), i
    prior = PodNodeNet(40, 80)  # untrained: a valid move's logit is the gain prior, at the move's own index
    with torch.no_grad():
        logits, _ = prior(obs)
        gains = obs[:, -40 * 80 * 5 :].reshape(-1, 40 * 80, 5)[..., 0]
        expected = prior.log_gain_scale.exp() * gains + prior.move_bias
    moves = masks[:, :-1]
    assert moves.sum() > 100 and torch.allclose(logits[:, :-1][moves], expected[moves], atol=0.5)


def _reference_scores(net: torch.nn.Module, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The pod×node scores the plain way: every padded node and slot row, masked_fill/amax pooling."""

    def pool(rows: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        weight = present.unsqueeze(-1)
        mean = (rows * weight).sum(-2) / weight.sum(-2).clamp(min=1.0)
        return torch.cat([mean, rows.masked_fill(weight == 0, -1e4).amax(-2).clamp(min=-1.0)], dim=-1)

    nodes, slots, pairs = net.split(obs)
    node_emb, pod_emb = net.node_net(nodes), net.pod_net(slots)
    context = torch.cat([pool(node_emb, nodes[..., 0]), pool(pod_emb, slots[..., 0])], dim=-1)
    hidden = torch.relu(
        net.pair_node(node_emb).unsqueeze(2)
        + net.pair_pod(pod_emb).unsqueeze(1)
        + net.pair_feat(pairs)
        + net.pair_context(context)[:, None, None, :]
    )
    summary = torch.cat([context, pool(hidden.flatten(1, 2), pairs[..., 1].flatten(1))], dim=-1)
    moves = net.pair_out(hidden).squeeze(-1) + net.log_gain_scale.exp() * pairs[..., 0] + net.move_bias
    return torch.cat([moves.flatten(1), net.stop_logit + net.stop_net(summary)], dim=-1), net.value_net(summary)


def test_the_network_scores_and_learns_as_the_plain_computation_over_every_padded_row() -> None:
    """Cropping nodes, gathering pods, the fused poolings and the in-place sum change no score and no gradient."""
    from bento.pod_node import PodNodeNet

    obs, masks = _mixed_batch()
    stuck = obs[:1].clone()  # a state without a valid move: the pair pooling has no row
    stuck[0, -40 * 80 * 5 :].view(40 * 80, 5)[:, 1] = 0.0
    stuck_mask = torch.zeros_like(masks[:1])
    stuck_mask[0, -1] = True
    obs, masks = torch.cat([obs, stuck]), torch.cat([masks, stuck_mask])
    torch.manual_seed(3)
    net = PodNodeNet(40, 80)
    for parameter in net.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    weights = torch.randn(masks.shape) * masks  # a loss that reads every valid move's logit and STOP's
    gradients = []
    for score in (net, lambda o: _reference_scores(net, o)):
        net.zero_grad()
        logits, values = score(obs)
        ((logits * weights).sum() + values.sum()).backward()
        gradients.append({name: p.grad.clone() for name, p in net.named_parameters()})
        if score is net:
            fast = logits.detach()[masks], values.detach()
        else:
            assert torch.allclose(fast[0], logits.detach()[masks], rtol=1e-4, atol=1e-3)
            assert torch.allclose(fast[1], values.detach(), atol=1e-4)
    for name, grad in gradients[0].items():
        assert torch.allclose(grad, gradients[1][name], rtol=1e-3, atol=1e-3), name


def test_training_uses_the_same_distribution_over_a_cropped_action_range() -> None:
    """forward and evaluate_actions leave the masked tail of the padded moves out; log-probs and entropy stay."""
    from sb3_contrib.common.maskable.distributions import MaskableCategorical

    obs, masks = _mixed_batch()
    small = obs[[0, 4]], masks[[0, 4]]  # two 7-node states: the cropped range ends inside node row 7
    env = CloudEdgeEnv(scenario_dir("7-21"), workload_file("chain"), observation_version=4, max_nodes=40, max_slots=80)
    policy = _policy(env)
    stop_only = torch.zeros_like(masks[:2])
    stop_only[:, -1] = True  # no valid move: the cropped range is STOP alone
    for batch, mask in ((obs, masks), small, (obs[:2], stop_only)):
        with torch.no_grad():
            full = MaskableCategorical(logits=policy.net(batch)[0], masks=mask)
            torch.manual_seed(5)
            actions, _, log_prob = policy(batch, action_masks=mask.numpy())
            _, evaluated, entropy = policy.evaluate_actions(batch, actions, action_masks=mask)
            stop = torch.full_like(actions, mask.shape[1] - 1)
            _, stop_log_prob, _ = policy.evaluate_actions(batch, stop, action_masks=mask)
        assert mask[torch.arange(len(actions)), actions].all(), "a sampled action is a valid one, in the full index"
        assert torch.allclose(log_prob, full.log_prob(actions), atol=1e-5)
        assert torch.allclose(evaluated, full.log_prob(actions), atol=1e-5)
        assert torch.allclose(stop_log_prob, full.log_prob(stop), atol=1e-5)
        assert torch.allclose(entropy, full.entropy(), atol=1e-5)


def test_moves_categorical_is_maskable_categorical_without_exponentiating_masked_logits() -> None:
    """Same log-probs, entropy, probabilities (masked: exactly 0), modes and gradients as sb3-contrib's class."""
    from sb3_contrib.common.maskable.distributions import MaskableCategorical

    from bento.pod_node import MASKED_LOGIT, MovesCategorical

    generator = torch.Generator().manual_seed(7)
    raw = torch.randn(6, 300, generator=generator) * 4.0
    raw[:, ::3] = MASKED_LOGIT  # as the network fills pairs that are not moves
    masks = torch.rand(6, 300, generator=generator) < 0.3
    masks[:, -1] = True  # STOP
    masks[0] = False
    masks[0, -1] = True  # a state with STOP alone
    masks[1, ::3] = True  # a mask that allows some MASKED_LOGIT entries: they get (almost) no probability
    actions = torch.stack([torch.multinomial(m.float(), 1)[0] for m in masks])
    results = []
    for build in (lambda x: MaskableCategorical(logits=x, masks=masks), lambda x: MovesCategorical(x, masks)):
        logits = raw.clone().requires_grad_(True)
        distribution = build(logits)
        (distribution.log_prob(actions).sum() + distribution.entropy().sum()).backward()
        results.append((distribution, logits.grad))
    (reference, reference_grad), (fast, fast_grad) = results
    assert torch.allclose(fast.log_prob(actions), reference.log_prob(actions), atol=1e-5)
    assert torch.allclose(fast.entropy(), reference.entropy(), atol=1e-5)
    assert torch.allclose(fast.probs, reference.probs, atol=1e-6)
    assert (fast.probs[~masks] == 0).all() and torch.allclose(fast.probs.sum(-1), torch.ones(6))
    assert torch.equal(fast.probs.argmax(-1), reference.probs.argmax(-1))
    assert torch.allclose(fast_grad, reference_grad, atol=1e-5)
    assert fast.sample((200,)).shape == (200, 6) and masks[torch.arange(6), fast.sample()].all()
    nothing = masks.clone()
    nothing[2] = False  # sb3-contrib's class would make this row uniform over masked actions
    with pytest.raises(ValueError, match="allows no action"):
        MovesCategorical(raw, nothing)
