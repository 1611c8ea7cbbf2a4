"""What one closed-loop run measured, and how ``reach demo`` reports it: table, CSV time series, PNG.

A :class:`LoopRun` holds the latency samples read from Prometheus (simulated from the live
placement by :mod:`flows.loop.exporter`) and the events of the run (migrations with pod, source and
target; a node failed; a surge), the migrator's predictions per move (:class:`MovePrediction`) and
the mesh's counters at the event and at the end (:class:`flows.loop.stats.MeshCounters`).
:func:`write_csv` writes ``timestamp, latency_ms, event, pod, from, to``; :func:`write_plot` draws
the latency with every event marked, in the style of REACH's figures; :func:`summary` and
:func:`compare` give the before/after numbers and the reduction against a run without
rescheduling; :func:`write_arms_plot` and :func:`write_calibration_plot` are the experiments'
figures. Used by :mod:`flows.loop.demo`, :mod:`flows.loop.experiments` and the closed-loop e2e tests.
"""

from __future__ import annotations

import bisect
import csv
import io
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.local.paths import write_text_atomic
from flows.loop.stats import MeshCounters

SIMULATED_NOTE = "latency simulated by the CEEnv model from the live placement"
WORLD_NOTE = "latency of requests emulated on the live placement by the world (Istio's PromQL)"


def latency_note(source: str) -> str:
    """What the latency is, for tables and plots: the world's emulated requests or the twin's formula."""
    return WORLD_NOTE if source == "world" else SIMULATED_NOTE


MIGRATION_EVENTS = ("migrated", "rolled-back")


@dataclass(frozen=True)
class Event:
    time_s: float
    event: str
    pod: str = ""
    source: str = ""
    target: str = ""


@dataclass(frozen=True)
class MovePrediction:
    """One move as the migrator journalled it: when it started and ended (unix s) and the service's prediction."""

    pod: str
    source: str
    target: str
    started_s: float
    done_s: float
    predicted_before_ms: float | None
    predicted_after_ms: float | None

    @property
    def predicted_gain_ms(self) -> float | None:
        if self.predicted_before_ms is None or self.predicted_after_ms is None:
            return None
        return self.predicted_before_ms - self.predicted_after_ms


