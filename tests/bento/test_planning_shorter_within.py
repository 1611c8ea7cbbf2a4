"""How planning chooses among each depth's best sequence (:func:`bento.planning.choose_sequence`): never one
not worth playing against staying put (review s16: a depth scored ≤ 0 used to be chosen), and a longer one
only when it beats the best shorter one so far (by ``shorter_within`` step costs more, when set)."""

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
    # 1 / 1.8 / 2.6 ms with 1 ms asked: depth 3 beats the champion (depth 1) by 1.6, so it is played.
    assert planning.choose_sequence(twin, sequences(1.0, 1.8, 2.6), 0.0, 0.0, prefer_shorter_ms=1.0) == 2


def test_a_sequence_that_does_not_beat_staying_put_is_never_played_even_when_it_beats_the_champion() -> None:
    env = _env("13-29", "chain")
    env.reset(seed=5)
    twin = planning._twin(env.simulator)
    first_end = twin.copy()
    first_end.move(*twin.distinct_moves()[0])
    # Depth 2 extends depth 1 by the move whose end differs least from depth 1's under noise.
    candidates = []
    for move in first_end.distinct_moves():
        end = first_end.copy()
        end.move(*move)
        candidates.append(end.counts.copy())
    sampled = planning._sampled_latencies(twin, [first_end.counts, *candidates], 0.1, 1.0)
    assert sampled is not None
    closest = 2 + int(np.argmin((sampled[:, 1:2] - sampled[:, 2:]).std(axis=0)))
    ends = [first_end.counts.copy(), [first_end.counts, *candidates][closest - 1]]
    # Depth 1 gains 5 ms clear of its charge; depth 2 is valued 3 ms lower still but charged (against staying
    # put) more than its whole gain: the pairwise test alone would play it.
    first = planning.PlannedSequence(twin.latency_ms - 5.0, 0, 1, ends[0])
    second = planning.PlannedSequence(twin.latency_ms - 8.0, 1, 2, ends[1])
    sampled = planning._sampled_latencies(twin, [first.counts, second.counts], 0.1, 1.0)
    assert sampled is not None
    spread_first = float((sampled[:, 0] - sampled[:, 1]).std())
    spread_second = float((sampled[:, 0] - sampled[:, 2]).std())
    confidence = 7.9 / (2 * spread_second)  # depth 2's score against staying put: 8 - 2 x 3.95 > 0 ...
    assert 5.0 - confidence * spread_first > 0, "depth 1 must stay worth playing for the check to mean anything"
    assert planning.choose_sequence(twin, [first, second], 0.1, confidence) in (0, 1)
    confidence = 8.1 / (2 * spread_second)  # ... and now < 0: never played, whatever it does against depth 1
    spread_pair = float((sampled[:, 1] - sampled[:, 2]).std())
    assert 3.0 - confidence * spread_pair > 0, "depth 2 must beat depth 1 pairwise for the check to mean anything"
    expected = 0 if 5.0 - confidence * spread_first > 0 else None
    assert planning.choose_sequence(twin, [first, second], 0.1, confidence) == expected


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
