"""The statistics of REACH's experiments on the world: confidence intervals, time to recover, the mesh's counters.

Pure functions on numbers that the experiments read from Prometheus (:mod:`flows.loop.experiments`):

- :func:`t_interval`: the mean of the seeded pairs' reductions and its two-sided 95 % Student-t
  interval (``mean ± t(0.975, n−1) · sd / √n``; none for one pair). A reduction of a mean latency
  cannot exceed 100 %, so the tables show an upper bound above it as 100 % marked
  :data:`CLIPPED_MARK` (``Interval.text(ceiling=100)``); the interval itself is not changed.
- :func:`recovery_time_s`: **time to recover** after an event, from a latency series
  (:func:`served_series`: the successful requests' mean, +inf while more than 1 % fail): the
  pre-event level is the mean of the finite samples in the ``baseline_s`` seconds before the event; the
  run has recovered at the first sample time ``t ≥ event`` from which every later sample stays
  at or below ``level × (1 + tolerance)``; the time to recover is ``t − event`` (0 when the
  latency never left the band, None when the last sample is still above it: not recovered within
  the run).
- :class:`MeshCounters` and :func:`window_numbers`: Istio's request-duration histogram read twice
  (at the event and at the end of the run) gives, over that window and exactly (no
  extrapolation), the requests, the mean (Δsum / Δcount, every request as Istio's mean), the p95
  (linear interpolation inside the bucket, as PromQL's ``histogram_quantile``), the failed requests
  (response code other than 200) and the requests that missed the QoS threshold: slower than it or
  failed (Δcount − Δbucket{le = threshold, response_code = 200}; the threshold must be a bucket
  bound). A request that fails fast (a service without endpoints) lowers the mean; it still misses QoS.
- :func:`move_gains`: the calibration of the moves — per move, the service's predicted gain beside
  the world's: the successful requests' 5 s-window mean sampled in the ``window_s`` seconds up to
  the move's start minus the one sampled from 5 s to 5 + ``window_s`` s after its end (the 5 s
  rate windows then hold only requests before, resp. after, the move); moves whose span, windows
  included, holds the event are left out (the event would make the difference, not the move), and so
  are moves whose span overlaps another move's (its start to its end: that move's gain would be
  measured too, or the other's windows would hold this one).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Two-sided 95 % quantiles of Student's t, t(0.975, df) for df = 1 … 30 (standard tables); above 30
# :func:`t_quantile_975` uses Hill's expansion around the normal quantile (the normal's 1.96 alone would
# understate it: t(0.975, 31) ≈ 2.040, t(0.975, 120) ≈ 1.980).
T_975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
    2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided 95 % t-interval (``low``/``high`` None for a single value)."""

    mean: float
    low: float | None
    high: float | None
    count: int

    @property
    def above_zero(self) -> bool:
        return self.low is not None and self.low > 0

    def text(self, unit: str = "%", ceiling: float | None = None) -> str:
        """``mean unit [low, high]``; a ``high`` above ``ceiling`` is shown as the ceiling, marked :data:`CLIPPED_MARK`."""
        if self.low is None or self.high is None:
            return f"{self.mean:.1f} {unit} (1 pair, no CI)"
        high = f"{self.high:.1f}" if not self.clipped(ceiling) else f"{ceiling:.1f}{CLIPPED_MARK}"
        return f"{self.mean:.1f} {unit} [{self.low:.1f}, {high}]"

    def clipped(self, ceiling: float | None) -> bool:
        """Whether the upper bound lies above ``ceiling`` (what cannot be: shown as the ceiling)."""
        return ceiling is not None and self.high is not None and self.high > ceiling


CLIPPED_MARK = "†"  # an upper bound shown at its ceiling (a reduction cannot exceed 100 %)
REDUCTION_CEILING_PCT = 100.0


Z_975 = 1.959963984540054  # the standard normal's 0.975 quantile


def t_quantile_975(df: int) -> float:
    """t(0.975, ``df``): the table up to df 30, then the Cornish–Fisher (Hill) series in 1/df.

    The series, ``z + (z³+z)/(4ν) + (5z⁵+16z³+3z)/(96ν²) + (3z⁷+19z⁵+17z³−15z)/(384ν³)``, is within
    2e-6 of the exact quantile from df 30 on, so the values go on falling smoothly past the table.
    """
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(T_975):
        return T_975[df - 1]
    z, nu = Z_975, float(df)
    return (
        z
        + (z**3 + z) / (4 * nu)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * nu**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * nu**3)
    )


