"""What one closed-loop run measured, and how ``reach demo`` reports it: table, CSV time series, PNG.

A :class:`LoopRun` holds the latency samples read from Prometheus (simulated from the live
placement by :mod:`flows.loop.exporter`) and the events of the run (migrations with pod, source and
target; node drains; scaling). :func:`write_csv` writes ``timestamp, latency_ms, event, pod, from,
to``; :func:`write_plot` draws the latency with every event marked, in the style of REACH's
figures; :func:`summary` and :func:`compare` give the before/after numbers and the reduction
against a run without rescheduling. Used by :mod:`flows.loop.demo` and the closed-loop e2e test.
"""

from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass, field
from pathlib import Path

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
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "latency_ms", "event", "pod", "from", "to"])
        writer.writerows(csv_rows(run))
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
    ax.set_xlabel("time since start (s); dotted: migrations, dashed red: node drain / scaling")
    ax.set_ylabel("end-to-end latency (ms)")
    ax.set_title(f"{title}\n({note})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
