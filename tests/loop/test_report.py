"""The demo's report: before/after, the reduction against a run without rescheduling, the CSV and the plot."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.loop.demo import prometheus_config
from flows.loop.report import Event, LoopRun, compare, summary, table, write_csv, write_plot
from flows.loop.run import journal_events
from flows.loop.settings import DemoSettings


def a_run(values: list[float], policy: str = "greedy-standin", start: float = 1000.0) -> LoopRun:
    run = LoopRun("r", policy, start, start + len(values))
    run.samples = [(start + i, v) for i, v in enumerate(values)]
    return run


def test_before_is_the_start_and_after_is_the_end_of_the_run() -> None:
    run = a_run([300, 310, 290, 200, 120, 118, 121, 119, 120])
    run.events = [Event(1003.5, "migrated", "agg-1", "cloud-1", "edge-1"), Event(1004.2, "refused", "db-1")]
    s = summary(run)
    assert (s.before_ms, s.after_ms, s.moves) == (300, 120, 1)
    assert s.reduction_pct == pytest.approx(60.0)
    assert s.first_move_s == pytest.approx(3.5)
    assert "simulated" in table([s])


def test_the_reduction_compares_mean_latency_after_the_event() -> None:
    without, with_reach = a_run([100, 100, 200, 200, 200], ""), a_run([100, 100, 200, 150, 130])
    numbers = compare(with_reach, without, since_s=2)
    assert numbers["without_ms"] == 200 and numbers["with_ms"] == pytest.approx(160)
    assert numbers["reduction_pct"] == pytest.approx(20.0)


def test_a_run_without_samples_is_an_error_that_names_prometheus() -> None:
    with pytest.raises(ValueError, match="Prometheus"):
        summary(LoopRun("empty", "", 0.0))


def test_the_csv_interleaves_samples_and_events_with_pod_from_and_to(tmp_path: Path) -> None:
    run = a_run([300, 200, 100])
    run.events = [Event(1001.5, "migrated", "agg-1", "cloud-1", "edge-1")]
    rows = list(csv.DictReader(write_csv(run, tmp_path / "run.csv").open()))
    assert list(rows[0]) == ["timestamp", "latency_ms", "event", "pod", "from", "to"]
    assert [r["event"] for r in rows] == ["sample", "sample", "migrated", "sample"]
    assert rows[2] | {} == {"timestamp": "1001.500", "latency_ms": "200.000", "event": "migrated",
                            "pod": "agg-1", "from": "cloud-1", "to": "edge-1"}  # fmt: skip


def test_the_plot_is_written(tmp_path: Path) -> None:
    run = a_run([300, 200, 100])
    run.events = [Event(1001.5, "migrated", "a", "b", "c"), Event(1000.5, "drained", "", "n1,n2", "")]
    path = write_plot([run], tmp_path / "p.png", "t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_migration_events_come_from_the_migrators_records_with_their_source() -> None:
    records: list[dict[str, object]] = [
        {"event": "migrating", "time": 1.0, "pod": "p", "source": "n1", "target": "n2"},
        {"event": "refused", "time": 1.5, "pod": "q", "target": "n3", "reason": "pdb-blocks"},
        {"event": "migrated", "time": 2.0, "pod": "p", "target": "n2"},
    ]
    assert journal_events(records) == [Event(2.0, "migrated", "p", "n1", "n2")]


def test_prometheus_scrapes_only_loopback_targets_and_loads_the_alert_rules() -> None:
    config = prometheus_config(DemoSettings(exporter_port=19464, migrator_metrics_port=19465))
    assert "'127.0.0.1:19464'" in config and "'127.0.0.1:19465'" in config
    assert "alerts.yml" in config


def test_moves_carry_the_services_prediction_and_the_world_measures_their_gain() -> None:
    from flows.loop.experiments import calibration
    from flows.loop.run import journal_moves

    records: list[dict[str, object]] = [
        {"event": "migrating", "time": 1010.0, "pod": "p", "source": "n1", "target": "n2",
         "predicted_before_ms": 150.0, "predicted_after_ms": 120.0},
        {"event": "migrated", "time": 1014.0, "pod": "p", "target": "n2"},
        {"event": "migrating", "time": 1030.0, "pod": "q", "source": "n1", "target": "n3",
         "predicted_before_ms": None, "predicted_after_ms": None},
        {"event": "migrated", "time": 1032.0, "pod": "q", "target": "n3"},
        {"event": "migrating", "time": 1040.0, "pod": "r", "source": "n1", "target": "n3"},
        {"event": "rolled-back", "time": 1045.0, "pod": "r", "target": "n3"},
    ]  # fmt: skip
    moves = journal_moves(records)
    assert [(m.pod, m.source, m.target, m.predicted_gain_ms) for m in moves] == [
        ("p", "n1", "n2", 30.0), ("q", "n1", "n3", None)
    ]  # fmt: skip
    run = a_run([200.0] * 10 + [190.0] * 9 + [160.0] * 30)  # samples at 1000 … 1048 s
    run.fast_samples = run.samples
    run.predictions = moves
    # before: 1007 … 1010 s (200, 200, 200, 190 ms); after: 1019 … 1022 s (160 ms); q has no prediction
    assert calibration(run) == [{"pod": "p", "target": "n2", "started_s": 10.0, "done_s": 14.0,
                                 "predicted_gain_ms": 30.0, "measured_gain_ms": pytest.approx(37.5)}]  # fmt: skip


def test_a_move_whose_windows_hold_the_event_is_left_out_of_the_calibration() -> None:
    from flows.loop.stats import move_gains

    series = [(float(t), 200.0 if t < 12 else 150.0) for t in range(40)]
    moves = [{"pod": "p", "started_s": 10.0, "done_s": 12.0, "predicted_gain_ms": 30.0}]
    assert move_gains(series, moves, None)[0]["measured_gain_ms"] == pytest.approx(50.0)
    assert move_gains(series, moves, event_s=19.0) == []  # inside the 5–8 s after the move ended
    assert move_gains(series, moves, event_s=4.0) == []  # inside the rate windows of the samples before it
    assert len(move_gains(series, moves, event_s=25.0)) == 1
    assert move_gains(series, [{**moves[0], "predicted_gain_ms": None}], None) == []
    assert move_gains(series[:15], moves, None) == []  # the run ended before the window after the move


def test_moves_whose_windows_hold_the_event_can_be_kept_marked_and_are_not_counted() -> None:
    from flows.loop.cells import calibration_summary
    from flows.loop.stats import move_gains

    series = [(float(t), 200.0 if t < 12 else 150.0) for t in range(40)]
    moves = [{"pod": "p", "started_s": 10.0, "done_s": 12.0, "predicted_gain_ms": 30.0}]
    (held,) = move_gains(series, moves, event_s=19.0, keep_event=True)
    assert held["event_in_window"] is True and held["measured_gain_ms"] == pytest.approx(50.0)
    text = calibration_summary([{**held, "arm": "learned"}])
    assert text.startswith("No move with a predicted gain and clean windows") and "1 more moves" in text


def test_a_csv_that_fails_while_written_leaves_the_earlier_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.loop.report as report

    path = tmp_path / "run.csv"
    path.write_text("the earlier run's series\n")

    def rows_then_failure(run: LoopRun) -> Iterator[list[str]]:
        yield ["1000.000", "300.000", "sample", "", "", ""]
        raise RuntimeError("interrupted while writing")

    monkeypatch.setattr(report, "csv_rows", rows_then_failure)
    with pytest.raises(RuntimeError, match="interrupted"):
        write_csv(a_run([300, 200]), path)
    assert path.read_text() == "the earlier run's series\n"
    assert [p.name for p in tmp_path.iterdir()] == ["run.csv"]
