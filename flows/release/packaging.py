"""Releases: package a gated policy as a bento, find the gated bento for a cluster, and the incumbent's report.

A release is a BentoML model (:func:`bento.store.save_policy`, carrying the policy card with the
evaluation report and the gate verdict) plus a bento built from ``bento/bentofile.yaml`` that
references it, labelled ``gate=passed|refused``, ``model``, ``scenario`` and ``workload`` (``*`` and
``max_nodes``/``max_slots`` for a general policy: :mod:`.selection`; ``plan_k`` when it is built to
decide with planning, which its stored evaluation must have played: :func:`check_gated_as_served`). The redeploy flow serves only
bentos labelled ``gate=passed`` that can serve the cluster asked for, and of those chooses none that a deploy
rejected (:mod:`.rejections`) unless it is named. Used by the pipeline and redeploy
flows, and by ``reach package`` (:func:`release_artefact`: gate and package an artefact trained outside
the pipeline).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bento.planning_settings import PLANNING_KEYS as PLANNING_KEYS  # re-exported: the bento arguments of planning
from flows.local.paths import repo_root

if TYPE_CHECKING:
    from flows.evaluation.gate import Verdict
    from flows.evaluation.report import EvaluationReport
    from flows.release.selection import Cluster

REPO_ROOT = repo_root()
BENTOFILE = REPO_ROOT / "bento" / "bentofile.yaml"


def evaluated_planning(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The planning an evaluation report's ``settings`` say its policy played: ``plan_*`` values, or {} (raw)."""
    from bento.planning_settings import settings_planning

    return settings_planning(settings).to_dict()


def check_gated_as_served(artefact_dir: str | Path, planning: Mapping[str, Any]) -> None:
    """Refuse (``ValueError`` naming both) to package a bento whose decisions are not the ones its gate judged.

    ``planning`` is what the bento will serve with (bento arguments ``plan_*``, {} = the raw policy); the
    report stored in the artefact (:func:`bento.artefact.write_evaluation`), on which the gate decided, must
    have played the same planner (``reach evaluate --plan-k``, the pipeline's ``plan_k``).
    """
    from bento.artefact import read_metadata
    from bento.planning_settings import PlanningSettings, gated_planning

    judged = gated_planning(read_metadata(artefact_dir).evaluation_report)
    if judged is None:
        return  # nothing was evaluated (a model packaged unevaluated): no gate judged any decision
    served = PlanningSettings.from_mapping(planning)
    if not served.same_decisions(judged):
        raise ValueError(
            f"{artefact_dir}: its gate judged {judged.describe()} but the bento would serve {served.describe()}; "
            "evaluate with the planning the bento serves (pipeline parameter plan_k, reach evaluate --plan-k) "
            "and gate that report"
        )


def package(artefact_dir: str | Path, passed: bool, reason: str, planning: Mapping[str, Any] | None = None) -> str:
    """Store the artefact as a model and build its bento; return the bento tag.

    With ``planning`` (``plan_k`` > 0 …) the bento decides with decision-time planning (its build arguments,
    label ``plan_k``); the artefact's stored evaluation must have played the same planner
    (:func:`check_gated_as_served`).
    """
    import bentoml

    from bento.policy import GateVerdict
    from bento.store import save_policy
    from flows.release.selection import release_labels

    planning = dict(planning or {})
    check_gated_as_served(artefact_dir, planning)
    model = save_policy(artefact_dir, gate=GateVerdict(passed=passed, reason=reason))  # stores nothing if it fails
    try:  # no model without its bento: whatever fails from here on (labels, arguments, the build) deletes it
        labels = release_labels(passed, str(model.tag), model.info.labels, model.info.metadata)
        arguments = {"model_tag": str(model.tag)}
        if planning.get("plan_k"):
            from bento.planning_settings import PlanningSettings

            arguments.update(PlanningSettings.from_mapping(planning).arguments())
            labels["plan_k"] = arguments["plan_k"]
        # BentoML builds from the service class, whose model reference is fixed by the bento arguments of
        # the import that created it: a process that packages a second model (the deployment runner, a
        # test session) would build the first model's reference again. Import the service afresh.
        sys.modules.pop("bento.service", None)
        bento = bentoml.bentos.build_bentofile(str(BENTOFILE), build_ctx=str(REPO_ROOT), labels=labels, args=arguments)
    except BaseException:  # an orphan model would pile up with every failed try (the pipeline's task retries)
        with contextlib.suppress(Exception):
            bentoml.models.delete(str(model.tag))
        raise
    return str(bento.tag)


