"""The size-agnostic policy for observation version 4: one shared scorer for every (pod, node) move.

:class:`PodNodePolicy` is a MaskablePPO actor-critic whose parameters do not depend on the number
of nodes or pods. It reads the three padded blocks of observation version 4
(:func:`ceenv.observation_v4.observe_v4`): node rows and slot rows go through small shared MLPs into
embeddings; a DeepSets context (masked mean and max over the present nodes and pods) summarises
the cluster; every (node, slot) pair is scored by one shared MLP on
``[node embedding, pod embedding, pair features, context]`` (the first layer is split per input,
so the N x P x H hidden tensor is one broadcast sum). As in :mod:`bento.network`, each move's logit
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

from ceenv.layout import NODE_FEATURES, PAIR_FEATURES, SLOT_FEATURES

# A move's logit starts at gain_scale * (gain - 0.25 %) - 5 and STOP's at 5: STOP wins once no move
# saves more than 0.5 % of the latency (the order of the 1.25 ms step cost), and the sampled policy
# stays close to that look-ahead (hundreds of near-zero moves together weigh less than STOP), so
# PPO explores around the prior instead of random-walking the cluster.
INITIAL_GAIN_SCALE = 2000.0
INITIAL_MOVE_BIAS = -5.0
INITIAL_STOP_LOGIT = 5.0
DEFAULT_HIDDEN = 32


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


def _used(present: th.Tensor) -> int:
    """1 + the last row index present in any observation of the batch ``(B, R)`` (at least 1)."""
    rows = present.amax(0).nonzero()
    return int(rows.max().item()) + 1 if rows.numel() else 1


def _present_first(present: th.Tensor) -> th.Tensor:
    """Row indices ``(B, W)`` that list each observation's present rows first, in order; W = the most present.

    An empty slot has no moves and is masked out of every pooling, so computing on the present
    slots alone gives the same logits on every valid move and the same value.
    """
    width = max(int((present > 0).sum(1).max().item()), 1) if present.numel() else 1
    return th.argsort((present > 0).to(th.uint8), dim=1, descending=True, stable=True)[:, :width]


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
        # Padding node rows come last: compute on the nodes some observation of the batch uses (a
        # 13-node cluster costs 13/40 of the node axis) and on the present slots only, gathered to
        # the front (a 19-37 state holds about 21 pods in 37 slots), then scatter and pad the
        # logits back (the rest is masked anyway).
        used_nodes, order = _used(nodes[..., 0]), _present_first(slots[..., 0])
        batch, width = order.shape
        nodes = nodes[:, :used_nodes]
        slots = slots.gather(1, order[..., None].expand(batch, width, slots.shape[-1]))
        pairs = pairs[:, :used_nodes].gather(
            2, order[:, None, :, None].expand(batch, used_nodes, width, pairs.shape[-1])
        )
        node_present, slot_present = nodes[..., 0], slots[..., 0]
        node_emb, pod_emb = self.node_net(nodes), self.pod_net(slots)
        context = th.cat([_pool(node_emb, node_present), _pool(pod_emb, slot_present)], dim=-1)  # (B, 4H)
        # The context enters through the node term (B, N, H) before it is broadcast to the pairs.
        node_term = self.pair_node(node_emb) + self.pair_context(context).unsqueeze(1)
        # Summed in place into the one (B, N, P, H) tensor the pair features' projection allocates.
        hidden = self.pair_feat(pairs)
        hidden += node_term.unsqueeze(2)
        hidden += self.pair_pod(pod_emb).unsqueeze(1)
        hidden = hidden.relu_()
        valid = pairs[..., 1].flatten(1)
        flat_hidden = hidden.flatten(1, 2)
        summary = th.cat([context, _pool(flat_hidden, valid)], dim=-1)
        used = self.pair_out(hidden).squeeze(-1) + self.log_gain_scale.exp() * pairs[..., 0] + self.move_bias
        logits = used.new_zeros(batch, used_nodes, self.max_slots).scatter(2, order[:, None].expand_as(used), used)
        move_logits = nn.functional.pad(logits, (0, 0, 0, self.max_nodes - used_nodes))
        stop = self.stop_logit + self.stop_net(summary)
        return th.cat([move_logits.flatten(1), stop], dim=-1), self.value_net(summary)


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
        distribution.distribution = MaskableCategorical(logits=logits, masks=action_masks, validate_args=False)
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
