"""bench_planning ``--replace``: re-measured rows take the place of the same settings' rows; the others are kept."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_planning  # noqa: E402


def test_replace_swaps_only_the_re_measured_settings_rows_and_says_so() -> None:
    shipped = json.loads((ROOT / "benchmarks" / "results" / "planning" / "planning.json").read_text())
    default = next(r for r in shipped["results"] if bench_planning.label(r["planning"]) == "8 / 12 / 1, noise 0.1 × 1")
    again = {**default, "mean_fraction": 0.5}
    run = {"wall_seconds": 12.0, "seeds": shipped["seeds"], "episodes": shipped["episodes"], "results": [again]}
    merged = bench_planning.replaced(shipped, run, "--replace --setting 8/12/1/0.1/1")
    labels = [bench_planning.label(r["planning"]) for r in merged["results"]]
    assert labels == [bench_planning.label(r["planning"]) for r in shipped["results"]], "same rows, same order"
    assert [r["mean_fraction"] for r in merged["results"]] == [
        0.5 if r is default else r["mean_fraction"] for r in shipped["results"]
    ]
    assert merged["replaced"][-1]["rows"] == ["8 / 12 / 1, noise 0.1 × 1"]
    assert merged["wall_seconds"] == shipped["wall_seconds"]


def test_replace_refuses_rows_measured_on_other_seeds() -> None:
    shipped = json.loads((ROOT / "benchmarks" / "results" / "planning" / "planning.json").read_text())
    run = {"wall_seconds": 1.0, "seeds": [0], "episodes": shipped["episodes"], "results": []}
    with pytest.raises(SystemExit, match="same --seeds"):
        bench_planning.replaced(shipped, run, "--replace --seeds 1")
