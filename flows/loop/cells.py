"""The experiments' table and figures: trials grouped into cells (experiment × workload), per arm, with 95 % CIs.

For each cell and arm over its seeds: the world's mean and p95 latency after the event (means over
seeds), the reduction of the mean against the default scheduler of the same seed with its 95 %
t-interval (:func:`flows.loop.stats.t_interval`), moves, the time to recover (mean over the seeds
that recovered, and how many did) and the share of requests over the QoS threshold (all seeds'
requests pooled). :func:`markdown` writes the table with REACH's published figure and whether the
learned arm meets the goal (≥ REACH's figure, interval above 0, not below greedy, no more failed requests
than the default scheduler);
:func:`write_figures` draws the latency over time of the three arms per cell and the calibration
plot (every move's predicted gain against the world's). :func:`order_balance` says whether every cell
ran each order of the arms equally often, and :func:`order_effect` splits the learned − greedy difference by
which of the two ran first. Used by ``benchmarks/bench_experiments.py``
and ``reach demo experiment``.
"""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.loop.arms import (
    ARMS,
    DEFAULT_ARM,
    GREEDY_ARM,
    LEARNED_ARM,
    LEGACY_PROTOCOL,
    REACH_PUBLISHED_PCT,
    ArmResult,
    Trial,
)
from flows.loop.report import write_arms_plot, write_calibration_plot
from flows.loop.stats import (
    CLIPPED_MARK,
    REDUCTION_CEILING_PCT,
    Interval,
    move_gains,
    reduction_pct,
    t_interval,
)


@dataclass(frozen=True)
class ArmCell:
    """One arm of one cell over its seeds."""

    experiment: str
    workload: str
    arm: str
    policy: str
    seeds: int
    mean_ms: float
    p95_ms: float | None
    reduction: Interval | None  # None for the default scheduler itself
    moves: float
    recovery_s: float | None  # mean over the seeds that recovered
    recovered: int
    over_qos_pct: float | None
    failed_pct: float | None  # None when a trial did not count failures
    ok_mean_ms: float | None = None  # the successful requests' mean, over seeds (None unless every seed kept it)


def cells(trials: list[Trial]) -> dict[tuple[str, str], list[Trial]]:
    """The trials per (experiment, workload); raises ValueError when one cell mixes scenarios or protocols.

    A cell's seeds are pooled into one t-interval, so they must be the same experiment: one protocol
    version (:mod:`flows.loop.arms`), scenario, duration, event time, QoS threshold, world rate,
    surge multiplier and failure detection (``Trial.protocol_key``). Trials of another protocol
    belong in another output folder.
    """
    grouped: dict[tuple[str, str], list[Trial]] = {}
    for trial in trials:
        grouped.setdefault((trial.experiment, trial.workload), []).append(trial)
    for (experiment, workload), group in grouped.items():
        protocols = {t.protocol_key(): t.protocol_text() for t in group}
        if len(protocols) > 1:
            found = "; ".join(sorted(protocols.values()))
            raise ValueError(
                f"the {experiment} x {workload} trials mix protocols ({found}): their seeds cannot be pooled; "
                "keep each protocol's trials in its own output folder (--out), e.g. move the older trials "
                "to another folder or run the cell again into a new --out"
            )
    return grouped


def table_protocol(trials: list[Trial]) -> int:
    """The one protocol version of a table's trials; ValueError when a folder holds two (one table, one protocol)."""
    versions = sorted({t.protocol for t in trials})
    if len(versions) > 1:
        raise ValueError(
            f"the trials mix protocol versions {versions} (see flows/loop/arms.py): one table cannot compare "
            "them; keep each protocol's trials in its own output folder (--out), e.g. move the older trials "
            "to another folder or run the cells again into a new --out"
        )
    return versions[0] if versions else LEGACY_PROTOCOL


def qos_threshold(trials: list[Trial], legacy_qos_ms: float | None = None) -> tuple[float, bool]:
    """The QoS threshold the trials' "missed" column was counted with, and whether it was assumed: trials of
    protocol 1 did not record it, so ``legacy_qos_ms`` (the threshold they were run with) stands for it."""
    recorded = {t.qos_threshold_ms for t in trials if t.qos_threshold_ms is not None}
    unrecorded = any(t.qos_threshold_ms is None for t in trials)
    if unrecorded and legacy_qos_ms is not None:
        recorded.add(legacy_qos_ms)
    if len(recorded) > 1:
        raise ValueError(
            f"the trials counted missed QoS at different thresholds {sorted(recorded)} ms: one table, one "
            "threshold; keep each threshold's trials in its own output folder (--out)"
        )
    if not recorded:
        raise ValueError("the trials did not record their QoS threshold: pass the one they were run with (--qos)")
    return recorded.pop(), unrecorded


