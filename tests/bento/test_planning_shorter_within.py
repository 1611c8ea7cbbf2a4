"""``shorter_within`` prefers a shorter sequence near the best one's score, but never one not worth playing
(review s16: a depth scored ≤ 0 within ``shorter_within`` step costs of the best used to be chosen), and
:func:`bento.planning.choose_sequence` compares each sequence with the best one before it."""

from __future__ import annotations

from typing import Any

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
    action = planning.plan_action(general.model, env.simulator, shorter_within=10.0, greedy_slack=None, noise=0.0)
    # Depth 1 gains nothing, within 10 step costs of depth 2 (5 ms) but not worth playing: depth 2's first move.
    assert action != int(twin.layout.stop_action)
    assert decode_action(twin.layout, action) == decode_action(
        twin.layout, planning.encode_action(twin.layout, *roots[1])
    )


def test_a_longer_sequence_is_chosen_only_when_it_beats_the_best_shorter_one() -> None:
    env = _env("7-21", "chain")
    env.reset(seed=3)
    twin = planning._twin(env.simulator)
    now = twin.latency_ms

    def sequences(*values_ms: float) -> list[planning.PlannedSequence]:
        return [planning.PlannedSequence(now - v, 0, moves, twin.counts) for moves, v in enumerate(values_ms, 1)]

    # Depth 2 is worse than depth 1; depth 3 beats depth 1 (the champion), not only staying put.
    assert planning.choose_sequence(twin, sequences(10.0, 9.0, 12.0), 0.0, 0.0) == 2
    assert planning.choose_sequence(twin, sequences(10.0, 9.0, 12.0), 0.0, 0.0, prefer_shorter_ms=5.0) == 0
    assert planning.choose_sequence(twin, sequences(-1.0, 0.0), 0.0, 0.0) is None, "no sequence beats staying put"


def test_planning_finishes_a_swap_through_a_third_node_instead_of_undoing_it(general: Any) -> None:  # noqa: F811
    """7-21 ``aggregator_sequential`` after a surge: the best plan parks a pod on a poor node first (review s19:
    each sequence scored against the poor placement undid the parking move, to and fro to the step limit)."""
    from flows.evaluation.episodes import start_state
    from flows.evaluation.seeds import evaluation_seed

    env = _env("7-21", "aggregator_sequential", max_steps=60)
    obs, _ = env.reset(options={"state": start_state(env, "traffic_surge", evaluation_seed(4, 1))})
    seen = {env.simulator.counts.tobytes()}
    for _ in range(60):
        action = planning.plan_action(general.model, env.simulator, observation=obs, k=4)
        if action == env.layout.stop_action:
            break
        obs, *_ = env.step(action)
        placement = env.simulator.counts.tobytes()
        assert placement not in seen, "planning returned to a placement it had left"
        seen.add(placement)
    else:
        pytest.fail("planning never stopped")