def release_artefact(
    artefact_dir: str | Path, rules_file: str | Path, report_file: str | Path | None = None
) -> tuple[Verdict, str | None]:
    """Gate an already trained and evaluated artefact (``reach train`` + ``reach evaluate``) and package it.

    The candidate's report is ``report_file`` (a ``report.json`` of ``reach evaluate``, which must be of
    this artefact: same layout fingerprint) or else the one stored in the artefact's metadata; the
    incumbent is the serving (or newest gated) policy of the same scenario and workload. The bento serves
    what the gate judged: the raw policy, or the planner the report played (``reach evaluate --plan-k``:
    its ``plan_*`` settings become the bento's build arguments). The artefact
    directory is never written: a given report is stored in a copy. Returns the verdict and the bento tag
    (None when the gate refused: nothing is packaged then).
    """
    import shutil
    import tempfile

    from bento.artefact import policy_sha256, read_metadata, write_evaluation
    from flows.evaluation.gate import gate, load_gate_rules
    from flows.evaluation.report import EvaluationReport
    from flows.training.config import read_config

    rules = load_gate_rules(rules_file)  # a mistyped rules file is refused before the incumbent is evaluated
    metadata = read_metadata(artefact_dir)
    if report_file is not None:
        report = read_config(EvaluationReport, report_file)
        fingerprint = report.model.get("layout_fingerprint")
        if fingerprint != metadata.layout_fingerprint:
            raise ValueError(
                f"{report_file}: evaluates layout {fingerprint}, but {artefact_dir} has layout "
                f"{metadata.layout_fingerprint}; pass the report.json that `reach evaluate --model {artefact_dir}` wrote"
            )
        judged = report.model.get("policy_sha256")  # absent in reports written before 2026-11-30
        if judged is not None and judged != policy_sha256(artefact_dir):
            raise ValueError(
                f"{report_file}: evaluates other weights than {artefact_dir}/policy.zip (a fine-tune or a retrain "
                f"of the same layout?); pass the report.json that `reach evaluate --model {artefact_dir}` wrote"
            )
    elif (metadata.evaluation_report or {}).get("groups"):
        report = EvaluationReport.model_validate(metadata.evaluation_report)
    else:
        raise ValueError(
            f"{artefact_dir}: no evaluation report in metadata.json; evaluate it first "
            f"(reach evaluate --model {artefact_dir} --out <folder>) or pass --report <folder>/report.json"
        )
    incumbent, note = incumbent_like_for_like(
        find_incumbent(metadata.scenario_name, metadata.workload_name), report, *_report_files(report)
    )
    if note:
        print(f"reach package: {note}", file=sys.stderr)
    verdict = gate(report, incumbent, rules)
    if not verdict.passed:
        return verdict, None
    reason = f"{verdict.summary()} (gate rules {Path(rules_file).name})"
    planning = evaluated_planning(report.settings)  # the bento serves what the gate judged: raw or this planner
    if report_file is None:
        return verdict, package(artefact_dir, True, reason, planning)
    with tempfile.TemporaryDirectory(prefix="reach-release-") as scratch:
        copy = Path(scratch) / "policy"
        shutil.copytree(artefact_dir, copy)
        write_evaluation(copy, report.model_dump(mode="json"))
        return verdict, package(copy, True, reason, planning)