def arm_cell(trials: list[Trial], arm: str) -> ArmCell:
    results = [t.arm(arm) for t in trials]
    reductions = [reduction_pct(t.arm(DEFAULT_ARM).mean_ms, t.arm(arm).mean_ms) for t in trials]
    recovered = [r.recovery_s for r in results if r.recovery_s is not None]
    p95 = [r.p95_ms for r in results if r.p95_ms is not None]
    requests = sum(r.requests for r in results)
    ok_means = [r.ok_mean_ms for r in results if r.ok_mean_ms is not None]
    return ArmCell(
        trials[0].experiment, trials[0].workload, arm, results[0].policy, len(results),
        statistics.fmean(r.mean_ms for r in results), statistics.fmean(p95) if p95 else None,
        None if arm == DEFAULT_ARM else t_interval(reductions), statistics.fmean(r.moves for r in results),
        statistics.fmean(recovered) if recovered else None, len(recovered),
        100.0 * sum(r.over_qos for r in results) / requests if requests else None,
        100.0 * sum(r.failed for r in results if r.failed is not None) / requests
        if requests and all(r.failed is not None for r in results) else None,
        statistics.fmean(ok_means) if ok_means and len(ok_means) == len(results) else None,
    )  # fmt: skip


def learned_minus_greedy(trial: Trial) -> float:
    """The learned arm's reduction minus greedy's in one seed, percentage points (both against its default arm)."""
    default_ms = trial.arm(DEFAULT_ARM).mean_ms
    return reduction_pct(default_ms, trial.arm(LEARNED_ARM).mean_ms) - reduction_pct(
        default_ms, trial.arm(GREEDY_ARM).mean_ms
    )


def versus_greedy(trials: list[Trial]) -> Interval | None:
    """The learned arm's reduction minus greedy's, paired by seed, with its 95 % t-interval (None without both)."""
    pairs = [t for t in trials if {LEARNED_ARM, GREEDY_ARM} <= {a.arm for a in t.arms}]
    return t_interval([learned_minus_greedy(t) for t in pairs]) if pairs else None


def order_effect(trials: list[Trial]) -> str:
    """Per experiment, the seed-paired learned − greedy difference split by which of the two ran first (from
    ``Trial.arm_order``), each with its 95 % t-interval. An arm's cluster is what the arm before it left, so a
    gap between the two splits is what the order adds to the comparison; a balanced order (protocol 3) gives
    each split half the seeds, and the table's pooled difference averages over it."""
    splits: dict[str, tuple[list[float], list[float]]] = {}
    for (experiment, _), group in sorted(cells(trials).items()):
        for trial in group:
            if not {LEARNED_ARM, GREEDY_ARM} <= set(trial.arm_order):
                continue
            first, then = splits.setdefault(experiment, ([], []))
            learned_first = trial.arm_order.index(LEARNED_ARM) < trial.arm_order.index(GREEDY_ARM)
            (first if learned_first else then).append(learned_minus_greedy(trial))
    parts = [
        f"{experiment}: {t_interval(first).text('pp')} with learned before greedy, "
        f"{t_interval(then).text('pp')} with greedy before learned"
        for experiment, (first, then) in splits.items()
        if first and then
    ]
    return "; ".join(parts) or "-"


FAILED_SHARE_TOLERANCE_PP = 1.0  # the learned arm may fail at most this many points more requests than default


def goal(
    learned: ArmCell, greedy: ArmCell | None, paired: Interval | None = None, default: ArmCell | None = None
) -> str:
    """Whether the learned arm meets issue 16's goal for this cell, or by how much it falls short (below greedy
    by its mean; ``paired``, the seed-paired difference to greedy, says whether that shortfall is beyond noise).

    The reduction is of Istio's mean, which counts a failed request at the time it took to fail: an
    arm whose requests fail at once (no endpoint left) would look fast. So the goal also needs the
    learned arm to fail no larger share of requests than the ``default`` scheduler (+1 point)."""
    published = REACH_PUBLISHED_PCT.get(learned.workload)
    if learned.reduction is None or published is None:
        return "-"
    shortfalls = []
    failed, baseline = learned.failed_pct, default.failed_pct if default is not None else None
    if failed is not None and baseline is not None and failed > baseline + FAILED_SHARE_TOLERANCE_PP:
        shortfalls.append(f"fails {failed:.1f} % of requests, the default scheduler {baseline:.1f} %")
    if learned.reduction.mean < published:
        shortfalls.append(f"{published - learned.reduction.mean:.1f} pp below REACH")
    if not learned.reduction.above_zero:
        shortfalls.append("CI not above 0")
    if greedy is not None and greedy.reduction is not None and learned.reduction.mean < greedy.reduction.mean:
        beyond = "" if paired is None or paired.high is None else (
            f" (paired {paired.text('pp')}{', within noise' if paired.high >= 0 else ''})"
        )  # fmt: skip
        shortfalls.append(f"{greedy.reduction.mean - learned.reduction.mean:.1f} pp below greedy{beyond}")
    return "met" if not shortfalls else "short: " + ", ".join(shortfalls)


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


