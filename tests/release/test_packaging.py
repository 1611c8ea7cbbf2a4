"""``reach package``: an artefact trained outside the pipeline is gated on its stored evaluation, then packaged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.release.packaging import release_artefact
from tests.bento.conftest import SCENARIO_DIR, WORKLOAD_FILE, train_briefly


@pytest.fixture(scope="module")
def evaluated_artefact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bento.artefact import write_evaluation
    from flows.evaluation import evaluate

    artefact = train_briefly(SCENARIO_DIR, WORKLOAD_FILE, tmp_path_factory.mktemp("release") / "policy")
    report, _ = evaluate(SCENARIO_DIR, [WORKLOAD_FILE], artefact, [0, 1], 1, ["steady"])
    write_evaluation(artefact, report.model_dump(mode="json"))
    return artefact


def rules(tmp_path: Path, **values: object) -> Path:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(values))
    return path


def test_an_artefact_without_an_evaluation_is_refused_with_the_command_that_fixes_it(tmp_path: Path) -> None:
    artefact = train_briefly(SCENARIO_DIR, WORKLOAD_FILE, tmp_path / "policy", steps=64)
    with pytest.raises(ValueError, match="reach evaluate --model"):
        release_artefact(artefact, rules(tmp_path))


def test_a_refused_artefact_is_not_packaged_and_exits_3(evaluated_artefact: Path, tmp_path: Path) -> None:
    impossible = rules(tmp_path, beat_noop=False, beat_random=False, min_fraction_of_best_known=1.5)
    result = CliRunner().invoke(app, ["package", "--artefact", str(evaluated_artefact), "--rules", str(impossible)])
    assert result.exit_code == 3, result.output
    assert "FAIL min_fraction_of_best_known" in result.output and "nothing was packaged" in result.output


def test_a_passing_artefact_becomes_a_bento_labelled_with_its_verdict(
    evaluated_artefact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, removed_afterwards: list[str]
) -> None:
    """A 256-step policy cannot pass real rules: the gate's verdict is replaced (the gate has its own tests).

    The BentoML store is the session's (tests/conftest.py sets BENTOML_HOME); what this test packages
    is removed afterwards (``removed_afterwards``), so no later test finds it as an incumbent.
    """
    import bentoml

    import flows.evaluation.gate
    import flows.release.packaging
    from flows.evaluation.gate import Check, Verdict

    monkeypatch.setattr(flows.release.packaging, "find_incumbent", lambda scenario, workload: None)
    passing = Verdict(passed=True, checks=[Check(rule="beat_noop", group="all", passed=True, detail="test")])
    monkeypatch.setattr(flows.evaluation.gate, "gate", lambda report, incumbent, rules: passing)
    verdict, tag = release_artefact(evaluated_artefact, rules(tmp_path))
    assert verdict.passed and tag is not None
    removed_afterwards.append(tag)
    labels = bentoml.bentos.get(tag).info.labels
    assert labels["gate"] == "passed" and labels["scenario"] == "7-21" and labels["workload"] == "aggregator_sequential"
    card = bentoml.models.get(labels["model"]).info.metadata
    assert "passed all 1 checks (gate rules rules.json)" in json.dumps(card)


def test_a_report_of_another_layout_is_refused(evaluated_artefact: Path, tmp_path: Path) -> None:
    from bento.artefact import read_metadata

    report = dict(read_metadata(evaluated_artefact).evaluation_report or {})
    report["model"] = {**report["model"], "layout_fingerprint": "0000000000000000"}
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    with pytest.raises(ValueError, match="evaluates layout 0000000000000000"):
        release_artefact(evaluated_artefact, rules(tmp_path), path)


def test_a_report_of_other_weights_with_the_same_layout_is_refused(evaluated_artefact: Path, tmp_path: Path) -> None:
    """A fine-tune keeps the layout; the report names the weights it judged (policy.zip's hash)."""
    import shutil

    from bento.artefact import policy_sha256, read_metadata

    report = dict(read_metadata(evaluated_artefact).evaluation_report or {})
    assert report["model"]["policy_sha256"] == policy_sha256(evaluated_artefact)
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    retrained = tmp_path / "retrained"
    shutil.copytree(evaluated_artefact, retrained)
    train_briefly(SCENARIO_DIR, WORKLOAD_FILE, tmp_path / "other", seed=1)
    shutil.copy(tmp_path / "other" / "policy.zip", retrained / "policy.zip")
    with pytest.raises(ValueError, match="other weights"):
        release_artefact(retrained, rules(tmp_path), path)


GENERAL = Path(__file__).resolve().parents[2] / "data" / "policies" / "general-v4"


def test_a_report_of_the_planner_packages_a_bento_that_serves_that_planner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, removed_afterwards: list[str]
) -> None:
    """``reach package --report`` of ``reach evaluate --plan-k``: the bento is built to plan exactly as judged."""
    import bentoml

    import flows.evaluation.gate
    import flows.release.packaging
    from flows.evaluation import evaluate
    from flows.evaluation.gate import Check, Verdict
    from flows.release.packaging import PLANNING_KEYS

    planning = {"plan_k": 2, "plan_horizon": 2, "plan_width": 4, "plan_margin": 2.0, "plan_noise": 0.2}
    report, _ = evaluate(SCENARIO_DIR, [WORKLOAD_FILE], GENERAL, [0], 1, ["steady"], **planning)
    path = tmp_path / "report.json"
    path.write_text(report.model_dump_json())
    monkeypatch.setattr(flows.release.packaging, "find_incumbent", lambda scenario, workload: None)
    passing = Verdict(passed=True, checks=[Check(rule="beat_noop", group="all", passed=True, detail="test")])
    monkeypatch.setattr(flows.evaluation.gate, "gate", lambda report, incumbent, rules: passing)
    _, tag = release_artefact(GENERAL, rules(tmp_path), path)
    assert tag is not None
    removed_afterwards.append(tag)
    bento = bentoml.bentos.get(tag)
    assert bento.info.labels["plan_k"] == "2"
    built = {key: bento.info.args[key] for key in PLANNING_KEYS}
    assert built == {
        "plan_k": "2", "plan_horizon": "2", "plan_width": "4", "plan_margin": "2", "plan_noise": "0.2",
        "plan_confidence": "1", "plan_slack": "16",  # the defaults, which the evaluation played and records
    }  # fmt: skip