def _report_files(report: EvaluationReport) -> tuple[str, list[Path]]:
    """The scenario folder and workload files a report's groups name (names under data/, as ``reach evaluate`` takes
    them); an incumbent is evaluated again on them. A name that does not resolve leaves the list empty: the
    incumbent's evaluation then fails, and the gate refuses as not comparable, naming why."""
    from flows.local.paths import resolve_scenario, resolve_workload

    try:
        scenario_dir = resolve_scenario(report.groups[0].scenario)
        workloads = sorted({resolve_workload(g.workload, scenario_dir) for g in report.groups})
    except Exception:
        return report.groups[0].scenario if report.groups else "", []
    return str(scenario_dir), workloads


def gated_bentos() -> list[Any]:
    """Bentos whose gate passed, newest first."""
    import bentoml

    bentos = [b for b in bentoml.bentos.list() if b.info.labels.get("gate") == "passed"]
    return sorted(bentos, key=lambda b: b.info.creation_time, reverse=True)


def newest_gated_bento(exclude: str | None = None) -> str | None:
    """The newest gated bento of any cluster other than ``exclude``, or None (``reach images build``'s default;
    serving chooses by cluster: :func:`gated_bento_for`)."""
    return next((str(b.tag) for b in gated_bentos() if str(b.tag) != exclude), None)


def bento_labels(tag: str) -> dict[str, str]:
    """The labels of a bento in the store; ``ValueError`` naming the tag when there is none."""
    import bentoml

    try:
        return dict(bentoml.bentos.get(tag).info.labels)
    except bentoml.exceptions.NotFound:
        raise ValueError(f"no bento {tag} in the BentoML store (`bentoml list` shows them)") from None


def ranked_gated(cluster: Cluster, rejected_too: bool = False) -> list[str]:
    """The gated bentos that can serve ``cluster`` in :func:`.selection.ranked` order (newest first), without those
    a deploy rejected (:mod:`.rejections`: a failed canary, a rollback) unless ``rejected_too``."""
    from flows.release.rejections import rejected
    from flows.release.selection import ranked

    tags = ranked(((str(b.tag), b.info.labels) for b in gated_bentos()), cluster)
    if rejected_too:
        return tags
    skipped = rejected()
    return [tag for tag in tags if tag not in skipped]


def gated_bento_for(cluster: Cluster, exclude: str | None = None) -> str | None:
    """The newest gated bento that can serve ``cluster`` (:mod:`.selection`), other than ``exclude`` and other than
    one a deploy rejected (:mod:`.rejections`: a failed canary, a rollback); or None."""
    from flows.release.rejections import rejected
    from flows.release.selection import choose

    skipped = rejected()
    return choose(((str(b.tag), b.info.labels) for b in gated_bentos() if str(b.tag) not in skipped), cluster, exclude)


def rejected_for(cluster: Cluster) -> str:
    """What :func:`gated_bento_for` skipped for ``cluster`` (rejected bentos that could serve it, each with its
    reason) and how to deploy one again; "" when it skipped none."""
    from flows.release.rejections import rejected

    entries = rejected()
    skipped = [tag for tag in ranked_gated(cluster, rejected_too=True) if tag in entries]
    if not skipped:
        return ""
    return (
        "skipped as rejected by an earlier deploy ("
        + "; ".join(f"{tag}, {entries[tag].describe()}" for tag in skipped)
        + f"); `reach deploy --bento {skipped[0]}` deploys one of them again and re-admits it"
    )


@dataclass(frozen=True)
class Incumbent:
    """The policy a candidate must not be worse than: its bento, its stored model's folder and its report."""

    bento: str
    model_dir: str  # the stored model (policy.zip + metadata.json), loadable by bento.artefact.load_artefact
    report: EvaluationReport


