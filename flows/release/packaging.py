"""Releases: package a gated policy as a bento, find the newest gated bento, and the incumbent's report.

A release is a BentoML model (:func:`bento.store.save_policy`, carrying the policy card with the
evaluation report and the gate verdict) plus a bento built from ``bento/bentofile.yaml`` that
references it, labelled ``gate=passed|refused``, ``model``, ``scenario`` and ``workload``. The
redeploy flow serves only bentos labelled ``gate=passed``. Used by the pipeline and redeploy flows, and by
``reach package`` (:func:`release_artefact`: gate and package an artefact trained outside the pipeline).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.local.paths import repo_root

if TYPE_CHECKING:
    from flows.evaluation.gate import Verdict
    from flows.evaluation.report import EvaluationReport

REPO_ROOT = repo_root()
BENTOFILE = REPO_ROOT / "bento" / "bentofile.yaml"


def package(artefact_dir: str | Path, passed: bool, reason: str) -> str:
    """Store the artefact as a model and build its bento; return the bento tag."""
    import bentoml

    from bento.policy import GateVerdict
    from bento.store import save_policy

    model = save_policy(artefact_dir, gate=GateVerdict(passed=passed, reason=reason))
    labels = {
        "gate": "passed" if passed else "refused",
        "model": str(model.tag),
        "scenario": model.info.labels.get("scenario", ""),
        "workload": model.info.labels.get("workload", ""),
    }
    bento = bentoml.bentos.build_bentofile(
        str(BENTOFILE), build_ctx=str(REPO_ROOT), labels=labels, args={"model_tag": str(model.tag)}
    )
    return str(bento.tag)


def release_artefact(
    artefact_dir: str | Path, rules_file: str | Path, report_file: str | Path | None = None
) -> tuple[Verdict, str | None]:
    """Gate an already trained and evaluated artefact (``reach train`` + ``reach evaluate``) and package it.

    The candidate's report is ``report_file`` (a ``report.json`` of ``reach evaluate``, which must be of
    this artefact: same layout fingerprint) or else the one stored in the artefact's metadata; the
    incumbent is the serving (or newest gated) policy of the same scenario and workload. The artefact
    directory is never written: a given report is stored in a copy. Returns the verdict and the bento tag
    (None when the gate refused: nothing is packaged then).
    """
    import shutil
    import tempfile

    from bento.artefact import read_metadata, write_evaluation
    from flows.evaluation.gate import gate, load_gate_rules
    from flows.evaluation.report import EvaluationReport
    from flows.training.config import read_config

    metadata = read_metadata(artefact_dir)
    if report_file is not None:
        report = read_config(EvaluationReport, report_file)
        fingerprint = report.model.get("layout_fingerprint")
        if fingerprint != metadata.layout_fingerprint:
            raise ValueError(
                f"{report_file}: evaluates layout {fingerprint}, but {artefact_dir} has layout "
                f"{metadata.layout_fingerprint}; pass the report.json that `reach evaluate --model {artefact_dir}` wrote"
            )
    elif (metadata.evaluation_report or {}).get("groups"):
        report = EvaluationReport.model_validate(metadata.evaluation_report)
    else:
        raise ValueError(
            f"{artefact_dir}: no evaluation report in metadata.json; evaluate it first "
            f"(reach evaluate --model {artefact_dir} --out <folder>) or pass --report <folder>/report.json"
        )
    incumbent = incumbent_report(metadata.scenario_name, metadata.workload_name)
    verdict = gate(report, incumbent, load_gate_rules(rules_file))
    if not verdict.passed:
        return verdict, None
    reason = f"{verdict.summary()} (gate rules {Path(rules_file).name})"
    if report_file is None:
        return verdict, package(artefact_dir, True, reason)
    with tempfile.TemporaryDirectory(prefix="reach-release-") as scratch:
        copy = Path(scratch) / "policy"
        shutil.copytree(artefact_dir, copy)
        write_evaluation(copy, report.model_dump(mode="json"))
        return verdict, package(copy, True, reason)


def gated_bentos() -> list[Any]:
    """Bentos whose gate passed, newest first."""
    import bentoml

    bentos = [b for b in bentoml.bentos.list() if b.info.labels.get("gate") == "passed"]
    return sorted(bentos, key=lambda b: b.info.creation_time, reverse=True)


def newest_gated_bento(exclude: str | None = None) -> str | None:
    """The tag of the newest gated bento other than ``exclude`` (the one serving), or None."""
    for bento in gated_bentos():
        if str(bento.tag) != exclude:
            return str(bento.tag)
    return None


def incumbent_report(scenario: str, workload: str) -> EvaluationReport | None:
    """The evaluation report of the serving policy, else of the newest gated bento for this scenario/workload."""
    import bentoml

    from flows.evaluation.report import EvaluationReport
    from flows.release.serving import current_endpoint

    endpoint = current_endpoint()
    candidates = [endpoint.bento] if endpoint is not None else []
    candidates += [
        str(b.tag)
        for b in gated_bentos()
        if b.info.labels.get("scenario") == scenario and b.info.labels.get("workload") == workload
    ]
    for tag in candidates:
        try:
            model_tag = bentoml.bentos.get(tag).info.labels["model"]
            evaluation = bentoml.models.get(model_tag).info.metadata.get("evaluation")
        except (bentoml.exceptions.NotFound, KeyError):
            continue
        if evaluation:
            return EvaluationReport.model_validate(evaluation)
    return None
