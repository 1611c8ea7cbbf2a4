"""The evaluation gate: may a candidate policy replace the incumbent?

:func:`gate` is a pure function of the candidate's evaluation report, the incumbent's report (or
``None`` when nothing is deployed yet) and :class:`GateRules` (``data/gate/default.json``, validated
by :func:`load_gate_rules`). It returns a :class:`Verdict` whose checks each say what was compared,
the numbers and whether it passed; the candidate passes only if every check passes. Used by
``reach gate`` and, later, the Prefect flow before packaging and redeploying.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from flows.evaluation.episodes import fraction_of_best_known
from flows.evaluation.report import EvaluationReport, GroupReport, MethodStats, episode_settings
from flows.training.config import read_config


class GateRules(BaseModel):
    """The promotion rules; every field has a safe default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    beat_noop: bool = Field(
        True,
        description="Policy mean end latency < no-op's in every group evaluated (a tie passes where the "
        "best-known search finds nothing better than the start).",
    )
    beat_random: bool = Field(
        True, description="Policy mean end latency < random's in every group evaluated (ties as for beat_noop)."
    )
    beat_greedy: bool = Field(False, description="Policy mean end latency <= greedy's in every group (off by default).")
    min_fraction_of_best_known: float = Field(
        0.9,
        ge=0,
        le=1.5,
        description="Minimum fraction of the best-known latency reduction, in every group: both the mean over "
        "seeds (the report's figure) and the pooled one (all reductions / all best-known reductions), so one "
        "seed where best-known finds almost nothing cannot carry the rest. Reports without the totals: mean only.",
    )
    min_seeds: int = Field(
        1,
        ge=1,
        description="Fewest evaluation seeds the policy must have been played on, in every group (1 = any; "
        "docs/training.md recommends at least 5).",
    )
    max_invalid_actions: int = Field(0, ge=0, description="Most invalid actions allowed over the whole evaluation.")
    incumbent_tolerance_pct: float = Field(
        1.0,
        ge=0,
        description="Candidate mean end latency may exceed the incumbent's by at most this % per shared group "
        "(a group the incumbent was judged on and the candidate lacks fails).",
    )
    require_incumbent: bool = Field(
        False, description="Refuse when no incumbent report is given (false: first deploy passes)."
    )


class Check(BaseModel):
    rule: str
    group: str
    passed: bool
    detail: str


class Verdict(BaseModel):
    passed: bool
    checks: list[Check]

    @property
    def reasons(self) -> list[str]:
        """One line per check, failures first."""
        ordered = sorted(self.checks, key=lambda c: c.passed)
        return [f"{'PASS' if c.passed else 'FAIL'} {c.rule} [{c.group}]: {c.detail}" for c in ordered]

    def summary(self) -> str:
        failed = [c for c in self.checks if not c.passed]
        if not failed:
            return f"passed all {len(self.checks)} checks"
        return f"refused: {len(failed)} of {len(self.checks)} checks failed ({', '.join(sorted({c.rule for c in failed}))})"


def load_gate_rules(path: str | Path) -> GateRules:
    """Gate rules from a JSON file; errors name the file, field, value and fix."""
    return read_config(GateRules, path)


def _name(group: GroupReport) -> str:
    return "/".join(group.key)


def _beats(group: GroupReport, rule: str, baseline: str, strict: bool) -> Check:
    policy = group.methods["policy"].mean_end_latency_ms.mean
    if baseline not in group.methods:
        return Check(
            rule=rule,
            group=_name(group),
            passed=False,
            detail=f"no {baseline} results in the report; re-run the evaluation with it",
        )
    other = group.methods[baseline].mean_end_latency_ms.mean
    ok = policy < other if strict else policy <= other
    detail = f"policy {policy:.2f} ms vs {baseline} {other:.2f} ms"
    if strict and not ok and policy <= other + _TIE_MS and _nothing_to_gain(group):
        ok, detail = True, detail + " (a tie: no placement here beats the start, not even the best-known search's)"
    return Check(rule=rule, group=_name(group), passed=ok, detail=detail)


_TIE_MS = 1e-9


