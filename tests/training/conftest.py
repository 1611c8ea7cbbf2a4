"""A tiny policy trained once per session on 7-21 (a few seconds), shared by the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.training import TrainConfig, TrainResult, train
from tests.conftest import scenario_dir, workload_file

TINY = TrainConfig(
    total_timesteps=12_288,
    n_envs=4,
    n_steps=256,
    batch_size=256,
    n_epochs=5,
    learning_rate=1e-3,
    net_arch=[64, 64],
    reward_scale="start_latency",
    eval_freq_steps=4096,
    eval_episodes=8,
    seed=0,
)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    out: Path = tmp_path_factory.mktemp("tiny-run")
    return train(
        TINY, scenario_dir("7-21"), workload_file("aggregator_sequential"), out, progress=False, tensorboard=True
    )
