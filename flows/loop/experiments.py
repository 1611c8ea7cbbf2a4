"""REACH's experiments as functions: paired closed-loop runs per workload.

:func:`experiment` is ``reach demo experiment node-failure|surge`` (``reach demo`` itself, the
three stages, is :mod:`flows.loop.stages`): for each workload and each seed, the same run twice
from the same kind of start (by default the default scheduler's own placement) with the same
event — once with the migrator, once with the default scheduler only — and the reduction of the
mean latency after the event; per workload the mean ± standard deviation over the seeds, next to
REACH's published figures. All latencies are simulated from the live placement (see
:mod:`flows.loop.exporter`).
"""

from __future__ import annotations

import csv as csv_module
import json
import statistics
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from flows.loop.demo import Session, open_session
from flows.loop.policy import policy_url
from flows.loop.report import LoopRun, compare, latency_note, summary, table, write_csv, write_plot
from flows.loop.run import prepare_run, run_loop
from flows.loop.settings import DemoSettings

# REACH's published latency reductions on its testbed, in the order the paper lists its three apps
# (MODEL.md §5 lists the call patterns in this order).
REACH_PUBLISHED_PCT = {"aggregator_parallel": 7.9, "aggregator_sequential": 10.0, "chain": 8.0}
WORKLOADS = tuple(REACH_PUBLISHED_PCT)


@dataclass(frozen=True)
class Comparison:
    """One seeded pair of runs: the same start kind and event, without and with rescheduling."""

    workload: str
    experiment: str
    policy: str
    seed: int
    start_without_ms: float
    start_with_ms: float
    without_ms: float
    with_ms: float
    reduction_pct: float
    moves: int
    csv: str
    plot: str


@dataclass(frozen=True)
class WorkloadResult:
    """The seeded pairs of one workload and the spread of their reductions (sample standard deviation)."""

    workload: str
    experiment: str
    policy: str
    runs_count: int
    mean_reduction_pct: float
    sd_reduction_pct: float
    min_reduction_pct: float
    max_reduction_pct: float
    mean_without_ms: float
    mean_with_ms: float
    mean_moves: float
    reach_published_pct: float | None
    runs: list[Comparison] = field(default_factory=list)


def drained_nodes(run: LoopRun) -> list[str]:
    return [n for e in run.events if e.event == "drained" for n in e.source.split(",") if n]


def paired_runs(session: Session, workload: str, url: str, policy: str) -> tuple[LoopRun, LoopRun]:
    """The same kind of start and the same event, with the migrator and then without rescheduling.

    A node failure hits the nodes busiest at the event in the run with the migrator (unless
    ``drain`` names them); the run without rescheduling then loses the very same nodes.
    """
    prepare_run(session, workload)
    with_reach = run_loop(session, f"{workload}: with the migrator", url, policy)
    same_event = replace(session, settings=session.settings.model_copy(update={"drain": drained_nodes(with_reach)}))
    prepare_run(same_event, workload)
    without = run_loop(same_event, f"{workload}: default scheduler only", None, "")
    return without, with_reach


def one_pair(session: Session, workload: str, seed: int, url: str, policy: str) -> Comparison:
    """One seeded pair of runs for ``workload``: CSVs, a PNG and the numbers."""
    settings = session.settings.model_copy(update={"seed": seed})
    without, with_reach = paired_runs(replace(session, settings=settings), workload, url, policy)
    stem = f"{settings.experiment}-{Path(settings.scenario).name}-{workload}-s{seed}"
    write_csv(without, settings.out / f"{stem}-without.csv")
    csv = write_csv(with_reach, settings.out / f"{stem}-with.csv")
    plot = write_plot([without, with_reach], settings.out / f"{stem}.png",
                      f"{settings.experiment} at {settings.event_at_s:.0f} s: {workload}, seed {seed}, {policy}",
                      latency_note(settings.latency_source))  # fmt: skip
    numbers = compare(with_reach, without, settings.event_at_s)
    return Comparison(
        workload, settings.experiment, policy, seed, summary(without).before_ms, summary(with_reach).before_ms,
        numbers["without_ms"], numbers["with_ms"], numbers["reduction_pct"], len(with_reach.moves), str(csv),
        str(plot),
    )  # fmt: skip


