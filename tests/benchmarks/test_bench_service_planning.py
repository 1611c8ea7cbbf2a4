"""bench_service --planning's in-process columns: the same decisions timed without HTTP, beside the served ones."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_service  # noqa: E402
import service_planning  # noqa: E402

GENERAL = ROOT / "data" / "policies" / "general-v4"


def _row(setting: str, in_process: dict[str, Any] | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "size": "7-21",
        "setting": setting,
        "requests": 10,
        "p50_ms": 5.0,
        "p95_ms": 6.0,
        "p99_ms": 7.0,
        "max_ms": 8.0,
        "failed": 0,
        "target_p99_ms": 15.0,
        "answers_differ": 3,
    }
    if in_process is not None:
        row["in_process"] = in_process
    return row


def test_the_table_shows_the_in_process_times_or_says_they_were_not_measured(tmp_path: Path) -> None:
    args = bench_service.parse_args(
        ["--planning", "--artefact", str(GENERAL), "--markdown", str(tmp_path / "planning.md"), "--in-process", "8"]
    )
    rows = [_row("raw policy", {"p50_ms": 1.234, "p99_ms": 2.5}), _row("planning", None)]
    service_planning.write_planning_markdown(rows, args, "a test")
    text = (tmp_path / "planning.md").read_text()
    assert "in-process p50 ms | in-process p99 ms |" in text
    assert "| 3/64 | 1.23 | 2.50 |" in text
    assert "| 3/64 | not measured | not measured |" in text
    assert "8 start states after 64 untimed decisions" in text


def test_a_negative_in_process_count_is_refused() -> None:
    with pytest.raises(SystemExit):
        bench_service.parse_args(["--planning", "--artefact", str(GENERAL), "--in-process", "-1"])


def test_in_process_times_decide_with_the_planning_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """Raw and planned timings go through Policy.decide with the run's settings (planning on only when asked)."""
    from bento.policy import Policy

    args = bench_service.parse_args(["--planning", "--artefact", str(GENERAL), "--in-process", "3"])
    scenario_dir, workload_file = bench_service.cluster_files("7-21", "aggregator_sequential")
    seen: list[bool] = []
    decide = Policy.decide

    def recorded(self: Policy, request: Any) -> Any:
        seen.append(self.planning.active)
        return decide(self, request)

    monkeypatch.setattr(Policy, "decide", recorded)
    monkeypatch.setattr(service_planning, "IN_PROCESS_WARMUP", 1)
    import torch

    threads = torch.get_num_threads()
    raw = service_planning.in_process_times(args, scenario_dir, workload_file, {})
    assert raw["samples"] == 3 and raw["warmup"] == 1 and 0 < raw["p50_ms"] <= raw["p99_ms"]
    assert seen == [False] * 4
    planned = service_planning.in_process_times(
        args, scenario_dir, workload_file, service_planning.planning_values(args)
    )
    assert planned["samples"] == 3 and seen[4:] == [True] * 4
    assert torch.get_num_threads() == threads, "the benchmark leaves the process's torch threads as it found them"
