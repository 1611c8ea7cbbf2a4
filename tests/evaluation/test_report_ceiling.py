"""An evaluation report names the ceiling its fractions divide by (the best-known search changed on
2026-12-01 to placements reachable by migrations); one written before says what it used."""

from __future__ import annotations

from flows.evaluation import evaluate
from flows.evaluation.output import markdown
from tests.conftest import scenario_dir, workload_file


def test_a_report_names_its_best_known_ceiling_and_an_older_one_is_read_as_the_unconstrained_search() -> None:
    report, _ = evaluate(scenario_dir("7-21"), [workload_file("chain")], None, seeds=[0], episodes=1)
    assert "reachable by migrations" in report.settings["best_known"]
    assert "reachable by migrations: climbs from the start, a 12-move beam" in markdown(report)
    older = report.model_copy(update={"settings": {k: v for k, v in report.settings.items() if k != "best_known"}})
    assert "restarted from random placements of all pods" in markdown(older)
