"""bench_env's random agent for the batched env: one uniformly random *valid* action per copy.

The batched figure charges the agent's draw to the env's time, so the draw was made cheaper on
2026-12-03 (``uniform_valid_actions``); these checks hold it to what the old argmax draw gave: only
valid actions, every valid action of a row about equally often, rows independent of each other.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_env  # noqa: E402


def _masks(rng: np.random.Generator, rows: int, actions: int) -> np.ndarray:
    masks = rng.random((rows, actions)) < rng.uniform(0.001, 0.3, (rows, 1))
    masks[:, -1] = True  # STOP, always allowed
    masks[0, :-1] = False  # a row where STOP is the only valid action
    return masks


def test_every_drawn_action_is_valid_in_its_own_row() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        masks = _masks(rng, 64, 3201)
        actions = bench_env.uniform_valid_actions(rng, masks)
        assert actions.shape == (64,)
        assert masks[np.arange(64), actions].all()
        assert actions[0] == 3200


def test_each_row_draws_its_valid_actions_uniformly() -> None:
    rng = np.random.default_rng(1)
    masks = _masks(rng, 4, 40)
    masks[1] = False
    masks[1, [0, 7, 39]] = True  # a row with its first and last actions valid: no off-by-one at the ends
    draws = np.array([bench_env.uniform_valid_actions(rng, masks) for _ in range(20_000)])
    for row in range(1, 4):
        valid = np.flatnonzero(masks[row])
        counts = np.bincount(draws[:, row], minlength=40)
        assert counts[~masks[row]].sum() == 0
        expected = 20_000 / valid.size
        # binomial standard deviation: 5 sigma either way
        spread = 5 * np.sqrt(expected * (1 - 1 / valid.size))
        assert np.all(np.abs(counts[valid] - expected) < spread), (row, counts[valid], expected)
    # rows draw independently: row 1's and row 2's choices are uncorrelated
    assert abs(np.corrcoef(draws[:, 1], draws[:, 2])[0, 1]) < 0.05
