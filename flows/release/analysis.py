"""The analysis rule of a redeploy: is the latency under the new policy worse than under the incumbent?

In the style of Argo Rollouts' analysis runs, applied to policies: after a blue/green switch the
redeploy flow measures the application's latency (a PromQL query, the migrator's
``latency_query`` setting) during a short period under the new policy and compares it with the
incumbent's last period of the same length. :func:`decide` is the pure rule on those two sample
lists: with fewer than ``min_samples`` on either side the analysis is *inconclusive*; otherwise the
new policy *fails* when its statistic (median by default) exceeds the incumbent's by more than
``tolerance_pct`` percent, and *passes* otherwise. A failure always rolls back. An inconclusive
analysis rolls back when the incumbent was measured but the new policy was not (the metric vanished
after the switch: never trust what was not measured) unless ``on_inconclusive`` is ``keep``; when
the incumbent was not measured either (no application, no metric) there is no evidence for or
against, and the new policy stays.
:class:`AnalysisParams` are the flow's parameters (``reach deploy --prometheus-url …``); the
measuring and the rollback live in :mod:`.redeploy`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Statistic = Literal["median", "mean", "p95"]
Outcome = Literal["passed", "failed", "inconclusive"]


class AnalysisParams(BaseModel):
    """How the redeploy flow analyses a new policy (the dashboard's run form shows these descriptions)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prometheus_url: str = Field(description="Prometheus base URL on loopback, e.g. http://127.0.0.1:9090.")
    latency_query: str = Field(
        "reach_app_latency_ms",
        description="PromQL returning the application's end-to-end latency in ms (the migrator's latency_query; "
        "on the local stack the exporter's reach_app_latency_ms, or a histogram quantile of the world's metrics).",
    )
    period_s: float = Field(60.0, gt=0, description="Length of each compared period: the incumbent's last, the new.")
    warmup_s: float = Field(
        5.0, ge=0, description="Seconds after the switch left out of the new period (scrapes catching up)."
    )
    step_s: float = Field(1.0, gt=0, description="Resolution of the range query: one sample every step_s seconds.")
    tolerance_pct: float = Field(5.0, ge=0, description="How much worse (percent) the new statistic may be.")
    min_samples: int = Field(5, ge=1, description="Fewer samples on either side make the analysis inconclusive.")
    statistic: Statistic = Field("median", description="What is compared: median, mean or p95 of each period.")
    on_inconclusive: Literal["roll-back", "keep"] = Field(
        "roll-back", description="What an inconclusive analysis does: roll back (safe) or keep the new policy."
    )


@dataclass(frozen=True)
class AnalysisVerdict:
    """The outcome, whether to roll back, and every reason in words."""

    outcome: Outcome
    roll_back: bool
    before_ms: float | None
    after_ms: float | None
    before_samples: int
    after_samples: int
    reasons: list[str] = field(default_factory=list)

    @property
    def change_pct(self) -> float | None:
        if self.before_ms is None or self.after_ms is None or self.before_ms <= 0:
            return None
        return 100.0 * (self.after_ms - self.before_ms) / self.before_ms

    def summary(self) -> str:
        return f"analysis {self.outcome}: " + "; ".join(self.reasons)


def summarise(samples_ms: Sequence[float], statistic: Statistic) -> float:
    """The period's statistic (p95 by the nearest-rank rule)."""
    if statistic == "mean":
        return statistics.fmean(samples_ms)
    if statistic == "median":
        return statistics.median(samples_ms)
    ordered = sorted(samples_ms)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def decide(before_ms: Sequence[float], after_ms: Sequence[float], params: AnalysisParams) -> AnalysisVerdict:
    """The verdict on the new policy from the incumbent's samples (before) and the new one's (after)."""
    before = [x for x in before_ms if math.isfinite(x)]
    after = [x for x in after_ms if math.isfinite(x)]
    dropped = len(before_ms) + len(after_ms) - len(before) - len(after)
    reasons = [f"dropped {dropped} non-finite samples"] if dropped else []
    short = [
        (side, len(xs)) for side, xs in (("incumbent", before), ("new policy", after)) if len(xs) < params.min_samples
    ]
    if short:
        reasons += [f"{side}: {n} samples, fewer than min_samples={params.min_samples}" for side, n in short]
        unmeasured_before = len(before) < params.min_samples
        roll_back = params.on_inconclusive == "roll-back" and not unmeasured_before
        if unmeasured_before:
            reasons.append(
                "keeping the new policy: the incumbent was not measured either (no metric before the switch)"
            )
        else:
            reasons.append(
                "rolling back: the new policy was not measured, and what was not measured is not trusted"
                if roll_back
                else "keeping the new policy (on_inconclusive=keep)"
            )
        return AnalysisVerdict(
            "inconclusive",
            roll_back,
            summarise(before, params.statistic) if before else None,
            summarise(after, params.statistic) if after else None,
            len(before),
            len(after),
            reasons,
        )
    old, new = summarise(before, params.statistic), summarise(after, params.statistic)
    limit = old * (1.0 + params.tolerance_pct / 100.0)
    worse = new > limit
    reasons.append(
        f"{params.statistic} latency {new:.2f} ms under the new policy vs {old:.2f} ms under the incumbent "
        f"({len(after)} vs {len(before)} samples); limit {limit:.2f} ms (tolerance {params.tolerance_pct:g} %)"
    )
    reasons.append("worse beyond the tolerance: rolling back" if worse else "within the tolerance: keeping it")
    return AnalysisVerdict("failed" if worse else "passed", worse, old, new, len(before), len(after), reasons)