def aggregate(runs: list[Comparison]) -> WorkloadResult:
    """Mean, sample standard deviation, min and max of the per-run reductions of one workload."""
    if not runs:
        raise ValueError("no run to aggregate: pass at least one seed")
    reductions = [r.reduction_pct for r in runs]
    return WorkloadResult(
        runs[0].workload, runs[0].experiment, runs[0].policy, len(runs),
        statistics.fmean(reductions), statistics.stdev(reductions) if len(runs) > 1 else 0.0,
        min(reductions), max(reductions), statistics.fmean(r.without_ms for r in runs),
        statistics.fmean(r.with_ms for r in runs), statistics.fmean(r.moves for r in runs),
        REACH_PUBLISHED_PCT.get(runs[0].workload), list(runs),
    )  # fmt: skip


RUN_FIELDS = ("workload", "experiment", "policy", "seed", "start_without_ms", "start_with_ms", "without_ms", "with_ms",
              "reduction_pct", "moves", "csv", "plot")  # fmt: skip


def write_workload(result: WorkloadResult, out: Path, scenario: str) -> Path:
    """``<experiment>-<scenario>-<workload>.json`` (summary and every run) and ``…-runs.csv`` (one row per run)."""
    stem = out / f"{result.experiment}-{scenario}-{result.workload}"
    with stem.with_name(f"{stem.name}-runs.csv").open("w", newline="") as handle:
        writer = csv_module.writer(handle)
        writer.writerow(RUN_FIELDS)
        writer.writerows([getattr(r, f) for f in RUN_FIELDS] for r in result.runs)
    path = stem.with_name(f"{stem.name}.json")
    path.write_text(json.dumps(asdict(result), indent=1))
    return path


def experiment(settings: DemoSettings, workloads: list[str], seeds: list[int]) -> list[WorkloadResult]:
    """Seeded paired runs per workload; CSVs and a PNG per pair, JSON and a runs CSV per workload."""
    if not seeds:
        raise ValueError("no seed: pass --runs N (N ≥ 1) or --seeds 0,1,2")
    session = open_session(settings)
    settings.out.mkdir(parents=True, exist_ok=True)
    results = []
    for workload in workloads:
        url, policy = policy_url(settings, workload)
        result = aggregate([one_pair(session, workload, seed, url, policy) for seed in seeds])
        write_workload(result, settings.out, Path(settings.scenario).name)
        results.append(result)
    (settings.out / f"{settings.experiment}.json").write_text(json.dumps([asdict(r) for r in results], indent=1))
    return results


def comparison_table(results: list[WorkloadResult]) -> str:
    """Per workload: the mean ± standard deviation (min … max) of the reduction over the seeded runs, then each run."""
    head = (f"{'workload':<22} {'runs':>4} {'reduction mean ± sd':>20} {'min … max':>16} {'without ms':>10} "
            f"{'with ms':>8} {'moves':>5} {'REACH':>6}  policy")  # fmt: skip
    lines = [head]
    for r in results:
        published = f"{r.reach_published_pct:.1f}%" if r.reach_published_pct is not None else "-"
        lines.append(
            f"{r.workload:<22} {r.runs_count:>4} {f'{r.mean_reduction_pct:.1f} ± {r.sd_reduction_pct:.1f} %':>20} "
            f"{f'{r.min_reduction_pct:.1f} … {r.max_reduction_pct:.1f}':>16} {r.mean_without_ms:>10.1f} "
            f"{r.mean_with_ms:>8.1f} {r.mean_moves:>5.1f} {published:>6}  {r.policy}"
        )
    lines.append("per run (seed: start without/with ms → mean after the event without/with ms, reduction, moves):")
    for r in results:
        for c in r.runs:
            lines.append(
                f"  {c.workload:<22} seed {c.seed}: {c.start_without_ms:.1f}/{c.start_with_ms:.1f} → "
                f"{c.without_ms:.1f}/{c.with_ms:.1f} ms, {c.reduction_pct:.1f} %, {c.moves} moves"
            )
    lines.append("(reduction = mean latency after the event, default scheduler only vs with the migrator; ours is")
    lines.append(" measured on the local loop — the world's emulated requests, or on the simulated-latency loop (the")
    lines.append(" CEEnv model on the live placement) with --latency-source twin — not on a real testbed like REACH's)")
    return "\n".join(lines)


__all__ = ["WorkloadResult", "aggregate", "comparison_table", "experiment", "summary", "table"]
