"""The batched SB3 vec env matches DummyVecEnv over Monitor-wrapped single envs, and MaskablePPO trains on it."""

from __future__ import annotations

import numpy as np
import pytest

from flows.training import TrainConfig
from flows.training.envs import make_vec_env
from tests.conftest import scenario_dir, workload_file


@pytest.mark.parametrize("reward_scale", ["none", "start_latency"])
def test_batched_vec_env_steps_like_dummy_vec_env(reward_scale: str) -> None:
    common = {"n_envs": 4, "seed": 5, "max_steps": 12, "reward_scale": reward_scale, "n_steps": 16, "batch_size": 16}
    _lockstep_with_dummy(common, None)


def test_batched_vec_env_across_clusters_steps_like_dummy_vec_env_with_the_general_config() -> None:
    """Observation version 4, measured conditions, three clusters interleaved over seven copies."""
    clusters = [
        (scenario_dir("7-21"), workload_file("aggregator_sequential")),
        (scenario_dir("13-29"), workload_file("aggregator_parallel")),
        (scenario_dir("19-37"), workload_file("chain")),
    ]
    common = {
        "n_envs": 7,
        "seed": 3,
        "max_steps": 12,
        "reward_scale": "start_latency",
        "n_steps": 16,
        "batch_size": 16,
        "policy": "pod_node",
        "observation_version": 4,
        "measured_conditions": True,
    }
    _lockstep_with_dummy(common, clusters)


def _lockstep_with_dummy(common: dict[str, object], clusters: list[tuple[object, object]] | None) -> None:
    from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported

    scenario, workload = scenario_dir("7-21"), workload_file("aggregator_sequential")
    dummy = make_vec_env(scenario, workload, TrainConfig(vec_env="dummy", **common), clusters)  # type: ignore[arg-type]
    batched = make_vec_env(scenario, workload, TrainConfig(vec_env="batched", **common), clusters)  # type: ignore[arg-type]
    assert is_masking_supported(batched)
    obs_d, obs_b = dummy.reset(), batched.reset()
    assert np.array_equal(obs_d, obs_b)
    rng = np.random.default_rng(0)
    episodes = 0
    for _ in range(60):
        masks = get_action_masks(batched)
        assert np.array_equal(masks, get_action_masks(dummy))
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
        obs_d, rew_d, done_d, info_d = dummy.step(actions)
        obs_b, rew_b, done_b, info_b = batched.step(actions)
        assert np.array_equal(done_d, done_b)
        assert np.allclose(rew_d, rew_b, atol=1e-6)
        assert np.abs(obs_d - obs_b).max() < 1e-6
        for d, b in zip(info_d, info_b, strict=True):
            assert d.get("TimeLimit.truncated") == b.get("TimeLimit.truncated")
            if "episode" in d:
                episodes += 1
                assert d["episode"]["l"] == b["episode"]["l"]
                assert abs(d["episode"]["r"] - b["episode"]["r"]) < 1e-5
                assert np.abs(d["terminal_observation"] - b["terminal_observation"]).max() < 1e-6
    assert episodes > 0


def test_maskable_ppo_learns_on_the_batched_vec_env() -> None:
    from flows.training.trainer import build_model

    config = TrainConfig(vec_env="batched", n_envs=8, n_steps=32, batch_size=64, n_epochs=1, seed=1)
    venv = make_vec_env(scenario_dir("7-21"), workload_file("aggregator_sequential"), config)
    model = build_model(config, venv, None)
    model.learn(512)
    assert model.num_timesteps >= 512
    assert len(model.ep_info_buffer) > 0  # Monitor-style episode records reach SB3's logger
    with pytest.raises(AttributeError, match="action_masks"):
        venv.env_method("render")