def find_incumbent(scenario: str, workload: str) -> Incumbent | None:
    """The incumbent of this scenario and workload, or None.

    The incumbent is the policy serving this cluster (the endpoint file records which cluster a
    deployment serves; also while its server is down), else the first gated bento that can serve it in
    :func:`.selection.ranked` order (with an evaluation report) that no deploy rejected (:mod:`.rejections`).
    A policy serving another cluster is never the incumbent.
    """
    import bentoml
    from pydantic import ValidationError

    from flows.evaluation.report import EvaluationReport
    from flows.release.selection import cluster_of
    from flows.release.serving import recorded_endpoint

    cluster = cluster_of(scenario, workload, strict=False)
    endpoint = recorded_endpoint()  # the deployment of this cluster also while its server is down (reach down)
    candidates = [endpoint.bento] if endpoint is not None and endpoint.serves(cluster) else []
    candidates += ranked_gated(cluster)  # a bento a deploy rejected is no bar for its successor
    for tag in candidates:
        try:
            model = bentoml.models.get(bentoml.bentos.get(tag).info.labels["model"])
            evaluation = model.info.metadata.get("evaluation")
        except (bentoml.exceptions.NotFound, KeyError):
            continue
        try:
            return Incumbent(tag, str(model.path), EvaluationReport.model_validate(evaluation))
        except ValidationError:  # no report, or a note instead of one (a policy packaged unevaluated)
            continue
    return None


def incumbent_like_for_like(
    found: Incumbent | None,
    report: EvaluationReport,
    scenario_dir: str | Path,
    workload_files: list[Path],
    run_units: Callable[[list[Any]], list[Any]] | None = None,
) -> tuple[EvaluationReport | None, str]:
    """The incumbent's report to gate ``report`` against, on the candidate's own start states; and a note.

    The stored report serves when every group both share started from the same states
    (:func:`flows.evaluation.gate.not_comparable`). Otherwise (other seeds or episodes, or a workload
    re-profiled since) the incumbent is evaluated again here on the candidate's seeds, episodes and
    families (plus any family its stored report was judged on for these clusters), playing the planning its report says it played; ``run_units`` runs the units (the
    pipeline's task runner; default: one after another). Should that fail, the stored report comes
    back, the note says why, and the gate refuses the candidate as not comparable: never a guess.
    """
    from flows.evaluation import report_from_records
    from flows.evaluation.gate import not_comparable
    from flows.evaluation.report import episode_settings
    from flows.evaluation.units import evaluate_unit, plan_units

    if found is None:
        return None, ""
    apart = not_comparable(report, found.report)
    if not apart:
        return found.report, ""
    # The incumbent plays its own planning, in episodes played as the candidate's were (max_steps, step cost).
    planning = {**evaluated_planning(found.report.settings), **episode_settings(report.settings)}
    seeds, episodes = list(report.settings["seeds"]), int(report.settings["episodes"])
    families = list(report.settings.get("families") or sorted({g.family for g in report.groups}))
    # A family the incumbent was judged on for these clusters is evaluated again too, so that a candidate
    # that skipped it fails the gate (flows.evaluation.gate) whether or not the stored report could serve.
    clusters = {g.key[:2] for g in report.groups}
    families += sorted({g.family for g in found.report.groups if g.key[:2] in clusters} - set(families))
    try:
        if not workload_files:
            raise ValueError(f"the candidate's scenario or workloads are not found by name ({scenario_dir})")
        units = plan_units(scenario_dir, list(workload_files), families, seeds, episodes, found.model_dir, **planning)
        records = run_units(units) if run_units is not None else [r for u in units for r in evaluate_unit(u)]
        settings = {"seeds": seeds, "episodes": episodes, "families": families, **planning}
        again = report_from_records(found.model_dir, records, settings)
    except Exception as exc:  # the gate then refuses on the stored report, saying why
        return found.report, f"could not evaluate the incumbent {found.bento} on the candidate's start states: {exc}"
    return (
        again,
        f"the incumbent {found.bento} was evaluated again on the candidate's start states ({'; '.join(apart)})",
    )


def incumbent_report(scenario: str, workload: str) -> EvaluationReport | None:
    """The evaluation report of the incumbent of this scenario and workload (:func:`find_incumbent`), or None."""
    incumbent = find_incumbent(scenario, workload)
    return None if incumbent is None else incumbent.report
