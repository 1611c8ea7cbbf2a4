"""``benchmarks/bench_training.py``'s greedy level, drawn on the learning curve and recorded in its summary.

It broke silently when the validator began keeping its states per env (a list of lists): the README's
training benchmark then died after its 10-minute run, before writing its table (found by a review in
session 15). The figure must be greedy's fraction by the curve's own formula.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ceenv.baselines import run_greedy
from ceenv.simulator import Simulator
from flows.evaluation.episodes import fraction_of_best_known
from flows.training import load_train_config
from flows.training.envs import make_env
from flows.training.validation import Validator

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_training import greedy_reference  # noqa: E402


def test_greedys_level_is_its_fraction_of_the_best_known_reduction_on_the_validation_states() -> None:
    config = load_train_config(ROOT / "data" / "train" / "fast.json", eval_episodes=3)
    scenario = ROOT / "data" / "scenarios" / "7-21"
    workload = ROOT / "data" / "workloads" / "chain_call_patterns.json"
    level = greedy_reference(config, scenario, workload)
    env = make_env(scenario, workload, config)
    validator = Validator(env, config.eval_episodes)
    [states], [best_ms] = validator.states, validator.best_reduction_ms
    gained = [run_greedy(Simulator(env.model, env.layout, *s), config.step_cost_ms).reduction_ms for s in states]
    assert len(states) == 3
    assert np.isclose(level, fraction_of_best_known(sum(gained), sum(max(b, 0.0) for b in best_ms)))
    assert 0.0 < level <= 1.0 + 1e-9
