"""The size-agnostic policy for observation version 4: one shared scorer for every (pod, node) move.

:class:`PodNodePolicy` is a MaskablePPO actor-critic whose parameters do not depend on the number
of nodes or pods. It reads the three padded blocks of observation version 4
(:func:`ceenv.observation_v4.observe_v4`): node rows and slot rows go through small shared MLPs into
embeddings; a DeepSets context (masked mean and max over the present nodes and pods) summarises
the cluster; every (node, slot) pair is scored by one shared MLP on
``[node embedding, pod embedding, pair features, context]`` (the first layer is split per input,
so a pair's hidden row is a sum of rows of per-node, per-pod and per-pair projections). Only the
pairs that are moves (pair feature 1, the env's move mask) are scored, packed into one row each;
the other pairs' logits are :data:`MASKED_LOGIT`. As in :mod:`bento.network`, each move's logit
starts from ``gain_scale * gain`` (the pair's latency gain under the known costs) and STOP's from a
learned threshold (``stop_logit`` against a learned ``move_bias``), with the learned parts
initialised near zero: the untrained policy is a soft greedy that stops when no move saves more
than about ``(stop_logit - move_bias) / gain_scale`` of the latency (0.5 %).
The value head reads the context and a masked max/mean pooling of the pair hiddens. Permuting pod
rows (or node rows) permutes the move logits alike, so a decision depends on the placement, not on
the order in which a request lists its pods.

Used by :mod:`flows.training.trainer` (``policy: pod_node``) and unpickled by ``MaskablePPO.load``
wherever a policy is served, which is why it lives in the ``bento`` package that every bento carries.
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch as th
from sb3_contrib.common.maskable.distributions import (
    MaskableCategorical,
    MaskableCategoricalDistribution,
    MaskableDistribution,
)
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from torch import nn
from torch.distributions import Distribution

from ceenv.layout import NODE_FEATURES, PAIR_FEATURES, SLOT_FEATURES

# A move's logit starts at gain_scale * (gain - 0.25 %) - 5 and STOP's at 5: STOP wins once no move
# saves more than 0.5 % of the latency (the order of the 1.25 ms step cost), and the sampled policy
# stays close to that look-ahead (hundreds of near-zero moves together weigh less than STOP), so
# PPO explores around the prior instead of random-walking the cluster.
INITIAL_GAIN_SCALE = 2000.0
INITIAL_MOVE_BIAS = -5.0
INITIAL_STOP_LOGIT = 5.0
DEFAULT_HIDDEN = 32
# The logit of a pair that is not a move (the observation's "fits" flag is 0): never sampled, even
# unmasked. MaskableCategorical gives masked actions the same value.
MASKED_LOGIT = -1e8


def _mlp(inputs: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())


def _pool(rows: th.Tensor, present: th.Tensor) -> th.Tensor:
    """Masked mean and max over the row axis (-2): ``(..., R, H)`` → ``(..., 2H)``; -1 for the max of no row.

    ``rows`` are ReLU outputs (never negative) and ``present`` is 0 or 1, so the max over the
    present rows is the max of ``rows * present``: one masked tensor serves both poolings.
    """
    weight = present.unsqueeze(-1)
    masked = rows * weight
    count = weight.sum(-2)
    mean = masked.sum(-2) / count.clamp(min=1.0)
    # max() backpropagates to one row per column (a scatter); amax() spreads over ties through a
    # full-size mask and copy. Tied rows are equal pods on one node: the parameters' gradient is the same.
    top = th.where(count > 0, masked.max(-2).values, -1.0)
    return th.cat([mean, top], dim=-1)


def _pool_pairs(hidden: th.Tensor, sample: th.Tensor, batch: int) -> th.Tensor:
    """Mean and max of the packed pair rows ``(K, H)`` per observation (``sample``: each row's) → ``(batch, 2H)``.

    The pair rows are ReLU outputs (never negative), so a max that starts from 0 is the max over
    the observation's rows; an observation with no row gets -1, as :func:`_pool` gives.
    """
    count = th.bincount(sample, minlength=batch).unsqueeze(-1).to(hidden.dtype)
    mean = hidden.new_zeros(batch, hidden.shape[1]).index_add(0, sample, hidden) / count.clamp(min=1.0)
    top = hidden.new_zeros(batch, hidden.shape[1]).scatter_reduce(
        0, sample.unsqueeze(-1).expand_as(hidden), hidden, "amax", include_self=True
    )
    return th.cat([mean, th.where(count > 0, top, -1.0)], dim=-1)


def _used(present: th.Tensor) -> int:
    """1 + the last row index present in any observation of the batch ``(B, R)`` (at least 1)."""
    rows = present.amax(0).nonzero()
    return int(rows.max().item()) + 1 if rows.numel() else 1


class PodNodeNet(nn.Module):
    """The shared-weight scorer: padded observation → (move logits + STOP logit, value)."""

    def __init__(
        self, max_nodes: int, max_slots: int, hidden: int = DEFAULT_HIDDEN, gain_scale: float = INITIAL_GAIN_SCALE
    ) -> None:
        super().__init__()
        self.max_nodes, self.max_slots = max_nodes, max_slots
        self.node_net = _mlp(NODE_FEATURES, hidden)
        self.pod_net = _mlp(SLOT_FEATURES, hidden)
        context = 4 * hidden
        self.pair_node = nn.Linear(hidden, hidden)
        self.pair_pod = nn.Linear(hidden, hidden, bias=False)
        self.pair_feat = nn.Linear(PAIR_FEATURES, hidden, bias=False)
        self.pair_context = nn.Linear(context, hidden, bias=False)
        self.pair_out = nn.Linear(hidden, 1)
        self.stop_net = nn.Linear(context + 2 * hidden, 1)
        self.value_net = nn.Sequential(nn.Linear(context + 2 * hidden, 64), nn.ReLU(), nn.Linear(64, 1))
        self.log_gain_scale = nn.Parameter(th.tensor(math.log(gain_scale)))
        self.stop_logit = nn.Parameter(th.tensor(INITIAL_STOP_LOGIT))
        self.move_bias = nn.Parameter(th.tensor(INITIAL_MOVE_BIAS))
        # The learned corrections start near zero, so the untrained policy follows the gain prior.
        for head in (self.pair_out, self.stop_net):
            nn.init.orthogonal_(head.weight, gain=0.01)
            nn.init.zeros_(head.bias)

    def split(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """The node ``(B, N, F)``, slot ``(B, P, F)`` and pair ``(B, N, P, F)`` blocks of a batch."""
        n, p = self.max_nodes, self.max_slots
        node_end = n * NODE_FEATURES
        slot_end = node_end + p * SLOT_FEATURES
        batch = obs.shape[0]
        return (
            obs[:, :node_end].reshape(batch, n, NODE_FEATURES),
            obs[:, node_end:slot_end].reshape(batch, p, SLOT_FEATURES),
            obs[:, slot_end:].reshape(batch, n, p, PAIR_FEATURES),
        )

    def forward(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        nodes, slots, pairs = self.split(obs.float())
        batch = nodes.shape[0]
        # Only the pairs that are moves (pair feature 1, "it fits": the env's move mask) are scored:
        # they are packed into K rows (a 13-29 state has about 100 moves among 13 x 29 pairs, and a
        # batch padded to its largest cluster several times more), the logits of the other pairs are
        # MASKED_LOGIT (masked anyway), and the value pools over the moves alone, as before. Node
        # and slot rows past the last one some observation of the batch uses are left out.
        used_nodes, used_slots = _used(nodes[..., 0]), _used(slots[..., 0])
        nodes, slots = nodes[:, :used_nodes], slots[:, :used_slots]
        pairs = pairs[:, :used_nodes, :used_slots]
        sample, node, slot = (pairs[..., 1] > 0).nonzero(as_tuple=True)
        features = pairs[sample, node, slot]  # (K, PAIR_FEATURES)
        node_emb, pod_emb = self.node_net(nodes), self.pod_net(slots)
        context = th.cat([_pool(node_emb, nodes[..., 0]), _pool(pod_emb, slots[..., 0])], dim=-1)  # (B, 4H)
        # The context enters through the node term (B, N, H) before the pairs pick their rows.
        node_term = (self.pair_node(node_emb) + self.pair_context(context).unsqueeze(1)).flatten(0, 1)
        pod_term = self.pair_pod(pod_emb).flatten(0, 1)
        hidden = self.pair_feat(features)  # summed in place into the one (K, H) tensor
        hidden += node_term.index_select(0, sample * used_nodes + node)
        hidden += pod_term.index_select(0, sample * used_slots + slot)
        hidden = hidden.relu_()
        summary = th.cat([context, _pool_pairs(hidden, sample, batch)], dim=-1)
        moves = self.pair_out(hidden).squeeze(-1) + self.log_gain_scale.exp() * features[:, 0] + self.move_bias
        logits = moves.new_full((batch, self.max_nodes * self.max_slots), MASKED_LOGIT)
        logits = logits.index_put((sample, node * self.max_slots + slot), moves)
        stop = self.stop_logit + self.stop_net(summary)
        return th.cat([logits, stop], dim=-1), self.value_net(summary)


class MovesCategorical(MaskableCategorical):
    """``MaskableCategorical(logits=logits, masks=masks)`` computed without exponentiating a masked logit.

    The same normalised logits on the allowed actions (masked ones: -1e8), the same probabilities
    (masked ones: exactly 0), log-probs, entropy and gradients. MaskableCategorical normalises the
    logits twice and computes the probabilities, each time taking ``exp`` of every entry, and
    ``exp`` of a value under about -88 (a masked logit, whose result underflows) takes 10 to 15
    times as long on this machine's CPU as of an ordinary one; most of a padded pod×node action
    range is masked. Here the masked entries are exponentiated as 0 and then dropped.
    """

    def __init__(self, logits: th.Tensor, masks: Any) -> None:
        # Categorical's own __init__ would normalise every entry; the attributes it sets are set here.
        masks = th.as_tensor(masks, dtype=th.bool, device=logits.device).reshape(logits.shape)
        if not bool(masks.any(-1).all()):
            raise ValueError("an action mask allows no action (STOP is always allowed): check the env's action_masks")
        top = th.where(masks, logits, -th.inf).amax(-1, keepdim=True).detach()
        shifted = th.where(masks, logits - top, 0.0)
        weights = th.where(masks, shifted.exp(), 0.0)
        total = weights.sum(-1, keepdim=True)
        normalised = th.where(masks, shifted - total.log(), MASKED_LOGIT)
        self.masks = masks
        self._original_logits = logits
        self.logits = normalised
        self.probs = weights / total
        self._param = normalised
        self._num_events = normalised.shape[-1]
        Distribution.__init__(self, normalised.shape[:-1], validate_args=False)


class PodNodePolicy(MaskableActorCriticPolicy):
    """MaskablePPO policy whose logits and value come from :class:`PodNodeNet` (no flat MLP)."""

    def __init__(
        self,
        *args: Any,
        max_nodes: int = 0,
        max_slots: int = 0,
        hidden: int = DEFAULT_HIDDEN,
        gain_scale: float = INITIAL_GAIN_SCALE,
        **kwargs: Any,
    ) -> None:
        if max_nodes < 1 or max_slots < 1:
            raise ValueError("PodNodePolicy needs the observation's limits: policy_kwargs max_nodes and max_slots")
        self._limits = (max_nodes, max_slots, hidden)
        self._gain_scale = gain_scale
        kwargs["net_arch"] = []
        super().__init__(*args, **kwargs)

    def _build(self, lr_schedule: Any) -> None:
        max_nodes, max_slots, hidden = self._limits
        expected = max_nodes * max_slots + 1
        if int(self.action_space.n) != expected:  # type: ignore[attr-defined]
            raise ValueError(
                f"action space {self.action_space} does not match the limits {max_nodes} x {max_slots} "
                f"(expected Discrete({expected})); train with observation version 4 and the same limits"
            )
        self.net = PodNodeNet(max_nodes, max_slots, hidden, self._gain_scale)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        max_nodes, max_slots, hidden = self._limits
        data.update(max_nodes=max_nodes, max_slots=max_slots, hidden=hidden, gain_scale=self._gain_scale)
        data.pop("net_arch", None)
        return data

    def _distribution(self, logits: th.Tensor, action_masks: Any) -> MaskableDistribution:
        # One masked Categorical built directly: proba_distribution() then apply_masking() normalise the
        # 3,201 logits three times and validate them each time (14 % of a training run's time).
        distribution = cast(MaskableCategoricalDistribution, self.action_dist)
        if action_masks is None:
            distribution.distribution = MaskableCategorical(logits=logits, validate_args=False)
        else:
            distribution.distribution = MovesCategorical(logits, action_masks)
        return distribution

    def _cropped(self, logits: th.Tensor, action_masks: Any) -> tuple[MaskableDistribution, int]:
        """The masked distribution over the moves up to the batch's last valid one, plus STOP; and that width.

        Moves are node-major, so on a 13-node cluster every valid move lies in the first 13 x P of the
        40 x P padded moves. Leaving the masked tail out gives the same probabilities, log-probs and
        entropy, at half the cost or less; in the cropped index space STOP is ``width`` (no masks:
        every action counts, nothing is cropped and ``width`` is STOP's own index).
        """
        stop = logits.shape[1] - 1
        if action_masks is None:
            return self._distribution(logits, None), stop
        masks = th.as_tensor(action_masks, dtype=th.bool, device=logits.device).reshape(logits.shape)
        valid = masks[:, :stop].any(0).nonzero()
        width = int(valid.max().item()) + 1 if valid.numel() else 0
        keep = th.cat([logits[:, :width], logits[:, stop:]], dim=1), th.cat([masks[:, :width], masks[:, stop:]], dim=1)
        return self._distribution(*keep), width

    def forward(self, obs: th.Tensor, deterministic: bool = False, action_masks: Any = None) -> Any:
        logits, values = self.net(obs)
        distribution, width = self._cropped(logits, action_masks)
        cropped = distribution.get_actions(deterministic=deterministic)
        actions = th.where(cropped == width, logits.shape[1] - 1, cropped)
        return actions, values, distribution.log_prob(cropped)

    def evaluate_actions(self, obs: th.Tensor, actions: th.Tensor, action_masks: Any = None) -> Any:
        logits, values = self.net(obs)
        distribution, width = self._cropped(logits, action_masks)
        cropped = th.where(actions == logits.shape[1] - 1, width, actions)
        return values, distribution.log_prob(cropped), distribution.entropy()

    def get_distribution(self, obs: Any, action_masks: Any = None) -> MaskableDistribution:
        logits, _ = self.net(obs)
        return self._distribution(logits, action_masks)

    def predict_values(self, obs: Any) -> th.Tensor:
        _, values = self.net(obs)
        return values  # type: ignore[no-any-return]