@dataclass
class LoopRun:
    """Samples (unix time, latency ms) and events of one run; ``policy`` is what decided ('' = no rescheduling)."""

    label: str
    policy: str
    started_s: float
    ended_s: float = 0.0
    samples: list[tuple[float, float]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    p95_samples: list[tuple[float, float]] = field(default_factory=list)  # the world's p95 (empty on the twin)
    fast_samples: list[tuple[float, float]] = field(default_factory=list)  # world: successful requests' 5 s mean
    failed_share_samples: list[tuple[float, float]] = field(default_factory=list)  # world: 5 s share that failed
    predictions: list[MovePrediction] = field(default_factory=list)  # migrated moves with the service's prediction
    counters: dict[str, MeshCounters] = field(default_factory=dict)  # the mesh's histogram at "event" and "end"
    counted_s: dict[str, float] = field(default_factory=dict)  # unix s of each read of ``counters``
    cycles: list[tuple[float, str, str]] = field(default_factory=list)  # (unix s, kind, detail) of each migrator cycle

    @property
    def moves(self) -> list[Event]:
        return [e for e in self.events if e.event == "migrated"]

    def latencies(self, since_s: float = 0.0, until_s: float = float("inf")) -> list[float]:
        return [v for t, v in self.samples if since_s <= t - self.started_s <= until_s]

    def latency_at(self, time_s: float) -> float | None:
        before = [v for t, v in self.samples if t <= time_s]
        return before[-1] if before else None


@dataclass(frozen=True)
class Summary:
    label: str
    policy: str
    before_ms: float
    after_ms: float
    moves: int
    duration_s: float
    first_move_s: float | None
    last_move_s: float | None

    @property
    def reduction_pct(self) -> float:
        return 100.0 * (self.before_ms - self.after_ms) / self.before_ms if self.before_ms else 0.0


def summary(run: LoopRun, head: int = 3, tail: int = 5) -> Summary:
    """Before = median of the first ``head`` samples; after = median of the last ``tail`` samples."""
    values = [v for _, v in run.samples]
    if not values:
        raise ValueError(f"run {run.label} has no latency sample: is Prometheus scraping the exporter?")
    moves = run.moves
    return Summary(
        run.label, run.policy or "none (default scheduler only)",
        statistics.median(values[:head]), statistics.median(values[-tail:]), len(moves),
        run.ended_s - run.started_s,
        moves[0].time_s - run.started_s if moves else None, moves[-1].time_s - run.started_s if moves else None,
    )  # fmt: skip


def mean_after(run: LoopRun, since_s: float) -> float:
    values = run.latencies(since_s)
    if not values:
        raise ValueError(f"run {run.label} has no latency sample after {since_s:.0f} s")
    return statistics.fmean(values)


def compare(with_reach: LoopRun, without: LoopRun, since_s: float) -> dict[str, float]:
    """Mean latency from ``since_s`` on with and without rescheduling, and the reduction in %."""
    reach_ms, base_ms = mean_after(with_reach, since_s), mean_after(without, since_s)
    return {"with_ms": reach_ms, "without_ms": base_ms, "reduction_pct": 100.0 * (base_ms - reach_ms) / base_ms}


def table(rows: list[Summary], note: str = SIMULATED_NOTE) -> str:
    """A plain-text before/after table (``reach demo`` prints it)."""
    lines = [
        f"{'run':<28} {'policy':<30} {'before ms':>10} {'after ms':>10} {'change':>8} {'moves':>6} {'time s':>7}",
    ]
    for r in rows:
        lines.append(
            f"{r.label:<28} {r.policy:<30} {r.before_ms:>10.1f} {r.after_ms:>10.1f} "
            f"{-r.reduction_pct:>+7.1f}% {r.moves:>6} {r.duration_s:>7.0f}"
        )
    lines.append(f"({note}, read from Prometheus)")
    return "\n".join(lines)


def csv_rows(run: LoopRun) -> list[list[str]]:
    rows = [[f"{t:.3f}", f"{v:.3f}", "sample", "", "", ""] for t, v in run.samples]
    for e in run.events:
        latency = run.latency_at(e.time_s)
        rows.append(
            [f"{e.time_s:.3f}", "" if latency is None else f"{latency:.3f}", e.event, e.pod, e.source, e.target]
        )
    return sorted(rows, key=lambda row: float(row[0]))


def write_csv(run: LoopRun, path: Path) -> Path:
    """The run's time series as CSV, written whole or not at all (an earlier file stays until then)."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["timestamp", "latency_ms", "event", "pod", "from", "to"])
    writer.writerows(csv_rows(run))
    write_text_atomic(path, text.getvalue())
    return path


def write_plot(runs: list[LoopRun], path: Path, title: str, note: str = SIMULATED_NOTE) -> Path:
    """Latency over time of each run; migrations as dotted lines, other events as dashed red lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5))
    for run in runs:
        (line,) = ax.plot([t - run.started_s for t, _ in run.samples], [v for _, v in run.samples], label=run.label)
        for e in run.events:
            style = ":" if e.event in MIGRATION_EVENTS else "--"
            colour = line.get_color() if e.event in MIGRATION_EVENTS else "tab:red"
            ax.axvline(e.time_s - run.started_s, linestyle=style, color=colour, alpha=0.6, linewidth=1)
    ax.set_xlabel("time since start (s); dotted: migrations, dashed red: node failure / surge")
    ax.set_ylabel("end-to-end latency (ms)")
    ax.set_title(f"{title}\n({note})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


ARM_COLOURS = {"default-scheduler": "tab:gray", "learned": "tab:blue", "greedy": "tab:orange"}


GAP_S = 2.0  # samples further apart than this are not joined: the seed had no successful request in between


def with_gaps(points: list[tuple[float, float]], gap_s: float = GAP_S) -> tuple[list[float], list[float]]:
    """x and y of a series with NaN where samples are more than ``gap_s`` apart (the line breaks there)."""
    xs: list[float] = []
    ys: list[float] = []
    for t, v in sorted(points):
        if xs and t - xs[-1] > gap_s:
            xs.append((t + xs[-1]) / 2)
            ys.append(float("nan"))
        xs.append(t)
        ys.append(v)
    return xs, ys


def seed_mean(runs: list[list[tuple[float, float]]], gap_s: float = GAP_S) -> list[tuple[float, float]]:
    """On a 1-s grid, the mean over *all* runs of each run's value there: its sample at that time, or the line
    between its two samples around it when they are at most ``gap_s`` apart (as :func:`with_gaps` draws the
    run). NaN where some run has no value (no request of that seed succeeded for longer than ``gap_s``), so an
    outage is not hidden by the seeds that survived it; grid times where no run has a value are left out."""
    ordered = [sorted(run) for run in runs if run]
    if not ordered:
        return []
    grid = _grid(ordered)
    if len(ordered) < len(runs):  # a seed with no sample at all: no mean anywhere
        return [(float(t), float("nan")) for t in grid]
    values = [[_value_at(run, float(t), gap_s) for run in ordered] for t in grid]
    return [
        (float(t), statistics.fmean(v for v in at if v is not None) if all(v is not None for v in at) else float("nan"))
        for t, at in zip(grid, values, strict=True)
        if any(v is not None for v in at)
    ]


def _grid(runs: list[list[tuple[float, float]]]) -> range:
    return range(math.floor(min(run[0][0] for run in runs)), math.ceil(max(run[-1][0] for run in runs)) + 1)


def _value_at(run: list[tuple[float, float]], t: float, gap_s: float) -> float | None:
    """The run's value at ``t`` (sorted samples): a sample there, or between two samples at most ``gap_s`` apart."""
    times = [sample[0] for sample in run]
    i = bisect.bisect_left(times, t)
    if i < len(run) and times[i] == t:
        return run[i][1]
    if i == 0 or i == len(run):
        return None
    (t0, v0), (t1, v1) = run[i - 1], run[i]
    if t1 - t0 > gap_s:
        return None
    return v0 + (v1 - v0) * (t - t0) / (t1 - t0)


def write_arms_plot(
    series: dict[str, list[list[tuple[float, float]]]],
    event_s: float,
    path: Path,
    title: str,
    failed: dict[str, list[list[tuple[float, float]]]] | None = None,
) -> Path:
    """Latency over time per arm (every seed thin; bold, the mean over all seeds, only where every seed has a
    sample: :func:`seed_mean`) and, below, the share of requests that failed, drawn the same way."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, low) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, height_ratios=(3, 1))
    for axis, data in ((ax, series), (low, failed or {})):
        for arm, runs in data.items():
            colour = ARM_COLOURS.get(arm)
            for run in runs:
                axis.plot(*with_gaps(run), color=colour, alpha=0.25, linewidth=0.8)
            label = f"{arm}: mean of all {len(runs)} seeds (thin: each seed)"
            axis.plot(*with_gaps(seed_mean(runs)), color=colour, linewidth=2, label=label)
        axis.axvline(event_s, linestyle="--", color="tab:red", alpha=0.7, linewidth=1)
        axis.grid(alpha=0.3)
    low.set_xlabel(
        "time since the start of the run (s); dashed red: the event; thin gaps: that seed had no successful request;"
        "\nbold gaps: some seed had none (the mean is drawn only where every seed has a value, never over survivors)"
    )
    ax.set_ylabel("successful requests' mean,\n5 s window (ms)")
    low.set_ylabel("share failed")
    ax.set_title(f"{title}\n({WORLD_NOTE})", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_calibration_plot(points: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Per move: the service's predicted gain (x) against the gain the world measured (y), by arm; y = x dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 6))
    for arm in sorted({str(p["arm"]) for p in points}):
        for held in (False, True):
            mine = [p for p in points if p["arm"] == arm and bool(p.get("event_in_window")) == held]
            if not mine:
                continue
            label = f"{arm} ({len(mine)} moves{', windows held the event' if held else ''})"
            ax.scatter([p["predicted_gain_ms"] for p in mine], [p["measured_gain_ms"] for p in mine], s=18,
                       alpha=0.7, label=label, color=ARM_COLOURS.get(arm) if not held else "none",
                       edgecolors=ARM_COLOURS.get(arm))  # fmt: skip
    values = [float(p[k]) for p in points for k in ("predicted_gain_ms", "measured_gain_ms")] or [0.0, 1.0]
    low, high = min([*values, 0.0]), max([*values, 0.0])
    ax.plot([low, high], [low, high], linestyle=":", color="black", linewidth=1, label="measured = predicted")
    ax.axhline(0, color="black", linewidth=0.5)
    ax.axvline(0, color="black", linewidth=0.5)
    ax.set_xlabel("predicted gain (ms): predicted_before_ms − predicted_after_ms")
    ax.set_ylabel("measured gain (ms): world's 5 s mean, 3 s before − 5–8 s after")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