def _nothing_to_gain(group: GroupReport) -> bool:
    """The best-known search found no placement better than the start states (so no policy can beat no-op)."""
    best, noop = group.methods.get("best_known"), group.methods.get("noop")
    if best is None or noop is None:
        return False
    return best.mean_end_latency_ms.mean >= noop.mean_end_latency_ms.mean - _TIE_MS


def _group_checks(group: GroupReport, rules: GateRules) -> list[Check]:
    name = _name(group)
    if "policy" not in group.methods:
        return [Check(rule="policy_evaluated", group=name, passed=False, detail="the report has no policy results")]
    checks = []
    if rules.beat_noop:
        checks.append(_beats(group, "beat_noop", "noop", strict=True))
    if rules.beat_random:
        checks.append(_beats(group, "beat_random", "random", strict=True))
    if rules.beat_greedy:
        checks.append(_beats(group, "beat_greedy", "greedy", strict=False))
    checks.append(_fraction_check(group.methods["policy"], name, rules.min_fraction_of_best_known))
    if rules.min_seeds > 1:
        seeds = group.methods["policy"].seeds
        checks.append(
            Check(
                rule="min_seeds",
                group=name,
                passed=seeds >= rules.min_seeds,
                detail=f"{seeds} evaluation seeds, need >= {rules.min_seeds}; evaluate more seeds (--seeds)",
            )
        )
    return checks


def pooled_fraction(stats: MethodStats) -> float | None:
    """All reductions / all best-known reductions of the group (None for a report without the totals)."""
    if stats.total_reduction_ms is None or stats.total_best_known_reduction_ms is None:
        return None
    return fraction_of_best_known(stats.total_reduction_ms, stats.total_best_known_reduction_ms)


def _fraction_check(stats: MethodStats, name: str, need: float) -> Check:
    """The mean over seeds must reach ``need``, and so must the pooled fraction where the report has it.

    The mean alone lets one seed where best-known finds almost nothing (a tiny denominator) outweigh
    every other seed; the pooled fraction weighs every millisecond alike.
    """
    mean = stats.fraction_of_best_known.mean
    pooled = pooled_fraction(stats)
    if pooled is None:
        return Check(
            rule="min_fraction_of_best_known",
            group=name,
            passed=mean >= need,
            detail=f"{mean:.3f} of the best-known reduction, need >= {need:.3f}",
        )
    return Check(
        rule="min_fraction_of_best_known",
        group=name,
        passed=mean >= need and pooled >= need,
        detail=f"{mean:.3f} of the best-known reduction (mean over seeds), {pooled:.3f} pooled over all episodes; "
        f"need >= {need:.3f} for both",
    )


def _not_like_for_like(ours: GroupReport, theirs: GroupReport) -> str:
    """Why two reports' group did not start from the same states ('' when they did).

    Start latencies are a deterministic function of the start states, so equal episode counts and
    equal mean start latencies mean the same seeds and episodes on the same cluster and application;
    a changed workload (new profiles), other seeds or other episode counts show up here.
    """
    mine, other = ours.methods["policy"], theirs.methods["policy"]
    if (mine.episodes, mine.seeds) != (other.episodes, other.seeds):
        return (
            f"the candidate ran {mine.seeds} seeds x {mine.episodes} episodes, the incumbent "
            f"{other.seeds} seeds x {other.episodes} episodes"
        )
    a, b = mine.mean_start_latency_ms, other.mean_start_latency_ms
    if abs(a - b) > 1e-6 * max(abs(a), abs(b), 1.0):
        return f"the mean start latency is {a:.3f} ms for the candidate and {b:.3f} ms for the incumbent (other states)"
    return ""


def _played_apart(report: EvaluationReport, incumbent: EvaluationReport) -> str:
    """How the two reports played their episodes differently (``max_steps``, ``step_cost_ms``; '' when alike)."""
    ours, other = episode_settings(report.settings), episode_settings(incumbent.settings)
    played = [f"{name} {ours[name]:g} for the candidate, {other[name]:g} for the incumbent" for name in ours
              if float(ours[name]) != float(other[name])]  # fmt: skip
    return f"episodes played with {'; '.join(played)}" if played else ""


