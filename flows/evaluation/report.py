"""The evaluation report: per-group, per-method statistics with confidence intervals over seeds.

A *group* is one (scenario, workload, family). For every method in a group the report gives mean
and p95 end latency, latency reduction vs the start (%), the fraction of the best-known reduction,
moves per episode, decision time per move and the invalid-action count, and the totals of the
latency reductions and best-known reductions over all episodes (the gate's pooled fraction). Means
come with 95 % confidence intervals over the evaluation seeds (Student t on the per-seed means), so
at least two seeds are needed for an interval and five are the documented minimum. The pydantic models are the
JSON format that ``reach gate`` reads. Used by :func:`flows.evaluation.evaluate` and the gate.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from ceenv.simulator import DEFAULT_STEP_COST_MS
from flows.evaluation.episodes import EpisodeRecord, fraction_of_best_known
from flows.loop.stats import t_quantile_975

REPORT_FORMAT = 1
# How an episode is played (flows.evaluation.units.EvalUnit): a report that names neither played these.
EPISODE_DEFAULTS: dict[str, float] = {"max_steps": 100, "step_cost_ms": DEFAULT_STEP_COST_MS}
CI_LEVEL = 0.95


class Estimate(BaseModel):
    """A mean over seeds with its 95 % confidence interval (equal to the mean with one seed)."""

    mean: float
    ci_low: float
    ci_high: float


class MethodStats(BaseModel):
    method: str
    episodes: int
    seeds: int
    mean_end_latency_ms: Estimate
    p95_end_latency_ms: float
    mean_start_latency_ms: float
    reduction_pct: Estimate = Field(description="Mean latency reduction vs the start, % of the start latency.")
    fraction_of_best_known: Estimate = Field(description="Sum of reductions / sum of best-known reductions, per seed.")
    total_reduction_ms: float | None = Field(
        None,
        description="Sum of the latency reductions over all seeds and episodes (None in reports written before it).",
    )
    total_best_known_reduction_ms: float | None = Field(
        None,
        description="Sum of the best-known reductions over the same episodes (the gate's pooled fraction: "
        "total_reduction_ms / this; None in reports written before it).",
    )
    moves_per_episode: Estimate
    decision_ms_per_move: float = Field(description="Total decision time / total moves (per episode if no move).")
    invalid_actions: int


class GroupReport(BaseModel):
    scenario: str
    workload: str
    family: str
    methods: dict[str, MethodStats]

    @property
    def key(self) -> tuple[str, str, str]:
        return self.scenario, self.workload, self.family


class EvaluationReport(BaseModel):
    report_format: int = REPORT_FORMAT
    model: dict[str, Any] = Field(
        default_factory=dict, description="Artefact directory, fingerprint, training summary."
    )
    settings: dict[str, Any] = Field(default_factory=dict, description="Seeds, episodes, families, seed split.")
    groups: list[GroupReport]


def estimate(per_seed: list[float]) -> Estimate:
    """Mean and 95 % t-interval of per-seed values."""
    values = np.asarray(per_seed, dtype=float)
    mean = float(values.mean())
    if values.size < 2:
        return Estimate(mean=mean, ci_low=mean, ci_high=mean)
    df = values.size - 1
    t = t_quantile_975(df)
    half = t * float(values.std(ddof=1)) / np.sqrt(values.size)
    return Estimate(mean=mean, ci_low=mean - half, ci_high=mean + half)


def _method_stats(method: str, rows: list[EpisodeRecord], best_by_episode: dict[tuple[int, int], float]) -> MethodStats:
    by_seed: dict[int, list[EpisodeRecord]] = defaultdict(list)
    for r in rows:
        by_seed[r.seed].append(r)
    seeds = sorted(by_seed)

    def per_seed(fn: Any) -> Estimate:
        return estimate([fn(by_seed[s]) for s in seeds])

    def reduction_ms(rs: list[EpisodeRecord]) -> float:
        return sum(r.start_latency_ms - r.end_latency_ms for r in rs)

    def best_reduction_ms(rs: list[EpisodeRecord]) -> float:
        return sum(max(best_by_episode[(r.seed, r.episode)], 0.0) for r in rs)

    def fraction(rs: list[EpisodeRecord]) -> float:
        return fraction_of_best_known(reduction_ms(rs), best_reduction_ms(rs))

    moves = sum(r.moves for r in rows)
    seconds = sum(r.decision_seconds for r in rows)
    return MethodStats(
        method=method,
        episodes=len(rows),
        seeds=len(seeds),
        mean_end_latency_ms=per_seed(lambda rs: float(np.mean([r.end_latency_ms for r in rs]))),
        p95_end_latency_ms=float(np.percentile([r.end_latency_ms for r in rows], 95)),
        mean_start_latency_ms=float(np.mean([r.start_latency_ms for r in rows])),
        reduction_pct=per_seed(
            lambda rs: float(np.mean([100 * (1 - r.end_latency_ms / r.start_latency_ms) for r in rs]))
        ),
        fraction_of_best_known=per_seed(fraction),
        total_reduction_ms=reduction_ms(rows),
        total_best_known_reduction_ms=best_reduction_ms(rows),
        moves_per_episode=per_seed(lambda rs: float(np.mean([r.moves for r in rs]))),
        decision_ms_per_move=1000 * seconds / (moves if moves else len(rows)),
        invalid_actions=sum(r.invalid_actions for r in rows),
    )


def summarize(records: list[EpisodeRecord]) -> list[GroupReport]:
    """Group the records by (scenario, workload, family) and compute every method's statistics."""
    groups: dict[tuple[str, str, str], list[EpisodeRecord]] = defaultdict(list)
    for r in records:
        groups[(r.scenario, r.workload, r.family)].append(r)
    reports = []
    for (scenario, workload, family), rows in groups.items():
        best = {(r.seed, r.episode): r.start_latency_ms - r.end_latency_ms for r in rows if r.method == "best_known"}
        if not best:
            raise ValueError(f"group {scenario}/{workload}/{family} has no best_known records; the fraction needs them")
        methods: dict[str, list[EpisodeRecord]] = defaultdict(list)
        for r in rows:
            methods[r.method].append(r)
        stats = {m: _method_stats(m, rs, best) for m, rs in methods.items()}
        reports.append(GroupReport(scenario=scenario, workload=workload, family=family, methods=stats))
    return reports


def episode_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """How a report's episodes were played: ``max_steps`` and ``step_cost_ms`` from its settings, else the defaults."""
    return {name: settings.get(name, default) for name, default in EPISODE_DEFAULTS.items()}
