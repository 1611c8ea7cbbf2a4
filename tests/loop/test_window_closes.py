"""The measurement window closes at the arm's end: no event acts after it, and no run mixes protocols."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flows.loop import run as loop_run
from flows.loop.arms import PROTOCOL
from flows.loop.experiments import check_out_folder
from flows.loop.settings import DemoSettings
from tests.loop.test_run import a_session, slow_node_failure

STORED = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "experiments" / "trials"


def test_an_event_that_would_act_after_the_window_does_not_act_and_the_run_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The event's queries finish after the end was read but well within the join: before the window
    closed at the end's read, the node was killed then, outside the measured window, and the run passed."""
    killed, _ = slow_node_failure(monkeypatch, query_s=0.6)
    session = a_session(experiment="node-failure", fail_nodes=["edge-1"], sample_s=0.1, event_at_s=0.2, duration_s=0.4)
    session.admin = None
    with pytest.raises(RuntimeError, match="ended before its event could fail node edge-1"):
        loop_run.run_loop(session, "default", None, "")
    assert killed == [], "a node was killed after the measured window had ended"


def test_an_output_folder_with_trials_of_another_protocol_is_refused_before_any_work(tmp_path: Path) -> None:
    shutil.copy(next(STORED.glob("node-failure-*.json")), tmp_path)  # a committed trial: protocol 1
    with pytest.raises(ValueError, match=rf"holds trials of protocol \[1\].*record protocol {PROTOCOL}.*--out"):
        check_out_folder(DemoSettings(out=tmp_path))
    check_out_folder(DemoSettings(out=tmp_path / "new"))  # an empty or missing folder is fine


def test_two_cells_in_one_process_each_open_the_migrators_metrics_port_anew(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``bench_experiments.py --experiment all`` runs every cell in one process, one session per cell:
    the second cell's session used to find the first one's metrics server still on the port."""
    import socket

    from flows.loop import experiments
    from flows.loop.demo import Session
    from migrator.telemetry import MigratorTelemetry

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def open_session(settings: DemoSettings) -> Session:
        telemetry = MigratorTelemetry()
        return Session(settings, tmp_path, None, tmp_path, telemetry, telemetry.serve(port), "http://127.0.0.1:1")

    monkeypatch.setattr(experiments, "open_session", open_session)
    monkeypatch.setattr(experiments, "learned_policy", lambda settings, workload: ("", "b:1"))
    monkeypatch.setattr(experiments, "start_standin", lambda settings, workload: ("", "greedy"))
    monkeypatch.setattr(experiments, "one_trial", lambda session, workload, seed, arms: (workload, seed))
    monkeypatch.setattr(experiments, "write_trial", lambda trial, out: None)
    settings = DemoSettings(out=tmp_path / "trials")
    assert experiments.experiment(settings, ["chain"], [0]) == [("chain", 0)]
    assert experiments.experiment(settings, ["chain"], [1]) == [("chain", 1)]  # OSError: address in use, before
