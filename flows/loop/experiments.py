"""REACH's experiments as functions: three arms per seed and workload.

:func:`experiment` is ``reach demo experiment node-failure|surge`` and
``benchmarks/bench_experiments.py`` (``reach demo`` itself, the three stages, is
:mod:`flows.loop.stages`): per workload and seed, three **arms** from the same start with the same
event and the same world seed — the default scheduler alone (no migrator; its own placement is
recorded as the start), the learned policy (:mod:`flows.loop.arms`) and the greedy stand-in (both
from the recorded placement, re-applied with ``placement.place_app``). Every number is the world's
(Istio's histogram through Prometheus), never the twin's: :mod:`flows.loop.cells` turns the trials
into the per-cell table with 95 % intervals.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from flows.loop import placement
from flows.loop.arms import (
    DEFAULT_ARM,
    GREEDY_ARM,
    LEARNED_ARM,
    REACH_PUBLISHED_PCT,
    WORKLOADS,
    ArmResult,
    Trial,
    learned_policy,
    write_trial,
)
from flows.loop.demo import Session, open_session
from flows.loop.placement import StartPlacement
from flows.loop.policy import start_standin
from flows.loop.report import LoopRun, summary, table
from flows.loop.run import failed_nodes, local_cluster, prepare_run, run_loop
from flows.loop.settings import DemoSettings
from flows.loop.stats import move_gains, recovery_time_s, served_series, window_numbers

RECOVERY_TOLERANCE = 0.10  # recovered: the 5 s mean back within 10 % of its level in the 10 s before the event


def arm_result(arm: str, policy: str, run: LoopRun, settings: DemoSettings) -> ArmResult:
    """What the world measured in one arm after the event (``run.counters``) and the run's series."""
    if "event" not in run.counters or "end" not in run.counters:
        raise RuntimeError(f"{run.label}: the world's histogram was not read at the event and at the end (Prometheus?)")
    numbers = window_numbers(run.counters["event"], run.counters["end"], settings.qos_threshold_ms)
    if numbers.mean_ms is None:
        raise RuntimeError(f"{run.label}: the world completed no request after the event")
    fast = [(t - run.started_s, v) for t, v in run.fast_samples]
    failed = [(t - run.started_s, v) for t, v in run.failed_share_samples]
    recovery = recovery_time_s(served_series(fast, failed), settings.event_at_s, RECOVERY_TOLERANCE)
    return ArmResult(
        arm, policy, numbers.mean_ms, numbers.p95_ms, len(run.moves), recovery, numbers.requests, numbers.over_qos,
        fast, [(e.time_s - run.started_s, e.event, e.pod, e.source, e.target) for e in run.events],
        calibration(run, settings.event_at_s), numbers.failed, failed, moves_made(run), numbers.ok_mean_ms,
    )  # fmt: skip


def moves_made(run: LoopRun) -> list[dict[str, Any]]:
    """The run's completed moves, times in s since its start, with the service's predicted gain (None: none given)."""
    return [{"pod": m.pod, "target": m.target, "started_s": m.started_s - run.started_s,
             "done_s": m.done_s - run.started_s, "predicted_gain_ms": m.predicted_gain_ms}
            for m in run.predictions]  # fmt: skip


def calibration(run: LoopRun, event_s: float | None = None) -> list[dict[str, Any]]:
    """The calibration points of one run (:func:`flows.loop.stats.move_gains`; ``event_s`` since its start)."""
    series = [(t - run.started_s, v) for t, v in run.fast_samples]
    return move_gains(series, moves_made(run), event_s)


def one_trial(session: Session, workload: str, seed: int, arms: dict[str, tuple[str, str]]) -> Trial:
    """The three arms of one seed: default scheduler first (its placement and failed nodes are recorded), then the others."""
    settings = session.settings.model_copy(update={"seed": seed, "start": "scheduler"})
    first = replace(session, settings=settings)
    prepare_run(first, workload)
    start = StartPlacement(placement.live_assignment(session.admin, settings.namespace), float("nan"))
    baseline = run_loop(first, f"{workload}: default scheduler", None, "")
    same = replace(session, settings=settings.model_copy(update={"fail_nodes": failed_nodes(baseline)}))
    results = [arm_result(DEFAULT_ARM, "none (default scheduler only)", baseline, settings)]
    for arm, (url, policy) in arms.items():
        prepare_run(same, workload, start)
        run = run_loop(same, f"{workload}: {arm}", url, policy)
        results.append(arm_result(arm, policy, run, settings))
    detection = local_cluster(session).recorded_failure_detection()
    return Trial(settings.experiment, Path(settings.scenario).name, workload, seed, settings.event_at_s,
                 settings.duration_s, start.assignment, failed_nodes(baseline), results, detection)  # fmt: skip


def experiment(settings: DemoSettings, workloads: list[str], seeds: list[int]) -> list[Trial]:
    """Three arms per workload and seed; one JSON per trial under ``settings.out`` (``write_trial``)."""
    if not seeds:
        raise ValueError("no seed: pass --runs N (N ≥ 1) or --seeds 0,1,2")
    if settings.latency_source != "world":
        raise ValueError("the experiments are measured by the world: use latency_source='world'")
    session = open_session(settings)
    settings.out.mkdir(parents=True, exist_ok=True)
    trials = []
    for workload in workloads:
        arms = {LEARNED_ARM: learned_policy(settings, workload), GREEDY_ARM: start_standin(settings, workload)}
        for seed in seeds:
            trial = one_trial(session, workload, seed, arms)
            write_trial(trial, settings.out)
            trials.append(trial)
    return trials


__all__ = ["REACH_PUBLISHED_PCT", "WORKLOADS", "Trial", "experiment", "summary", "table"]
