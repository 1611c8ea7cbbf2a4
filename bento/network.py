"""The policy network for observation version 3: a masked actor-critic whose move logits start from the model's look-ahead.

Observation version 3 (:mod:`ceenv.observation`) ends with one entry per move action: the latency the
move would save under the nominal network, as a fraction of the current latency. :class:`GainBiasedPolicy`
adds ``gain_scale * gain`` to each move's logit and a learned ``stop_logit`` to STOP, on top of the
usual MLP logits. With the MLP's output layer initialised near zero (SB3's 0.01 gain), a fresh
policy already behaves like a soft greedy search that stops when no move saves more than about
``stop_logit / gain_scale`` of the latency; PPO then learns where to depart from it (moves that
pay off only later, the conditions the nominal network does not show). Both scalars are trained.

Used by :mod:`flows.training.trainer` (``policy_class``) and unpickled by ``MaskablePPO.load`` when
an artefact is served, which is why it lives in the ``bento`` package that every bento carries.
"""

from __future__ import annotations

import math
from typing import Any

import torch as th
from sb3_contrib.common.maskable.distributions import MaskableDistribution
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from torch import nn

# A move saving 1 % of the latency starts 0.5 logits above a neutral one, and STOP is preferred
# once no move saves more than about 0.5 % (the order of the 1.25 ms step cost on ~250 ms).
INITIAL_GAIN_SCALE = 50.0
INITIAL_STOP_LOGIT = 0.25


class GainBiasedPolicy(MaskableActorCriticPolicy):
    """MaskablePPO's MLP actor-critic with move logits biased by the observation's move gains."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.log_gain_scale = nn.Parameter(th.tensor(math.log(INITIAL_GAIN_SCALE)))
        self.stop_logit = nn.Parameter(th.tensor(INITIAL_STOP_LOGIT))
        self._moves = int(self.action_space.n) - 1  # type: ignore[attr-defined]
        # The new parameters must be in the optimiser built by the parent class.
        self.optimizer = self.optimizer_class(self.parameters(), lr=self._initial_lr, **self.optimizer_kwargs)  # type: ignore[call-arg]
        self._observation: th.Tensor | None = None

    def _build(self, lr_schedule: Any) -> None:
        self._initial_lr = lr_schedule(1)
        super()._build(lr_schedule)

    def _get_action_dist_from_latent(self, latent_pi: th.Tensor) -> MaskableDistribution:
        logits = self.action_net(latent_pi)
        if self._observation is None:
            raise RuntimeError(
                "GainBiasedPolicy needs the observation: call forward, evaluate_actions or get_distribution"
            )
        gains = self._observation[..., -self._moves :].float()
        bias = th.cat([gains * self.log_gain_scale.exp(), self.stop_logit.expand(*gains.shape[:-1], 1)], dim=-1)
        return self.action_dist.proba_distribution(action_logits=logits + bias)

    # The parent methods compute the latent from the observation and then call
    # _get_action_dist_from_latent(latent) without it; keep it at hand for that call.
    def forward(self, obs: th.Tensor, deterministic: bool = False, action_masks: Any = None) -> Any:
        self._observation = obs
        return super().forward(obs, deterministic, action_masks)

    def evaluate_actions(self, obs: th.Tensor, actions: th.Tensor, action_masks: Any = None) -> Any:
        self._observation = obs
        return super().evaluate_actions(obs, actions, action_masks)

    def get_distribution(self, obs: Any, action_masks: Any = None) -> MaskableDistribution:
        self._observation = obs
        return super().get_distribution(obs, action_masks)
