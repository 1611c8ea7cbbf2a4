"""GainBiasedPolicy: a fresh one follows the move gains and stops; it trains, saves and loads as a MaskablePPO."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch as th
from sb3_contrib import MaskablePPO

from bento.network import GainBiasedPolicy
from ceenv.baselines import run_random
from ceenv.env import CloudEdgeEnv
from tests.conftest import scenario_dir, workload_file


def _env(version: int = 3) -> CloudEdgeEnv:
    return CloudEdgeEnv(scenario_dir("7-21"), workload_file("aggregator_sequential"), observation_version=version)


def _play(model: MaskablePPO, env: CloudEdgeEnv, seed: int) -> tuple[float, float, int]:
    obs, info = env.reset(seed=seed)
    start, done = info["start_latency_ms"], False
    while not done:
        action, _ = model.predict(obs, action_masks=env.action_masks(), deterministic=True)
        obs, _, terminated, truncated, info = env.step(int(action))
        done = terminated or truncated
    return start, info["latency_ms"], info["moves"]


def test_an_untrained_gain_biased_policy_cuts_latency_more_than_random_and_stops_by_itself() -> None:
    env = _env()
    model = MaskablePPO(GainBiasedPolicy, env, n_steps=64, batch_size=64, seed=0, device="cpu")
    policy_total = random_total = 0.0
    for seed in range(5):
        env.reset(seed=seed)
        random = run_random(env.simulator.copy(), np.random.default_rng(seed))  # from the same start state
        start, end, moves = _play(model, env, seed)
        assert start == pytest.approx(random.start_latency_ms)
        assert end < start, f"seed {seed}: no latency cut"
        assert moves < env.max_steps, f"seed {seed}: never chose STOP"
        policy_total += end
        random_total += random.end_latency_ms
    assert policy_total < random_total


def test_the_move_logits_are_biased_by_exactly_the_gain_entries_of_the_observation() -> None:
    env = _env()
    model = MaskablePPO(GainBiasedPolicy, env, n_steps=64, batch_size=64, seed=0, device="cpu")
    policy = model.policy
    obs, _ = env.reset(seed=3)
    with th.no_grad():
        tensor = th.as_tensor(obs)[None]
        biased = policy.get_distribution(tensor).distribution.logits
        moves = env.layout.node_count * env.layout.slot_count
        zeroed = tensor.clone()
        zeroed[..., -moves:] = 0.0
        plain = policy.get_distribution(zeroed).distribution.logits
    # Same MLP input apart from the gains, so the logit difference is the gain bias (up to the MLP's own change).
    gains = th.as_tensor(obs[-moves:])
    assert th.corrcoef(th.stack([(biased - plain)[0, :moves], gains]))[0, 1] > 0.99


def test_it_trains_saves_and_loads_with_its_learned_scales(tmp_path: Path) -> None:
    env = _env()
    model = MaskablePPO(GainBiasedPolicy, env, n_steps=128, batch_size=64, n_epochs=2, seed=0, device="cpu")
    before = float(model.policy.log_gain_scale.detach())
    model.learn(256)
    after = float(model.policy.log_gain_scale.detach())
    assert after != pytest.approx(before, abs=1e-9), "the gain scale is not trained"
    model.save(tmp_path / "m.zip")
    loaded = MaskablePPO.load(tmp_path / "m.zip", device="cpu")
    assert isinstance(loaded.policy, GainBiasedPolicy)
    assert float(loaded.policy.log_gain_scale.detach()) == pytest.approx(after)
    assert _play(loaded, env, 0) == _play(model, env, 0)


def test_it_refuses_an_observation_without_move_gains() -> None:
    with pytest.raises(ValueError, match="observation_version 3"):
        from flows.training.config import TrainConfig

        TrainConfig(policy="gain_biased", observation_version=2)
