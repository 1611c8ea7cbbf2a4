"""``bench_training.py --replot`` draws greedy's level, computed now, over an earlier run's curve: it
must refuse a run whose fractions divide by another best-known ceiling (the search changed on
2026-12-01), instead of drawing two ceilings in one figure."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_training import replot  # noqa: E402


@pytest.mark.parametrize("named", [None, "random placements of all pods"])
def test_a_replot_across_best_known_ceilings_is_refused_and_writes_nothing(tmp_path: Path, named: str | None) -> None:
    summary = {"best_validation_fraction": 0.9} | ({"best_known": named} if named else {})
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "curve.csv").write_text("timesteps,wall_seconds,fraction_of_best_known\n1000,1.0,0.8\n")
    args = argparse.Namespace(out=str(tmp_path), config=ROOT / "data" / "train" / "fast.json", minutes=1.0)
    with pytest.raises(SystemExit, match="another best-known ceiling"):
        replot(args)
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert not (tmp_path / "curve.png").exists()
