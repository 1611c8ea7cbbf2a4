"""bench_planning_views' scoring against greedy and its table, on made-up episodes (no model, no env)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_planning_views as views  # noqa: E402


def test_a_planner_is_scored_by_its_summed_reduction_over_greedys_and_episode_by_episode() -> None:
    starts = [100.0, 100.0, 50.0, 80.0]
    greedy = [60.0, 70.0, 40.0, 80.0]  # reductions 40 + 30 + 10 + 0 = 80
    planner = [50.0, 70.0 + 1e-9, 45.0, 79.0]  # 50 + 30 + 5 + 1 = 86
    scored = views.compare(planner, greedy, starts)
    assert scored["ratio"] == pytest.approx(86 / 80)
    assert (scored["lower"], scored["level"], scored["higher"]) == (2, 1, 1)
    same = views.compare(greedy, greedy, starts)
    assert same["ratio"] == 1.0 and (same["lower"], same["level"], same["higher"]) == (0, 4, 0)
    nothing = views.compare(starts, starts, starts)  # greedy gained nothing: no ratio to speak of
    assert nothing["ratio"] != nothing["ratio"]


def test_the_views_are_the_served_planner_and_its_three_counterparts() -> None:
    served, measured_free, true_charged, true_free = views.VIEWS
    chosen = views.PlanningSettings.chosen()
    assert (served.plan_noise, served.plan_confidence) == (chosen.plan_noise, chosen.plan_confidence)
    assert served.measurement_noise == measured_free.measurement_noise > 0
    assert true_charged.measurement_noise == true_free.measurement_noise == 0
    assert (
        (measured_free.plan_noise, measured_free.plan_confidence)
        == (0, 0)
        == (true_free.plan_noise, true_free.plan_confidence)
    )
    assert (true_charged.plan_noise, true_charged.plan_confidence) == (served.plan_noise, served.plan_confidence)


def test_a_cluster_folder_must_hold_exactly_one_workload(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"expected one \*_call_patterns\.json workload in it, found 0"):
        views.workload_of(tmp_path)
    (tmp_path / "a_call_patterns.json").write_text("{}")
    assert views.workload_of(tmp_path) == tmp_path / "a_call_patterns.json"
    (tmp_path / "b_call_patterns.json").write_text("{}")
    with pytest.raises(SystemExit, match="found 2"):
        views.workload_of(tmp_path)


def test_the_table_counts_groups_at_or_above_greedy_per_view(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def row(cluster: str, ratios: list[float]) -> dict:
        return {
            "cluster": cluster,
            "family": "steady",
            "greedy_moves": 7.0,
            "views": {
                v.label: {"ratio": r, "moves": 6.5, "lower": 1, "level": 2, "higher": 3}
                for v, r in zip(views.VIEWS, ratios, strict=True)
            },
        }

    settings = {
        "written_utc": "2026-12-03 16:44", "command": "python benchmarks/bench_planning_views.py", "wall_seconds": 82,
        "model": "data/policies/general-v4", "seeds": [0, 1], "episodes": 4, "step_cost_ms": 1.25,
        "measurement_noise": 0.1, "planning": views.PlanningSettings.chosen().to_dict(),
    }  # fmt: skip
    rows = [row("a", [0.99, 1.0, 1.2, 0.5]), row("b", [1.01, 0.999, 1.0, 0.7])]
    table = views.markdown(rows, settings)
    assert "| a | steady | 7.0 | 0.990 (6.5 moves; 1/2/3) | 1.000 (6.5 moves; 1/2/3) |" in table
    assert "plan_k 4, 8 moves deep, width 12, margin 1" in table
    counts = table.splitlines()[-1]
    assert counts.startswith("Groups at or above greedy's reduction: measured, noise charge (served) 1/2; ")
    assert counts.endswith("true, noise charge 2/2; true, no charge 0/2.")
    (tmp_path / "planning_views.json").write_text(json.dumps({"settings": settings, "rows": rows}))
    views.main(["--tables", "--out", str(tmp_path)])
    assert (tmp_path / "planning_views.md").read_text() == table
    assert capsys.readouterr().out.startswith("# Planning's view of the network")
