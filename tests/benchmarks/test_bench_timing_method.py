"""How the benchmarks time: bench_general's decision times and bench_service's sequential throughput.

Found in review: bench_general took the decision p99 from 200 calls with no warm-up (the first calls pay lazy
initialisation), and bench_service's sequential "req/s" was 1000 / mean latency, not measured. Neither needs a
server or a model here: stand-in policies and fake runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_general  # noqa: E402
import bench_service  # noqa: E402


class SlowStart:
    """A stand-in policy: counts its calls and the bodies it got; the first ``slow`` calls take 30 ms."""

    def __init__(self, slow: int) -> None:
        self.slow, self.calls, self.seen = slow, 0, []  # type: ignore[var-annotated]

    def decide(self, body: Any) -> None:
        self.calls += 1
        self.seen.append(body)
        if self.calls <= self.slow:
            time.sleep(0.03)


def test_the_warm_up_calls_are_made_but_not_timed_and_the_counts_are_returned() -> None:
    policy = SlowStart(slow=5)
    timing = bench_general.time_decisions(policy, ["a", "b", "c"], samples=60, warmup=5)
    assert policy.calls == 65
    assert policy.seen[:8] == ["a", "b", "c", "a", "b", "a", "b", "c"]  # warm-up, then every body timed in turn
    assert timing["samples"] == 60 and timing["warmup"] == 5
    assert timing["p99_ms"] < 15.0  # the five 30 ms calls were the warm-up: none of them was timed
    cold = bench_general.time_decisions(SlowStart(slow=5), ["a"], samples=60, warmup=0)
    assert cold["p99_ms"] >= 25.0  # without the warm-up they would have been


def test_the_defaults_time_enough_calls_for_a_p99_after_a_warm_up() -> None:
    args = bench_general.parse_args(["--model", "m"])
    assert args.timing_samples >= 1000 and args.timing_warmup > 0
    assert bench_general.DECISION_SAMPLES >= 1000 and bench_general.DECISION_WARMUP > 0
    with pytest.raises(ValueError):
        bench_general.time_decisions(SlowStart(0), ["a"], samples=0, warmup=1)


def _recorded(out: Path) -> dict[str, Any]:
    """A copy of the shipped general.json in ``out``, with stand-in generated-cluster files."""
    shipped = json.loads((ROOT / "benchmarks" / "results" / "general" / "general.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    (out / "general.json").write_text(json.dumps(shipped))
    for name in ("large-3000", "large-3001"):
        folder = out / "clusters" / name
        folder.mkdir(parents=True)
        (folder / "nodes.json").write_text("{}")
        (folder / f"{name}-app_call_patterns.json").write_text("{}")
    return shipped  # type: ignore[no-any-return]


def test_timing_only_re_measures_the_recorded_cells_and_rewrites_only_the_timing_and_the_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = _recorded(tmp_path)
    measured: dict[str, Any] = {}

    def fake_measure(model: Path, cells: dict[str, Any], samples: int, warmup: int) -> dict[str, Any]:
        measured.update(model=model, cells=cells, samples=samples, warmup=warmup)
        return {key: {"p50_ms": 0.5, "p99_ms": 4.25, "samples": samples, "warmup": warmup} for key in cells}

    monkeypatch.setattr(bench_general, "measure_timing", fake_measure)
    bench_general.main(["--timing-only", "--out", str(tmp_path), "--timing-samples", "1200", "--timing-warmup", "50"])
    written = json.loads((tmp_path / "general.json").read_text())
    assert list(written["timing"]) == list(shipped["timing"])  # the same cells, in the recorded order
    assert all(t == {"p50_ms": 0.5, "p99_ms": 4.25, "samples": 1200, "warmup": 50} for t in written["timing"].values())
    assert written["rows"] == shipped["rows"]  # the evaluation is not re-run
    assert measured["model"] == ROOT / "data" / "policies" / "general-v4" and measured["samples"] == 1200
    files, planning = measured["cells"]["generated large-3000 (38 nodes), raw policy"]
    assert planning == {}
    assert files == (
        tmp_path / "clusters" / "large-3000",
        tmp_path / "clusters" / "large-3000" / "large-3000-app_call_patterns.json",
    )  # the cluster the recorded run evaluated, not a new one
    planned = next(v[1] for k, v in measured["cells"].items() if k.startswith("19-37, with planning"))
    assert planned["plan_k"] == 4 and planned["plan_horizon"] == 8 and planned["plan_width"] == 12  # the recorded ones
    note = written["settings"]["timing"]
    assert note["samples"] == 1200 and note["warmup"] == 50 and "--timing-only" in note["command"]
    summary = (tmp_path / "summary.md").read_text()
    assert "decision p99 (1200 timed calls after 50 warm-up)" in summary
    assert "| 4.2–4.2 ms |" in summary and "re-measured" in summary.splitlines()[0]
    general = (tmp_path / "general.md").read_text()
    assert "on 1200 start states per cluster, each timed once, after 50 untimed warm-up calls" in general
    assert "| 4.25 |" in general


def test_timing_only_refuses_a_model_of_its_own(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench_general.parse_args(["--timing-only", "--model", "elsewhere"])
    assert "--timing-only takes the model" in capsys.readouterr().err  # not an unknown option
    assert bench_general.parse_args(["--timing-only"]).timing_only


def _fake_run(latency_s: float, wall_per_request_s: float) -> Any:
    """A sequential run whose requests take ``wall_per_request_s`` of wall time but report ``latency_s``."""

    def run(url: str, bodies: list[bytes], n: int) -> tuple[list[float], int]:
        time.sleep(n * wall_per_request_s)
        return [latency_s] * n, 1

    return run


def test_sequential_throughput_is_requests_over_the_runs_wall_time_and_the_table_shows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 1 ms latencies (1000 / mean = 1000 req/s) but 5 ms (and 10 ms) of wall time per request.
    monkeypatch.setattr(bench_service, "run_sequential_keepalive", _fake_run(0.001, 0.005))
    monkeypatch.setattr(bench_service, "run_sequential_new_connection", _fake_run(0.001, 0.010))
    runs = bench_service.sequential_runs("http://x", [b"{}"], 40)
    keepalive, fresh = runs["sequential_keepalive"], runs["sequential_new_connection"]
    for run, floor in ((keepalive, 0.2), (fresh, 0.4)):
        assert run["requests"] == 40 and run["failed"] == 1 and run["seconds"] >= floor
        assert run["throughput_rps"] == pytest.approx(40 / run["seconds"])
        assert run["throughput_rps"] <= 200.0 < 1e3 / run["mean_ms"]
    results = {"model": "m", "model_description": "stand-in", "scenario": "13-29", **runs}
    args = argparse.Namespace(clients=8, concurrent_seconds=20.0, load_seconds=0.0, markdown=tmp_path / "bench.md")
    bench_service.write_markdown(results, args)
    lines = (tmp_path / "bench.md").read_text().splitlines()
    keepalive_row = next(line for line in lines if line.startswith("| sequential, keep-alive"))
    fresh_row = next(line for line in lines if line.startswith("| sequential, new connection"))
    assert keepalive_row.split(" | ")[5] == f"{keepalive['throughput_rps']:.0f}"
    assert fresh_row.split(" | ")[5] == f"{fresh['throughput_rps']:.0f}"
    assert "| 1000 |" not in keepalive_row + fresh_row


def test_planning_only_re_runs_the_planning_rows_and_their_gate_and_keeps_everything_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shipped = _recorded(tmp_path)
    calls: list[dict[str, Any]] = []

    def fake_evaluate(model: Path, cells: list[Any], seeds: list[int], episodes: int, **kwargs: Any) -> list[Any]:
        calls.append({"model": model, "cells": cells, "seeds": seeds, "episodes": episodes, **kwargs})
        if kwargs.get("gate_label"):
            bench_general.REPORTS.append((kwargs["gate_label"], None))
        return [f"group of {cell[0].name}" for cell in cells]

    template = shipped["rows"][0]

    def fake_row(group: str, label: str) -> dict[str, Any]:
        return {**template, "setting": label, "policy_fraction": 0.5}

    gate = [{"scenario": "s", "workload": "w", "policy": "planning", "steady_passed": False, "all_passed": False,
             "fractions": {}, "failed": ["x"]}]  # fmt: skip
    monkeypatch.setattr(bench_general, "evaluate_cells", fake_evaluate)
    monkeypatch.setattr(bench_general, "row", fake_row)
    monkeypatch.setattr(bench_general, "gate_rows", lambda rules: gate)
    bench_general.main(["--planning-only", "--out", str(tmp_path)])
    written = json.loads((tmp_path / "general.json").read_text())
    planned = [r for r in written["rows"] if r["setting"].startswith("general policy + planning")]
    kept = [r for r in shipped["rows"] if not r["setting"].startswith("general policy + planning")]
    assert written["rows"][: len(kept)] == kept, "the raw and REACH rows are kept as recorded"
    assert len(planned) == 9 + 2 and all(r["policy_fraction"] == 0.5 for r in planned)
    assert written["timing"] == shipped["timing"], "the decision times are kept as recorded"
    assert [g for g in written["settings"]["gate"] if g["policy"] == "raw"] == [
        g for g in shipped["settings"]["gate"] if g["policy"] == "raw"
    ]
    assert [g for g in written["settings"]["gate"] if g["policy"] == "planning"] == gate
    reference, large = calls
    assert reference["plan_k"] == 4 and reference["plan_horizon"] == 8 and reference["gate_label"] == "planning"
    assert reference["seeds"] == shipped["settings"]["seeds"] and len(reference["cells"]) == 9
    assert [c[0].name for c in large["cells"]] == ["large-3000", "large-3001"]  # the recorded clusters
    summary = (tmp_path / "summary.md").read_text()
    assert "planning rows and their gate verdicts re-run on" in summary.splitlines()[0]
    assert "--planning-only" in summary.splitlines()[0]
    with pytest.raises(SystemExit):
        bench_general.parse_args(["--planning-only", "--model", "elsewhere"])
    assert "--planning-only takes the model" in capsys.readouterr().err


def test_bench_general_reports_progress_per_cell_on_stderr_and_keeps_stdout_for_tables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A full run takes minutes per part: each evaluated cell and each timed cluster says so when done."""
    import flows.evaluation

    calls: list[dict[str, Any]] = []

    class Report:
        def __init__(self, name: str) -> None:
            self.groups = [f"{name}-group"]

    def fake_evaluate(scenario: Path, workloads: list[Path], model: Path, *args: Any, **planning: Any) -> Any:
        calls.append(planning)
        return Report(scenario.name), []

    monkeypatch.setattr(flows.evaluation, "evaluate", fake_evaluate)
    cells = [(tmp_path / "7-21", tmp_path / "chain.json"), (tmp_path / "13-29", tmp_path / "fan.json")]
    groups = bench_general.evaluate_cells(Path("data/policies/p"), cells, [0], 1, plan_k=4)
    assert groups == ["7-21-group", "13-29-group"]
    assert calls[0]["plan_k"] == 4
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("data/policies/p planning: 7-21 / chain done in ") and lines[0].endswith("(1/2 cells)")
    assert lines[1].startswith("data/policies/p planning: 13-29 / fan done in ") and lines[1].endswith("(2/2 cells)")
    bench_general.evaluate_cells(Path("m"), cells[:1], [0], 1)
    assert capsys.readouterr().err.startswith("m raw: 7-21 / chain done in ")

    monkeypatch.setattr(bench_general, "decision_times_ms", lambda *a, **k: {"p50": 1.0})
    timing = bench_general.measure_timing(Path("m"), {"a": (cells[0], {}), "b": (cells[1], {"plan_k": 4})}, 3, 1)
    assert timing == {"a": {"p50": 1.0}, "b": {"p50": 1.0}}
    out, err = capsys.readouterr()
    assert out == ""
    assert [line.split(" done in ")[0] for line in err.splitlines()] == ["decision times: a", "decision times: b"]
    assert err.splitlines()[1].endswith("(2/2)")