CLIPPED_NOTE = (
    f"{CLIPPED_MARK} upper bound of the t-interval above {REDUCTION_CEILING_PCT:g} %, shown as "
    f"{REDUCTION_CEILING_PCT:g} %: a mean latency cannot fall by more than all of it (the t-interval is "
    "symmetric and does not know that bound; the mean and the lower bound, which the goal reads, are as computed)."
)


def markdown(trials: list[Trial], legacy_qos_ms: float | None = None) -> str:
    """The whole table: one row per cell and arm; the "missed" column's threshold is the trials' own
    (``legacy_qos_ms``: the one that trials of protocol 1, which did not record it, were run with)."""
    table_protocol(trials)
    qos_ms, _ = qos_threshold(trials, legacy_qos_ms)
    lines = [
        f"| experiment | workload | arm | seeds | mean ms | p95 ms | mean ms of successful | reduction vs default, "
        f"95 % CI | REACH | moves | recovery s (recovered) | missed {qos_ms:g} ms | failed | goal |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    clipped = False
    for (experiment, workload), group in sorted(cells(trials).items()):
        rows = {arm: arm_cell(group, arm) for arm in ARMS if all(arm in {a.arm for a in t.arms} for t in group)}
        for arm, row in rows.items():
            published = REACH_PUBLISHED_PCT.get(workload) if arm == LEARNED_ARM else None
            reduction = row.reduction.text(ceiling=REDUCTION_CEILING_PCT) if row.reduction is not None else "(baseline)"
            clipped = clipped or (row.reduction is not None and row.reduction.clipped(REDUCTION_CEILING_PCT))
            verdict = (
                goal(row, rows.get(GREEDY_ARM), versus_greedy(group), rows.get(DEFAULT_ARM))
                if arm == LEARNED_ARM
                else ""
            )
            lines.append(
                f"| {experiment} | {workload} | {arm} | {row.seeds} | {row.mean_ms:.1f} | {_num(row.p95_ms)} "
                f"| {_num(row.ok_mean_ms)} | {reduction} | {_num(published)}{' %' if published else ''} | {row.moves:.1f} "
                f"| {_num(row.recovery_s)} ({row.recovered}/{row.seeds}) | {_num(row.over_qos_pct)} % "
                f"| {_num(row.failed_pct)}{' %' if row.failed_pct is not None else ''} | {verdict} |"
            )
    return "\n".join([*lines, *(["", CLIPPED_NOTE] if clipped else [])])


def learned_policies(trials: list[Trial]) -> str:
    """Which bento the learned arm served, per cell (a newer gated bento may appear between cells)."""
    used: dict[str, list[str]] = {}
    for (experiment, workload), group in sorted(cells(trials).items()):
        for tag in sorted({t.arm(LEARNED_ARM).policy for t in group if LEARNED_ARM in {a.arm for a in t.arms}}):
            used.setdefault(tag, []).append(f"{experiment} × {workload}")
    return "; ".join(f"`{tag}` ({', '.join(where)})" for tag, where in used.items()) or "-"


def order_balance(trials: list[Trial]) -> str:
    """Whether every cell's seeds ran each order of its arms equally often (protocol 3's design,
    :func:`flows.loop.experiments.arm_order`: any six consecutive seeds), naming the cells
    that did not and how their orders fell; trials without a recorded order (protocol 1) are said so."""
    balanced, uneven, unrecorded = [], [], []
    for (experiment, workload), group in sorted(cells(trials).items()):
        name = f"{experiment} × {workload}"
        if any(not t.arm_order for t in group):
            unrecorded.append(name)
            continue
        counts = Counter(tuple(t.arm_order) for t in group)
        arms = sorted({arm for order in counts for arm in order})
        orders = set(itertools.permutations(arms))
        if set(counts) == orders and len(set(counts.values())) == 1:
            balanced.append(name)
        else:
            ran = ", ".join(f"{' → '.join(order)} ×{n}" for order, n in sorted(counts.items()))
            seeds = f"{len(group)} seed{'s' if len(group) > 1 else ''}"
            uneven.append(f"{name} ({seeds}, {len(counts)} of {len(orders)} orders: {ran})")
    parts = []
    if balanced:
        parts.append(f"every order of the arms equally often in {len(balanced)} of {len(balanced) + len(uneven)} cells")
    if uneven:
        parts.append("not balanced in " + "; ".join(uneven))
    if unrecorded:
        parts.append("not recorded in " + ", ".join(unrecorded))
    return "; ".join(parts) or "-"


def evacuated_pods(trial: Trial, arm: ArmResult) -> set[str]:
    """Pods the arm moved off a node that the trial failed: evacuations, whose "gain" is the outage ending."""
    return {e[2] for e in arm.events if e[1] == "migrated" and e[3] in trial.failed_nodes}


def calibration_points(trials: list[Trial]) -> list[dict[str, Any]]:
    """Every move's predicted and measured gain (recomputed from the kept series and moves by
    :func:`flows.loop.stats.move_gains`; the points kept with the trial when it has no moves recorded).
    An evacuation is marked ``"evacuation": True``: the world's latency falls because the failed node's
    pods serve again, which says nothing of the twin's predicted gain."""
    points = []
    for t in trials:
        for arm in t.arms:
            evacuated = evacuated_pods(t, arm)
            event_s = arm.event_s if arm.event_s is not None else t.event_at_s  # the event's own time, if kept
            gains = (
                move_gains(arm.series, arm.moves_made, event_s, keep_event=True) if arm.moves_made else arm.calibration
            )
            for point in gains:
                extra = {"evacuation": True} if point.get("pod") in evacuated else {}
                points.append({**point, **extra, "arm": arm.arm, "experiment": t.experiment,
                               "workload": t.workload, "seed": t.seed})  # fmt: skip
    return points


def calibration_summary(points: list[dict[str, Any]]) -> str:
    """Moves with a prediction, the mean predicted and measured gain, the sign agreement and the correlation
    (moves whose windows held the event are only counted, and drawn apart; moves whose windows overlap another
    move of the arm are only counted)."""
    evacuations = sum(1 for p in points if p.get("evacuation"))
    points = [p for p in points if not p.get("evacuation")]
    crowded = [p for p in points if p.get("other_move_in_window") and not p.get("event_in_window")]
    held = [p for p in points if p.get("event_in_window")]
    points = [p for p in points if not p.get("event_in_window") and not p.get("other_move_in_window")]
    predicted_held = ", ".join(f"{float(p['predicted_gain_ms']):.1f}" for p in held)
    measured_held = ", ".join(f"{float(p['measured_gain_ms']):.0f}" for p in held)
    note = (
        (
            f" {len(held)} more moves had windows that held the event (drawn apart, not counted: predicted "
            f"{predicted_held} ms; measured {measured_held} ms)."
            if held
            else ""
        )
        + (
            f" {evacuations} evacuations (moves off a failed node) are left out: their gain is the outage ending."
            if evacuations
            else ""
        )
        + (
            f" {len(crowded)} more moves are left out because their windows overlap another move of the arm (the "
            "difference would hold that move's gain too)."
            if crowded
            else ""
        )
    )
    if not points:
        return "No move with a predicted gain and clean windows (none made, or none with a prediction)." + note
    predicted = [float(p["predicted_gain_ms"]) for p in points]
    measured = [float(p["measured_gain_ms"]) for p in points]
    agree = sum((a > 0) == (b > 0) for a, b in zip(predicted, measured, strict=True))
    correlation = (
        f"{statistics.correlation(predicted, measured):.2f}"
        if len(points) > 2 and statistics.pstdev(predicted) > 0 and statistics.pstdev(measured) > 0
        else "-"
    )
    return (
        f"{len(points)} moves with a prediction: mean predicted gain {statistics.fmean(predicted):.1f} ms, mean "
        f"measured gain {statistics.fmean(measured):.1f} ms; the world agreed on the sign for {agree} of "
        f"{len(points)}; Pearson correlation {correlation}." + note
    )


def write_figures(trials: list[Trial], out: Path) -> list[Path]:
    """``<experiment>-<workload>.png`` per cell (three arms over time) and ``calibration.png``."""
    paths = []
    for (experiment, workload), group in sorted(cells(trials).items()):
        series = {arm: [t.arm(arm).series for t in group if arm in {a.arm for a in t.arms}] for arm in ARMS}
        failed = {arm: [t.arm(arm).failed_series for t in group if arm in {a.arm for a in t.arms}] for arm in ARMS}
        title = f"{experiment} at {group[0].event_at_s:.0f} s: {group[0].scenario} {workload}, {len(group)} seeds"
        paths.append(write_arms_plot({k: v for k, v in series.items() if v}, group[0].event_at_s,
                                     out / f"{experiment}-{workload}.png", title,
                                     {k: v for k, v in failed.items() if any(v)}))  # fmt: skip
    points = [p for p in calibration_points(trials) if not p.get("evacuation") and not p.get("other_move_in_window")]
    paths.append(write_calibration_plot(points, out / "calibration.png", "Per move: predicted vs world-measured gain"))
    return paths
