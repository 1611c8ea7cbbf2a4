"""The demo and REACH's experiments as functions: one bounded closed-loop run, or paired runs per workload.

:func:`demo` is ``reach demo``: Prefect dashboard (optional), cluster, exporter, Prometheus, the
policy, the poor start, one run with the migrator, the report, and a background migrator left
running. :func:`experiment` is ``reach demo experiment node-failure|surge``: for each workload, the
same run twice from the same kind of start (by default the default scheduler's own placement) with
the same event — once with the migrator, once with the default scheduler only — and the reduction
of the mean latency after the event, next to REACH's published figures. All
latencies are simulated from the live placement (see :mod:`flows.exporter`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from flows.demo import DemoSettings, Session, keep_migrating, open_session, policy_url, prepare_run, run_loop
from flows.demo_report import LoopRun, Summary, compare, summary, table, write_csv, write_plot

# REACH's published latency reductions on its testbed, in the order the paper lists its three apps
# (MODEL.md §5 lists the call patterns in this order).
REACH_PUBLISHED_PCT = {"aggregator_parallel": 7.9, "aggregator_sequential": 10.0, "chain": 8.0}
WORKLOADS = tuple(REACH_PUBLISHED_PCT)


@dataclass(frozen=True)
class DemoResult:
    summary: Summary
    csv: Path
    plot: Path
    prometheus_url: str
    dashboard_url: str | None


@dataclass(frozen=True)
class Comparison:
    workload: str
    experiment: str
    policy: str
    without_ms: float
    with_ms: float
    reduction_pct: float
    moves: int
    reach_published_pct: float | None
    csv: str
    plot: str


def write_run(run: LoopRun, out: Path, stem: str, title: str) -> tuple[Path, Path]:
    return write_csv(run, out / f"{stem}.csv"), write_plot([run], out / f"{stem}.png", title)


def demo(settings: DemoSettings) -> DemoResult:
    """Bring up the loop, run it for ``duration_s`` and report; leaves everything running until ``reach down``."""
    dashboard = None
    if settings.prefect:
        from flows.ops import up

        dashboard = up().dashboard_url
    session = open_session(settings)
    url, policy = policy_url(settings, settings.workload)
    prepare_run(session, settings.workload)
    run = run_loop(session, f"{settings.workload} with the migrator", url, policy)
    stem = f"demo-{Path(settings.scenario).name}-{settings.workload}"
    csv, plot = write_run(run, settings.out, stem, f"reach demo: {settings.scenario} {settings.workload}, {policy}")
    result = DemoResult(summary(run), csv, plot, session.prometheus_url, dashboard)
    (settings.out / f"{stem}.json").write_text(json.dumps(asdict(result.summary), indent=1))
    if settings.keep_migrating:
        keep_migrating(session, url, policy)
    return result


def drained_nodes(run: LoopRun) -> list[str]:
    return [n for e in run.events if e.event == "drained" for n in e.source.split(",") if n]


def paired_runs(session: Session, workload: str) -> tuple[LoopRun, LoopRun, str]:
    """The same kind of start and the same event, with the migrator and then without rescheduling.

    A node failure hits the nodes busiest at the event in the run with the migrator (unless
    ``drain`` names them); the run without rescheduling then loses the very same nodes.
    """
    url, policy = policy_url(session.settings, workload)
    prepare_run(session, workload)
    with_reach = run_loop(session, f"{workload}: with the migrator", url, policy)
    same_event = replace(session, settings=session.settings.model_copy(update={"drain": drained_nodes(with_reach)}))
    prepare_run(same_event, workload)
    without = run_loop(same_event, f"{workload}: default scheduler only", None, "")
    return without, with_reach, policy


def experiment(settings: DemoSettings, workloads: list[str]) -> list[Comparison]:
    """Paired runs per workload; writes CSVs, one PNG per workload and ``<experiment>.json``."""
    session = open_session(settings)
    results = []
    for workload in workloads:
        without, with_reach, policy = paired_runs(session, workload)
        stem = f"{settings.experiment}-{Path(settings.scenario).name}-{workload}"
        write_csv(without, settings.out / f"{stem}-without.csv")
        csv = write_csv(with_reach, settings.out / f"{stem}-with.csv")
        plot = write_plot([without, with_reach], settings.out / f"{stem}.png",
                          f"{settings.experiment} at {settings.event_at_s:.0f} s: {workload}, {policy}")  # fmt: skip
        numbers = compare(with_reach, without, settings.event_at_s)
        results.append(Comparison(
            workload, settings.experiment, policy, numbers["without_ms"], numbers["with_ms"],
            numbers["reduction_pct"], len(with_reach.moves), REACH_PUBLISHED_PCT.get(workload), str(csv), str(plot),
        ))  # fmt: skip
    (settings.out / f"{settings.experiment}.json").write_text(json.dumps([asdict(r) for r in results], indent=1))
    return results


def comparison_table(results: list[Comparison]) -> str:
    lines = [
        f"{'workload':<24} {'without ms':>11} {'with ms':>9} {'reduction':>10} {'moves':>6} {'REACH (testbed)':>16}"
    ]
    for r in results:
        published = f"{r.reach_published_pct:.1f} %" if r.reach_published_pct is not None else "-"
        lines.append(
            f"{r.workload:<24} {r.without_ms:>11.1f} {r.with_ms:>9.1f} {r.reduction_pct:>9.1f}% {r.moves:>6} {published:>16}"
        )
    lines.append("(mean latency after the event; ours is measured on the simulated-latency loop — the CEEnv model")
    lines.append(" evaluated on the live placement — not on a real testbed like REACH's figures)")
    return "\n".join(lines)


__all__ = ["DemoResult", "comparison_table", "demo", "experiment", "summary", "table"]
