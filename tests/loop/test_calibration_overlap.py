"""The calibration measures one move at a time: a move whose windows overlap another move's span is left out
(review s16: 4 of the 11 "clean" protocol-2 points had another move inside their windows)."""

from __future__ import annotations

import pytest

from flows.loop.cells import calibration_summary
from flows.loop.stats import move_gains


def staircase(steps: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """A latency series sampled every 0.5 s that drops by ``drop`` ms at each ``(time, drop)``."""
    series, level = [], 300.0
    for tenth in range(0, 1200, 5):
        t = tenth / 10
        level_now = level - sum(drop for at, drop in steps if t >= at)
        series.append((t, level_now))
    return series


def test_two_moves_whose_windows_overlap_are_both_left_out_and_a_lone_move_is_measured() -> None:
    # Move A at 10–12 s, move B at 13–15 s: A's after-window (17–20 s) holds B's drop, B's before-window holds A's.
    moves = [
        {"pod": "a", "started_s": 10.0, "done_s": 12.0, "predicted_gain_ms": 40.0},
        {"pod": "b", "started_s": 13.0, "done_s": 15.0, "predicted_gain_ms": 40.0},
        {"pod": "c", "started_s": 60.0, "done_s": 62.0, "predicted_gain_ms": 40.0},
    ]
    series = staircase([(12.0, 40.0), (15.0, 40.0), (62.0, 40.0)])
    clean = move_gains(series, moves, event_s=None)
    assert [p["pod"] for p in clean] == ["c"]
    assert clean[0]["measured_gain_ms"] == pytest.approx(40.0)
    kept = move_gains(series, moves, event_s=None, keep_event=True)
    assert [p["pod"] for p in kept if p.get("other_move_in_window")] == ["a", "b"]
    assert kept[0]["measured_gain_ms"] == pytest.approx(80.0)  # what the old calibration counted for move A


def test_the_summary_counts_only_lone_moves_and_says_how_many_it_left_out() -> None:
    moves = [
        {"pod": "a", "started_s": 10.0, "done_s": 12.0, "predicted_gain_ms": 40.0},
        {"pod": "b", "started_s": 13.0, "done_s": 15.0, "predicted_gain_ms": 40.0},
        {"pod": "c", "started_s": 60.0, "done_s": 62.0, "predicted_gain_ms": 40.0},
    ]
    points = move_gains(staircase([(12.0, 40.0), (15.0, 40.0), (62.0, 40.0)]), moves, None, keep_event=True)
    summary = calibration_summary([{**p, "arm": "learned"} for p in points])
    assert summary.startswith("1 moves with a prediction: mean predicted gain 40.0 ms, mean measured gain 40.0 ms")
    assert "2 more moves are left out because their windows overlap another move" in summary