def t_interval(values: Sequence[float]) -> Interval:
    """Mean and 95 % t-interval of ``values`` (the per-seed reductions of one cell)."""
    if not values:
        raise ValueError("no value for a confidence interval: run at least one seeded pair")
    mean = statistics.fmean(values)
    if len(values) == 1:
        return Interval(mean, None, None, 1)
    half = t_quantile_975(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return Interval(mean, mean - half, mean + half, len(values))


def reduction_pct(baseline_ms: float, arm_ms: float) -> float:
    """How much lower ``arm_ms`` is than ``baseline_ms``, in % of the baseline (negative: higher)."""
    if not baseline_ms > 0:
        raise ValueError(f"the default scheduler's latency must be > 0 ms, got {baseline_ms}")
    return 100.0 * (baseline_ms - arm_ms) / baseline_ms


def recovery_time_s(
    samples: Sequence[tuple[float, float]], event_s: float, tolerance: float = 0.10, baseline_s: float = 10.0
) -> float | None:
    """Time to recover after ``event_s`` (see the module docstring); ``samples`` are (time s, latency ms)."""
    before = [v for t, v in samples if event_s - baseline_s <= t < event_s and math.isfinite(v)]
    if not before:
        raise ValueError(f"no latency sample in the {baseline_s:.0f} s before the event at {event_s:.1f} s")
    band = statistics.fmean(before) * (1.0 + tolerance)
    after = sorted((t, v) for t, v in samples if t >= event_s)
    if not after:
        raise ValueError(f"no latency sample after the event at {event_s:.1f} s")
    recovered_at = None
    for t, v in after:
        if v > band:
            recovered_at = None
        elif recovered_at is None:
            recovered_at = t
    if recovered_at is None:
        return None
    return max(0.0, recovered_at - event_s) if recovered_at > after[0][0] else 0.0


def served_series(
    means: Sequence[tuple[float, float]], failed_shares: Sequence[tuple[float, float]], max_failed_share: float = 0.01
) -> list[tuple[float, float]]:
    """The series :func:`recovery_time_s` reads: at each time with a failed share, the successful requests'
    mean, or +inf when more than ``max_failed_share`` failed or none succeeded (failing fast is no recovery)."""
    mean_at = dict(means)
    return [(t, mean_at[t] if share <= max_failed_share and t in mean_at else math.inf) for t, share in failed_shares]


@dataclass(frozen=True)
class MeshCounters:
    """One read of Istio's request-duration histogram: cumulative ``le`` → count, the sum (ms) and the count
    of every request, and the buckets, count and sum (ms) of the successful ones (``response_code="200"``)."""

    buckets: Mapping[float, float]
    sum_ms: float
    count: float
    ok_buckets: Mapping[float, float]
    ok_count: float
    ok_sum_ms: float


@dataclass(frozen=True)
class WindowNumbers:
    """What the mesh measured between two reads: requests, mean and p95 (ms), failed requests and those that
    missed the QoS threshold (slower than it, or failed), and the mean of the successful requests alone (ms;
    None when none succeeded): Istio's mean counts a failed request at its own duration, so a request that
    fails at once (no endpoint left) lowers it."""

    requests: float
    mean_ms: float | None
    p95_ms: float | None
    over_qos: float
    failed: float = 0.0
    ok_mean_ms: float | None = None

    @property
    def over_qos_pct(self) -> float | None:
        return 100.0 * self.over_qos / self.requests if self.requests else None

    @property
    def failed_pct(self) -> float | None:
        return 100.0 * self.failed / self.requests if self.requests else None


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """PromQL's ``histogram_quantile`` on cumulative buckets (``le`` → count, +Inf included)."""
    bounds = sorted(buckets)
    if not bounds or not math.isinf(bounds[-1]):
        raise ValueError(f"buckets need a +Inf bound, got {bounds}")
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # as PromQL: the highest finite bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def window_numbers(start: MeshCounters, end: MeshCounters, qos_threshold_ms: float) -> WindowNumbers:
    """The numbers of the requests completed between the reads ``start`` and ``end`` (counters of one world)."""
    if qos_threshold_ms not in end.buckets:
        finite = sorted(b for b in end.buckets if not math.isinf(b))
        raise ValueError(
            f"QoS threshold {qos_threshold_ms} ms is not a bucket bound of the histogram {finite}: choose one of them"
        )
    delta = {le: end.buckets[le] - start.buckets.get(le, 0.0) for le in end.buckets}
    requests = end.count - start.count
    mean = (end.sum_ms - start.sum_ms) / requests if requests > 0 else None
    ok_within = end.ok_buckets.get(qos_threshold_ms, 0.0) - start.ok_buckets.get(qos_threshold_ms, 0.0)
    succeeded = end.ok_count - start.ok_count
    ok_mean = (end.ok_sum_ms - start.ok_sum_ms) / succeeded if succeeded > 0 else None
    return WindowNumbers(
        requests, mean, histogram_quantile(0.95, delta), requests - ok_within, requests - succeeded, ok_mean
    )


RATE_WINDOW_S = 5.0  # the rate window of the series that move_gains reads (run.FAST_WINDOW)


def move_gains(
    series: Sequence[tuple[float, float]],
    moves: Sequence[Mapping[str, Any]],
    event_s: float | None,
    window_s: float = 3.0,
    keep_event: bool = False,
) -> list[dict[str, Any]]:
    """Per move (``started_s``, ``done_s``, ``predicted_gain_ms``; times as in ``series``) with a prediction and
    samples on both sides: the move with ``measured_gain_ms`` added (see the module docstring). With
    ``keep_event`` the moves whose windows hold the event, or overlap another move, are kept too, marked
    ``"event_in_window": True`` resp. ``"other_move_in_window": True``."""
    spans = [(float(m["started_s"]), float(m["done_s"])) for m in moves]
    points = []
    for index, move in enumerate(moves):
        start, done, predicted = float(move["started_s"]), float(move["done_s"]), move.get("predicted_gain_ms")
        first, last = start - window_s - RATE_WINDOW_S, done + RATE_WINDOW_S + window_s
        held = event_s is not None and first <= event_s <= last
        crowded = any(
            other_start <= last and other_done >= first
            for other, (other_start, other_done) in enumerate(spans)
            if other != index
        )
        if predicted is None or ((held or crowded) and not keep_event):
            continue
        before = [v for t, v in series if start - window_s <= t <= start and math.isfinite(v)]
        after = [v for t, v in series if done + RATE_WINDOW_S <= t <= last and math.isfinite(v)]
        if before and after:
            gain = statistics.fmean(before) - statistics.fmean(after)
            marks = {
                **({"event_in_window": True} if held else {}),
                **({"other_move_in_window": True} if crowded else {}),
            }
            points.append({**move, "measured_gain_ms": gain, **marks})
    return points
