"""Releases: package a gated policy as a bento, find the newest gated bento, and the incumbent's report.

A release is a BentoML model (:func:`bento.store.save_policy`, carrying the policy card with the
evaluation report and the gate verdict) plus a bento built from ``bento/bentofile.yaml`` that
references it, labelled ``gate=passed|refused``, ``model``, ``scenario`` and ``workload``. The
redeploy flow serves only bentos labelled ``gate=passed``. Used by the pipeline and redeploy flows.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flows.evaluation.report import EvaluationReport

REPO_ROOT = Path(__file__).resolve().parents[1]
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
    from flows.serving import current_endpoint

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