def not_comparable(report: EvaluationReport, incumbent: EvaluationReport) -> list[str]:
    """Per group both reports share, why the incumbent's numbers did not come from the candidate's start
    states ([] when every shared group is like for like, or none is shared); first, when the two played their
    episodes differently (another ``max_steps`` or ``step_cost_ms``), that, for every group."""
    theirs = {g.key: g for g in incumbent.groups if "policy" in g.methods}
    played = _played_apart(report, incumbent)
    if played and any(g.key in theirs for g in report.groups):
        return [f"every group: {played}"]
    return [
        f"{_name(g)}: {apart}"
        for g in report.groups
        if g.key in theirs and "policy" in g.methods and (apart := _not_like_for_like(g, theirs[g.key]))
    ]


def _incumbent_checks(report: EvaluationReport, incumbent: EvaluationReport | None, rules: GateRules) -> list[Check]:
    if incumbent is None:
        ok = not rules.require_incumbent
        detail = "no incumbent report: " + (
            "required by the rules" if not ok else "first deployment, nothing to compare"
        )
        return [Check(rule="not_worse_than_incumbent", group="all", passed=ok, detail=detail)]
    theirs = {g.key: g for g in incumbent.groups if "policy" in g.methods}
    shared = [g for g in report.groups if g.key in theirs and "policy" in g.methods]
    checks = _lacking(report, theirs)
    if not shared:
        return [
            Check(
                rule="not_worse_than_incumbent",
                group="all",
                passed=False,
                detail="the incumbent report shares no (scenario, workload, family) group; evaluate both on the same groups",
            ),
            *checks,
        ]
    played = _played_apart(report, incumbent)
    for group in shared:
        apart = played or _not_like_for_like(group, theirs[group.key])
        if apart:
            checks.append(
                Check(
                    rule="not_worse_than_incumbent",
                    group=_name(group),
                    passed=False,
                    detail=f"not comparable: {apart}; evaluate the incumbent on the candidate's start states "
                    "(same seeds, episodes, scenario and workload files); the pipeline does so itself",
                )
            )
            continue
        ours = group.methods["policy"].mean_end_latency_ms.mean
        limit_ms = theirs[group.key].methods["policy"].mean_end_latency_ms.mean * (
            1 + rules.incumbent_tolerance_pct / 100
        )
        checks.append(
            Check(
                rule="not_worse_than_incumbent",
                group=_name(group),
                passed=ours <= limit_ms,
                detail=f"candidate {ours:.2f} ms vs incumbent limit {limit_ms:.2f} ms (+{rules.incumbent_tolerance_pct}%)",
            )
        )
    return checks


def _lacking(report: EvaluationReport, theirs: dict[tuple[str, str, str], GroupReport]) -> list[Check]:
    """A failed check per group the incumbent was judged on and the candidate was not: skipping a family
    (or a workload) the incumbent passed must not make a candidate look no worse."""
    ours = {g.key for g in report.groups if "policy" in g.methods}
    return [
        Check(
            rule="not_worse_than_incumbent",
            group=_name(group),
            passed=False,
            detail="the incumbent was judged on this group and the candidate was not; evaluate the candidate on "
            "it too (the same families and workloads)",
        )
        for key, group in theirs.items()
        if key not in ours
    ]


def gate(report: EvaluationReport, incumbent: EvaluationReport | None, rules: GateRules) -> Verdict:
    """Decide whether ``report``'s policy may replace ``incumbent``'s; every reason is in the verdict."""
    if not report.groups:
        return Verdict(
            passed=False,
            checks=[Check(rule="report_not_empty", group="all", passed=False, detail="the report has no groups")],
        )
    checks = [c for g in report.groups for c in _group_checks(g, rules)]
    invalid = sum(g.methods["policy"].invalid_actions for g in report.groups if "policy" in g.methods)
    checks.append(
        Check(
            rule="max_invalid_actions",
            group="all",
            passed=invalid <= rules.max_invalid_actions,
            detail=f"{invalid} invalid actions, at most {rules.max_invalid_actions} allowed",
        )
    )
    checks.extend(_incumbent_checks(report, incumbent, rules))
    return Verdict(passed=all(c.passed for c in checks), checks=checks)
