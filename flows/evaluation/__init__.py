"""Evaluation of a policy against the baselines on held-out start states, and the gate.

:func:`evaluate` plans the (workload, family, seed) units (:mod:`flows.evaluation.units`), runs
them one after another (a Prefect flow maps :func:`evaluate_unit` over the same units instead) and
summarises the records into an :class:`EvaluationReport` (:mod:`flows.evaluation.report`);
:mod:`flows.evaluation.gate` decides from reports whether a candidate may replace the incumbent;
:mod:`flows.evaluation.placements` evaluates single placements for ``reach sim``. Used by ``reach
evaluate``/``gate``, the trainer's final report, the pipeline and the benchmarks. It imports ceenv,
bento (to load policies) and flows.training; never flows.release, flows.loop or the CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from flows.evaluation.episodes import FAMILIES, EpisodeRecord, Family
from flows.evaluation.report import EvaluationReport, summarize
from flows.evaluation.seeds import EPISODE_STRIDE, TEST_SEED_BASE
from flows.evaluation.units import EvalUnit, evaluate_unit, plan_units

MIN_SEEDS = 5

__all__ = [
    "FAMILIES",
    "EvalUnit",
    "EvaluationReport",
    "evaluate",
    "evaluate_unit",
    "plan_units",
    "report_from_records",
]


def evaluate(
    scenario_dir: str | Path,
    workload_files: list[str | Path],
    model_dir: str | Path | None,
    seeds: list[int],
    episodes: int,
    families: list[Family] | None = None,
    policy: Any = None,
    progress: Callable[[int, int, EvalUnit | None], None] | None = None,
    **settings: Any,
) -> tuple[EvaluationReport, list[EpisodeRecord]]:
    """Evaluate the artefact in ``model_dir`` (or ``policy``) and the baselines; return report and records.

    Bad settings (no seeds, duplicates, a family this cluster cannot have…) raise ``ValueError`` before any work.
    ``progress(done, total, unit)`` is called once before the first unit (``unit`` None) and after each one.
    """
    families = families or ["steady"]
    units = plan_units(scenario_dir, workload_files, families, seeds, episodes, model_dir, **settings)
    records: list[EpisodeRecord] = []
    if progress is not None:
        progress(0, len(units), None)
    for done, unit in enumerate(units, 1):
        records.extend(evaluate_unit(unit, policy))
        if progress is not None:
            progress(done, len(units), unit)
    settings = {"seeds": seeds, "episodes": episodes, "families": list(families), **settings}
    return report_from_records(model_dir, records, settings), records


def report_from_records(
    model_dir: str | Path | None, records: list[EpisodeRecord], settings: dict[str, Any]
) -> EvaluationReport:
    """Summarise the records of all units (e.g. gathered from mapped Prefect tasks) into a report.

    ``settings`` should carry at least ``seeds`` and ``episodes``; the seed split is added here. With
    ``plan_k`` > 0, every planning setting the units played is recorded, the defaults of those not given
    included: a report names all of its planner (a report without ``plan_noise`` is read as one written
    before the noise charge existed, ``bento.planning_settings.settings_planning``).
    """
    from bento.planning_settings import PlanningSettings
    from ceenv.search import CEILING

    if int(float(settings.get("plan_k") or 0)) > 0:
        settings = {**settings, **PlanningSettings.from_mapping(settings).to_dict()}
    model: dict[str, Any] = {}
    if model_dir is not None:
        from bento.artefact import policy_sha256, read_metadata

        metadata = read_metadata(model_dir)
        model = {
            "directory": str(model_dir),
            "layout_fingerprint": metadata.layout_fingerprint,
            "policy_sha256": policy_sha256(model_dir),  # the weights judged (reach package checks it)
            "scenario": metadata.scenario_name,
            "workload": metadata.workload_name,
            "training_summary": metadata.training_summary,
        }
    seeds = sorted({r.seed for r in records})
    return EvaluationReport(
        model=model,
        settings={
            "seeds": seeds,
            "seed_range": f"{TEST_SEED_BASE} + seed × {EPISODE_STRIDE} + episode",
            "min_seeds_met": len(seeds) >= MIN_SEEDS,
            **settings,
            "best_known": CEILING,  # the records' ceiling: the one this code computes
        },
        groups=summarize(records),
    )