def test_a_bento_build_that_fails_leaves_no_model_behind(
    evaluated_artefact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipeline retries packaging: a failed build must not leave a gated model without its bento each time."""
    import bentoml

    from flows.release.packaging import package

    def broken_build(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    import bentoml.bentos as bentos  # the module itself: ``bentoml.bentos`` is a lazy proxy of it

    before = {str(m.tag) for m in bentoml.models.list()}
    monkeypatch.setattr(bentos, "build_bentofile", broken_build)
    with pytest.raises(RuntimeError, match="disk full"):
        package(evaluated_artefact, True, "test")
    assert {str(m.tag) for m in bentoml.models.list()} == before


def test_an_incumbent_evaluated_on_other_start_states_is_evaluated_again_on_the_candidate_s(
    evaluated_artefact: Path, tmp_path: Path
) -> None:
    """The gate compares like for like only: an incumbent judged on seeds 0-1 is played again on the candidate's
    seeds 2-3 (its own weights, its report's planning); when that cannot run, its stored report comes back with
    why, and the gate refuses as not comparable."""
    from bento.artefact import read_metadata
    from flows.evaluation import evaluate
    from flows.evaluation.gate import GateRules, gate, not_comparable
    from flows.evaluation.report import EvaluationReport
    from flows.release.packaging import Incumbent, incumbent_like_for_like

    stored = EvaluationReport.model_validate(read_metadata(evaluated_artefact).evaluation_report)
    candidate, _ = evaluate(SCENARIO_DIR, [WORKLOAD_FILE], evaluated_artefact, [2, 3], 1, ["steady"])
    assert not_comparable(candidate, stored)
    found = Incumbent("reach-policy-service:old", str(evaluated_artefact), stored)
    again, note = incumbent_like_for_like(found, candidate, SCENARIO_DIR, [WORKLOAD_FILE])
    assert again is not None and again.settings["seeds"] == [2, 3] and not not_comparable(candidate, again)
    assert "evaluated again" in note and "reach-policy-service:old" in note
    assert incumbent_like_for_like(found, stored, SCENARIO_DIR, [WORKLOAD_FILE]) == (stored, "")  # already alike
    broken = Incumbent("reach-policy-service:gone", str(tmp_path / "no-model"), stored)
    kept, why = incumbent_like_for_like(broken, candidate, SCENARIO_DIR, [WORKLOAD_FILE])
    assert kept is stored and "could not evaluate the incumbent reach-policy-service:gone" in why
    verdict = gate(candidate, kept, GateRules(min_fraction_of_best_known=0.0, beat_noop=False, beat_random=False))
    assert not verdict.passed and any("not comparable" in c.detail for c in verdict.checks)
