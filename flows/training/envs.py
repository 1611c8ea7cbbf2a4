"""The training environments: CloudEdgeEnv instances, reward scaling and the vectorised env.

:class:`RelativeReward` divides the env's reward (ms) by the episode's start latency, so every
episode's return is its fractional latency reduction whatever the drawn delays; the env's own
reward is untouched (REACH's), and ``Monitor`` sits inside the wrapper so TensorBoard's
``rollout/ep_rew_mean`` stays in ms. :func:`make_vec_env` builds ``n_envs`` of them in this process
(``DummyVecEnv``), one process each (``SubprocVecEnv``), or as one numpy batch
(``batched``: :class:`flows.training.vecenv.BatchedVecEnv`, the fastest). We do not use SB3's ``make_vec_env`` helper because it passes
``render_mode="rgb_array"``, which the env rejects. Used by :mod:`flows.training.trainer`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym

from ceenv.env import CloudEdgeEnv
from ceenv.scenario import Scenario
from ceenv.workload import Workload
from flows.training.config import TrainConfig


class RelativeReward(gym.Wrapper[Any, Any, Any, Any]):
    """Reward / episode start latency (ms / ms): the return is the fractional latency reduction."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        self._start_latency_ms = 1.0

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        self._start_latency_ms = max(float(info["start_latency_ms"]), 1e-9)
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, float(reward) / self._start_latency_ms, terminated, truncated, info

    def action_masks(self) -> Any:
        return self.env.get_wrapper_attr("action_masks")()


def make_env(scenario: Scenario | str | Path, workload: Workload | str | Path, config: TrainConfig) -> CloudEdgeEnv:
    """One env as the config trains it: dynamic start states, its step cost, truncation and observation."""
    return CloudEdgeEnv(
        scenario,
        workload,
        dynamic=True,
        step_cost_ms=config.step_cost_ms,
        max_steps=config.max_steps,
        observation_version=config.observation_version,
        max_nodes=config.max_nodes,
        max_slots=config.max_slots,
        measured_conditions=config.measured_conditions,
        measurement_noise=config.measurement_noise,
    )


def env_factory(
    scenario_dir: Scenario | str | Path, workload_file: Workload | str | Path, config: TrainConfig
) -> Callable[[], gym.Env[Any, Any]]:
    """A picklable-by-closure factory of one training env (SubprocVecEnv needs a callable)."""

    def make() -> gym.Env[Any, Any]:
        from stable_baselines3.common.monitor import Monitor

        env: gym.Env[Any, Any] = Monitor(make_env(scenario_dir, workload_file, config))
        return RelativeReward(env) if config.reward_scale == "start_latency" else env

    return make


Cluster = tuple[Scenario | str | Path, Workload | str | Path]  # (scenario or its directory, workload or its file)


def check_cluster_count(n_envs: int, cluster_count: int, fix: str = "train on fewer clusters") -> None:
    """Refuse more training clusters than envs: env *i* runs cluster *i* mod K, so the rest would never be trained
    on (yet be recorded as trained). ``fix`` names the caller's way to pass fewer clusters."""
    if cluster_count > n_envs:
        raise ValueError(
            f"{cluster_count} training clusters but n_envs {n_envs}: each env runs one cluster, so "
            f"{cluster_count - n_envs} of them would never be trained on; raise n_envs in the config to at least "
            f"{cluster_count} or {fix}"
        )


def make_vec_env(
    scenario_dir: str | Path, workload_file: str | Path, config: TrainConfig, clusters: list[Cluster] | None = None
) -> Any:
    """``config.n_envs`` training envs, seeded ``config.seed + i``.

    With ``clusters`` (observation version 4: one padded space for all), env *i* runs cluster
    ``i mod len(clusters)``, so one rollout mixes every cluster and workload; more clusters than
    envs are refused (:func:`check_cluster_count`).
    """
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

    check_cluster_count(config.n_envs, len(clusters or ()))
    venv: VecEnv
    if config.vec_env == "batched":
        from ceenv.vector import BatchedCloudEdgeEnv
        from flows.training.vecenv import BatchedVecEnv

        pairs = clusters or [(scenario_dir, workload_file)]  # as below: copy i runs i mod K
        parts = [
            BatchedCloudEdgeEnv(
                len(range(k, config.n_envs, len(pairs))),
                scenario,
                workload,
                dynamic=True,
                step_cost_ms=config.step_cost_ms,
                max_steps=config.max_steps,
                observation_version=config.observation_version,
                measured_conditions=config.measured_conditions,
                measurement_noise=config.measurement_noise,
                max_nodes=config.max_nodes,
                max_slots=config.max_slots,
            )
            for k, (scenario, workload) in enumerate(pairs)
        ]
        venv = BatchedVecEnv(parts, relative_reward=config.reward_scale == "start_latency")
    else:
        pairs = clusters or [(scenario_dir, workload_file)]
        factories = [env_factory(*pairs[i % len(pairs)], config) for i in range(config.n_envs)]
        venv = DummyVecEnv(factories) if config.vec_env == "dummy" else SubprocVecEnv(factories, start_method="spawn")
    venv.seed(config.seed)
    if config.reward_scale == "running_std":
        from stable_baselines3.common.vec_env import VecNormalize

        return VecNormalize(venv, norm_obs=False, norm_reward=True, gamma=config.gamma)
    return venv
