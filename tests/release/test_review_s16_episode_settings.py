"""The incumbent is compared like for like in how episodes are played too (review s16): a candidate evaluated with
another ``max_steps`` or step cost is not comparable with the stored report, and the incumbent is played again
with the candidate's."""

from __future__ import annotations

from pathlib import Path

from tests.bento.conftest import SCENARIO_DIR, WORKLOAD_FILE
from tests.release.test_packaging import evaluated_artefact  # noqa: F401 (the module fixture)


def test_another_episode_length_is_not_like_for_like_and_the_incumbent_plays_the_candidate_s(
    evaluated_artefact: Path,  # noqa: F811
) -> None:
    from bento.artefact import read_metadata
    from flows.evaluation import evaluate
    from flows.evaluation.gate import not_comparable
    from flows.evaluation.report import EvaluationReport, episode_settings
    from flows.release.packaging import Incumbent, incumbent_like_for_like

    stored = EvaluationReport.model_validate(read_metadata(evaluated_artefact).evaluation_report)
    seeds, episodes = list(stored.settings["seeds"]), int(stored.settings["episodes"])
    families = list(stored.settings.get("families") or ["steady"])
    candidate, _ = evaluate(SCENARIO_DIR, [WORKLOAD_FILE], evaluated_artefact, seeds, episodes, families, max_steps=3)
    assert episode_settings(candidate.settings)["max_steps"] == 3
    assert not_comparable(candidate, stored) == [
        "every group: episodes played with max_steps 3 for the candidate, 100 for the incumbent"
    ]
    found = Incumbent("reach-policy-service:old", str(evaluated_artefact), stored)
    again, note = incumbent_like_for_like(found, candidate, SCENARIO_DIR, [WORKLOAD_FILE])
    assert again is not None and episode_settings(again.settings)["max_steps"] == 3, note
    assert not not_comparable(candidate, again)
    assert again.groups[0].methods["policy"].moves_per_episode.mean <= 3  # played with the candidate's 3 steps


def test_the_gate_refuses_a_comparison_with_an_incumbent_that_played_other_episodes(
    evaluated_artefact: Path,  # noqa: F811
) -> None:
    """When the incumbent could not be played again, the gate itself must not compare across episode settings."""
    from bento.artefact import read_metadata
    from flows.evaluation.gate import GateRules, gate
    from flows.evaluation.report import EvaluationReport

    stored = EvaluationReport.model_validate(read_metadata(evaluated_artefact).evaluation_report)
    shorter = stored.model_copy(update={"settings": {**stored.settings, "max_steps": 3}})
    rules = GateRules(min_fraction_of_best_known=0.0, beat_noop=False, beat_random=False)
    verdict = gate(shorter, stored, rules)
    assert not verdict.passed
    assert any("not comparable: episodes played with max_steps 3" in c.detail for c in verdict.checks)
    alike = [c for c in gate(stored, stored, rules).checks if c.rule == "not_worse_than_incumbent"]
    assert alike and all(c.passed and "not comparable" not in c.detail for c in alike)  # alike: compared
