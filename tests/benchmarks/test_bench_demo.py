"""``benchmarks/bench_demo.py``'s table: one row per ``make run``, from the summary ``reach demo --record`` wrote."""

from __future__ import annotations

import json
from pathlib import Path

from flows.loop.report import Summary
from flows.loop.settings import DemoSettings
from flows.loop.stages import DemoResult, write_summary
from tests.benchmarks.test_readme_tables import ROOT, _script

bench_demo = _script("bench_demo", ROOT / "benchmarks" / "bench_demo.py")


def test_a_row_has_every_stage_the_gate_and_the_latencies_and_a_missing_summary_keeps_the_columns(
    tmp_path: Path,
) -> None:
    summary = Summary("x", "reach-policy-service:abc", 365.5, 112.8, 4, 90.0, 10.0, 60.0)
    stages = {"up": 45.7, "poor start": 7.6, "1 profile": 22.0, "2 train": 58.9, "3 deploy": 8.2, "3 act": 90.0}
    result = DemoResult(summary, tmp_path / "a.csv", tmp_path / "a.png", "http://127.0.0.1:9090", None,
                        (490.7, 241.2), (343.1, 109.6), stages, 232.4, {"gate": "passed all 5 checks"}, 180)  # fmt: skip
    written = write_summary(result, DemoSettings(scenario="13-29"), tmp_path / "s")
    recorded = json.loads(written.report_json.read_text())  # type: ignore[union-attr]
    table = bench_demo.table([bench_demo.row(1, 240.0, 0, recorded), bench_demo.row(2, 900.0, 1, None)], "cmd")
    lines = table.splitlines()
    head, first, second = lines[4], lines[6], lines[7]
    assert head.count("|") == first.count("|") == second.count("|")
    assert "| 1 | 240 | 0 | 232 | 46 | 8 | 22 | 59 | 8 | 90 | passed all 5 checks |" in first
    assert "365.5 → 112.8 | 490.7 → 241.2 | 343.1 → 109.6 | 4 |" in first
    assert "no summary recorded" in second
