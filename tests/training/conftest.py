"""The tiny training config of the training tests; the policy trained with it once per session is the
``tiny_run`` fixture of tests/conftest.py (shared with the CLI tests)."""

from __future__ import annotations

from flows.training import TrainConfig

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
