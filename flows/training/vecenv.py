"""Stable-Baselines3's ``VecEnv`` API over :class:`ceenv.vector.BatchedCloudEdgeEnv` (many envs, one numpy batch).

The batched env steps all copies together, so a rollout pays the per-step Python overhead once per
batch instead of once per env (the ``batched`` choice of ``TrainConfig.vec_env``). This adapter adds
what the trainer's other vec envs get from SB3's ``DummyVecEnv`` and the wrappers of
:mod:`flows.training.envs`: seeding per copy (``seed + i``), ``TimeLimit.truncated`` and
``terminal_observation`` in the infos, the ``Monitor`` episode record (return in ms, length,
time), the ``start_latency`` reward scale, and the masks that sb3-contrib's ``MaskablePPO`` asks
for (``get_action_masks`` calls ``env_method("action_masks")`` on a vec env, one mask per copy).
Used by :func:`flows.training.envs.make_vec_env` and ``benchmarks/bench_training.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvStepReturn

from ceenv.vector import BatchedCloudEdgeEnv

MASK_METHOD = "action_masks"


class BatchedVecEnv(VecEnv):
    """An SB3 ``VecEnv`` whose copies are the rows of one :class:`BatchedCloudEdgeEnv`."""

    def __init__(self, batched: BatchedCloudEdgeEnv, relative_reward: bool = False) -> None:
        self.batched = batched
        self.relative_reward = relative_reward
        self._actions = np.zeros(batched.num_envs, dtype=np.int64)
        self._returns = np.zeros(batched.num_envs)
        self._lengths = np.zeros(batched.num_envs, dtype=np.int64)
        self._started = time.time()
        super().__init__(batched.num_envs, batched.observation_space, batched.action_space)

    def reset(self) -> np.ndarray:
        obs = self.batched.reset(seed=list(self._seeds))
        self._returns[:] = 0.0
        self._lengths[:] = 0
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards_ms, terminated, truncated, infos = self.batched.step(self._actions)
        self._returns += rewards_ms
        self._lengths += 1
        dones = terminated | truncated
        for info, cut in zip(infos, truncated & ~terminated, strict=True):
            info["TimeLimit.truncated"] = bool(cut)
        for i in np.flatnonzero(dones):
            infos[i]["episode"] = {
                "r": round(float(self._returns[i]), 6),
                "l": int(self._lengths[i]),
                "t": round(time.time() - self._started, 6),
            }
            self._returns[i] = 0.0
            self._lengths[i] = 0
        rewards = rewards_ms
        if self.relative_reward:  # infos hold the finished episode's start latency, taken before the reset
            start = np.array([info["start_latency_ms"] for info in infos])
            rewards = rewards_ms / np.maximum(start, 1e-9)
        return obs, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        """Nothing to release: the copies are arrays in this process."""

    def _indices(self, indices: VecEnvIndices) -> list[int]:
        return list(self._get_indices(indices))

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        if attr_name == "render_mode":
            return [None for _ in self._indices(indices)]
        value = getattr(self.batched, attr_name)  # AttributeError tells SB3 the attribute is missing
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise AttributeError(f"the batched env's copies share their attributes; cannot set {attr_name!r} per copy")

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        if method_name != MASK_METHOD:
            raise AttributeError(f"the batched env supports env_method({MASK_METHOD!r}) only, not {method_name!r}")
        masks = self.batched.action_masks()
        return [masks[i] for i in self._indices(indices)]

    def action_masks(self) -> np.ndarray:
        """``(B, A)`` masks of every copy in one array (what ``env_method`` returns, stacked)."""
        return self.batched.action_masks()

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._indices(indices)]

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        if seed is None:
            seed = int(np.random.randint(0, np.iinfo(np.uint32).max, dtype=np.uint32))
        self._seeds = [seed + i for i in range(self.num_envs)]
        return self._seeds

    def _get_indices(self, indices: VecEnvIndices) -> Iterable[int]:
        if indices is None:
            return range(self.num_envs)
        if isinstance(indices, int):
            return [indices]
        return indices
