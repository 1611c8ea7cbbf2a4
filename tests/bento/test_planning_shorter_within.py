"""``shorter_within`` prefers a shorter sequence near the best one's score, but never one not worth playing
(review s16: a depth scored ≤ 0 within ``shorter_within`` step costs of the best used to be chosen)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import bento.planning as planning
from ceenv.observation import decode_action
from tests.bento.test_planning import _env, general  # noqa: F401 (the module fixture)


def test_a_shorter_sequence_whose_score_is_not_positive_is_not_chosen(
    general: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = _env("13-29", "aggregator_sequential")
    env.reset(seed=7)
    twin = planning._twin(env.simulator)
    roots = planning._root_moves(
        general.model, twin, planning.policy_mask(twin.layout, twin.action_mask()), 4, 12, None
    )
    assert len(roots) >= 2
    counts = twin.counts
    best = {
        1: planning.PlannedSequence(twin.latency_ms, 0, 1, counts),
        2: planning.PlannedSequence(twin.latency_ms - 5.0, 1, 2, counts),
    }
    monkeypatch.setattr(planning, "_best_per_depth", lambda *args: best)
    monkeypatch.setattr(planning, "_root_moves", lambda *args: roots)
    monkeypatch.setattr(planning, "sequence_scores", lambda twin, seqs, noise, conf: np.array([-0.5, 2.0]))
    action = planning.plan_action(general.model, env.simulator, shorter_within=10.0, greedy_slack=None)
    # Depth 1 scores -0.5, within 10 step costs of the best (2.0) but not worth playing: depth 2's first move.
    assert action != int(twin.layout.stop_action)
    assert decode_action(twin.layout, action) == decode_action(
        twin.layout, planning.encode_action(twin.layout, *roots[1])
    )
