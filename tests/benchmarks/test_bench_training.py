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


def test_the_throughput_table_shows_each_settings_median_over_the_rounds_and_their_range() -> None:
    """The machine's speed drifts; one round per setting made the table's comparisons read noise as speed-ups."""
    from bench_training import THROUGHPUT_SETTINGS, throughput_markdown, throughput_rows

    rates = [[900.0 + k, 1300.0 + k, 1100.0 + k] for k in range(len(THROUGHPUT_SETTINGS))]
    rows = throughput_rows(rates)
    assert [r["steps_per_second"] for r in rows] == [1100 + k for k in range(len(rows))]
    assert rows[0]["rounds"] == [900, 1300, 1100] and rows[-1]["n_envs"] == THROUGHPUT_SETTINGS[-1][2]
    general = [r for r in rows if r["config"] == "general"]
    assert general and all(r["policy"] == "pod_node" and r["observation_version"] == 4 for r in general)
    table = throughput_markdown(rows, 16384, 3, "today").splitlines()
    assert "Median of 3 rounds" in table[0] and "--rounds 3" in table[0]
    assert table[5].endswith("| 1,101 | 901–1,301 |"), table[5]
