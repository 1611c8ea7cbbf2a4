"""Stable-Baselines3's ``VecEnv`` API over :class:`ceenv.vector.BatchedCloudEdgeEnv` (many envs, one numpy batch).

The batched env steps all copies together, so a rollout pays the per-step Python overhead once per
batch instead of once per env (the ``batched`` choice of ``TrainConfig.vec_env``). This adapter adds
what the trainer's other vec envs get from SB3's ``DummyVecEnv`` and the wrappers of
:mod:`flows.training.envs`: seeding per copy (``seed + i``), ``TimeLimit.truncated`` and
``terminal_observation`` in the infos, the ``Monitor`` episode record (return in ms, length,
time), the ``start_latency`` reward scale, and the masks that sb3-contrib's ``MaskablePPO`` asks
for (``get_action_masks`` calls ``env_method("action_masks")`` on a vec env, one mask per copy).
Across clusters (observation version 4, one padded space), it holds one batched env per cluster
and interleaves their copies as :func:`flows.training.envs.make_vec_env` lays out its other vec
envs: copy ``i`` runs cluster ``i mod K`` (``K`` clusters) and is seeded ``seed + i``.
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
    """An SB3 ``VecEnv`` whose copies are the rows of one or more :class:`BatchedCloudEdgeEnv` (one per cluster)."""

    def __init__(
        self, batched: BatchedCloudEdgeEnv | Sequence[BatchedCloudEdgeEnv], relative_reward: bool = False
    ) -> None:
        self.parts = [batched] if isinstance(batched, BatchedCloudEdgeEnv) else list(batched)
        self.batched = self.parts[0]
        first = self.parts[0]
        if any(
            p.observation_space != first.observation_space or p.action_space != first.action_space for p in self.parts
        ):
            raise ValueError("the clusters of one batched vec env need one observation and action space (version 4)")
        count = sum(p.num_envs for p in self.parts)
        parts = len(self.parts)
        if [p.num_envs for p in self.parts] != [len(range(k, count, parts)) for k in range(parts)]:
            raise ValueError("cluster k of K must hold the copies k, k + K, ... (make_vec_env builds them so)")
        self.relative_reward = relative_reward
        self._actions = np.zeros(count, dtype=np.int64)
        self._returns = np.zeros(count)
        self._lengths = np.zeros(count, dtype=np.int64)
        self._started = time.time()
        super().__init__(count, self.batched.observation_space, self.batched.action_space)

    def _gather(self, rows: list[np.ndarray]) -> np.ndarray:
        """The parts' row blocks interleaved into copy order (copy ``i`` is row ``i // K`` of part ``i mod K``)."""
        if len(rows) == 1:
            return rows[0]
        result = np.empty((self.num_envs, *rows[0].shape[1:]), dtype=rows[0].dtype)
        for k, block in enumerate(rows):
            result[k :: len(rows)] = block
        return result

    def reset(self) -> np.ndarray:
        parts = len(self.parts)
        obs = self._gather([p.reset(seed=list(self._seeds[k::parts])) for k, p in enumerate(self.parts)])
        self._returns[:] = 0.0
        self._lengths[:] = 0
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        parts = len(self.parts)
        results = [p.step(self._actions[k::parts]) for k, p in enumerate(self.parts)]
        obs = self._gather([r[0] for r in results])
        rewards_ms = self._gather([r[1] for r in results])
        terminated = self._gather([r[2] for r in results])
        truncated = self._gather([r[3] for r in results])
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for k, result in enumerate(results):
            infos[k::parts] = result[4]
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
        masks = self.action_masks()
        return [masks[i] for i in self._indices(indices)]

    def action_masks(self) -> np.ndarray:
        """``(B, A)`` masks of every copy in one array (what ``env_method`` returns, stacked)."""
        return self._gather([p.action_masks() for p in self.parts])

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
