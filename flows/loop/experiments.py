"""REACH's experiments as functions: three arms per seed and workload.

:func:`experiment` is ``reach demo experiment node-failure|surge`` and
``benchmarks/bench_experiments.py`` (``reach demo`` itself, the three stages, is
:mod:`flows.loop.stages`): per workload and seed, the default scheduler places the app once (that
placement is the start, and with a node failure it names the node that fails: the busiest, as in
the default arm at its event), then three **arms** from that start, re-applied with
``placement.place_app``, with the same event and the same world seed — the default scheduler
alone (no migrator), the learned policy (:mod:`flows.loop.arms`) and the greedy stand-in — in an
order set by the seed (:func:`arm_order`: over six seeds every order of the three arms once). Each arm
gets a fresh world (:func:`flows.loop.run.prepare_run`). Every number is the world's (Istio's
histogram through Prometheus), never the twin's: :mod:`flows.loop.cells` turns the trials into the
per-cell table with 95 % intervals.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from flows.loop import placement
from flows.loop.arms import (
    ARMS,
    DEFAULT_ARM,
    GREEDY_ARM,
    LEARNED_ARM,
    PROTOCOL,
    REACH_PUBLISHED_PCT,
    WORKLOADS,
    ArmResult,
    Trial,
    learned_policy,
    read_trials,
    write_trial,
)
from flows.loop.demo import Session, close_metrics, open_session
from flows.loop.placement import StartPlacement
from flows.loop.policy import start_standin
from flows.loop.report import LoopRun, summary, table
from flows.loop.run import client_nodes, failed_nodes, local_cluster, prepare_run, reset_app, run_loop
from flows.loop.settings import DemoSettings
from flows.loop.stats import move_gains, recovery_time_s, served_series, window_numbers

RECOVERY_TOLERANCE = 0.10  # recovered: the 5 s mean back within 10 % of its level in the 10 s before the event


EVENTS = ("node-failed", "surged")  # what flows.loop.run records when the experiment's event happens


def event_time_s(run: LoopRun, planned_s: float) -> float:
    """When the event happened, s since the start: the first recorded node failure or surge, else ``planned_s``."""
    times = [e.time_s - run.started_s for e in run.events if e.event in EVENTS]
    return min(times) if times else planned_s


def arm_result(arm: str, policy: str, run: LoopRun, settings: DemoSettings) -> ArmResult:
    """What the world measured in one arm after the event (``run.counters``) and the run's series."""
    if "event" not in run.counters or "end" not in run.counters:
        raise RuntimeError(f"{run.label}: the world's histogram was not read at the event and at the end (Prometheus?)")
    numbers = window_numbers(run.counters["event"], run.counters["end"], settings.qos_threshold_ms)
    if numbers.mean_ms is None:
        raise RuntimeError(f"{run.label}: the world completed no request after the event")
    fast = [(t - run.started_s, v) for t, v in run.fast_samples]
    failed = [(t - run.started_s, v) for t, v in run.failed_share_samples]
    event_s = event_time_s(run, settings.event_at_s)
    recovery = recovery_time_s(served_series(fast, failed), event_s, RECOVERY_TOLERANCE)
    window = (run.counted_s["end"] - run.counted_s["event"]) if {"event", "end"} <= set(run.counted_s) else None
    return ArmResult(
        arm, policy, numbers.mean_ms, numbers.p95_ms, len(run.moves), recovery, numbers.requests, numbers.over_qos,
        fast, [(e.time_s - run.started_s, e.event, e.pod, e.source, e.target) for e in run.events],
        calibration(run, event_s), numbers.failed, failed, moves_made(run), numbers.ok_mean_ms, event_s, window,
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


def arm_order(seed: int, arms: tuple[str, ...] = ARMS) -> list[str]:
    """The order the arms run in for ``seed`` (protocol 3, :mod:`flows.loop.arms`): a Williams design, the
    rotations of ``arms`` for seeds 0, 1, 2 and the rotations of its mirror (the first arm kept, the rest
    reversed) for seeds 3, 4, 5, repeating every six seeds. For three arms these are the six permutations, so in
    any six consecutive seeds each arm runs first, second and last twice and follows each
    other arm twice: what an arm inherits from the arm before it (each arm's cluster comes out of that arm) is
    spread evenly over the arms. Protocol 2's rotation alone kept the cycle (learned always after default)."""
    count = len(arms)
    block, shift = divmod(seed % (2 * count), count)
    base = list(arms) if block == 0 else [arms[0], *reversed(arms[1:])]
    return [*base[shift:], *base[:shift]]


def nodes_to_fail(session: Session) -> list[str]:
    """The nodes a node failure kills in every arm: the ones asked for, else the busiest cloud/edge nodes of the
    start placement (what the default scheduler's arm would pick at its event: nothing moves before it)."""
    s = session.settings
    if s.experiment != "node-failure" or s.fail_nodes:
        return list(s.fail_nodes)
    return placement.busiest_nodes(session.admin, s.namespace, s.fail_count, client_nodes(session))


def one_trial(session: Session, workload: str, seed: int, arms: dict[str, tuple[str, str]]) -> Trial:
    """The three arms of one seed from the default scheduler's placement, in the order :func:`arm_order` gives."""
    settings = session.settings.model_copy(update={"seed": seed, "start": "scheduler"})
    first = replace(session, settings=settings)
    reset_app(first, None)  # the default scheduler places the app: the start of every arm
    start = StartPlacement(placement.live_assignment(session.admin, settings.namespace), float("nan"))
    settings = settings.model_copy(update={"fail_nodes": nodes_to_fail(first)})
    deciders: dict[str, tuple[str | None, str]] = {DEFAULT_ARM: (None, "none (default scheduler only)"), **arms}
    order = [arm for arm in arm_order(seed) if arm in deciders]
    runs: dict[str, LoopRun] = {}
    for arm in order:
        same = replace(session, settings=settings)
        prepare_run(same, workload, start)
        url, policy = deciders[arm]
        runs[arm] = run_loop(same, f"{workload}: {arm}", url, policy)
    results = [arm_result(arm, deciders[arm][1], runs[arm], settings) for arm in ARMS if arm in runs]
    detection = local_cluster(session).recorded_failure_detection()
    return Trial(
        settings.experiment, Path(settings.scenario).name, workload, seed, settings.event_at_s, settings.duration_s,
        start.assignment, failed_nodes(runs[DEFAULT_ARM]), results, detection, PROTOCOL, settings.qos_threshold_ms,
        settings.world_rps, settings.surge_multiplier, order,
    )  # fmt: skip


def check_out_folder(settings: DemoSettings) -> None:
    """Refuse, before any cluster work, an output folder holding trials of another protocol version: the
    new trials could not share a table with them (:func:`flows.loop.cells.table_protocol`), and a seed's
    new file would replace an old one of the same name."""
    other = sorted({t.protocol for t in read_trials(settings.out)} - {PROTOCOL})
    if other:
        raise ValueError(
            f"{settings.out} holds trials of protocol {other}, these runs would record protocol {PROTOCOL} "
            "(flows/loop/arms.py): run them into another output folder (--out), or move the old trials away"
        )


def experiment(settings: DemoSettings, workloads: list[str], seeds: list[int]) -> list[Trial]:
    """Three arms per workload and seed; one JSON per trial under ``settings.out`` (``write_trial``)."""
    if not seeds:
        raise ValueError("no seed: pass --runs N (N ≥ 1) or --seeds 0,1,2")
    if settings.latency_source != "world":
        raise ValueError("the experiments are measured by the world: use latency_source='world'")
    check_out_folder(settings)
    session = open_session(settings)
    settings.out.mkdir(parents=True, exist_ok=True)
    trials = []
    try:
        for workload in workloads:
            arms = {LEARNED_ARM: learned_policy(settings, workload), GREEDY_ARM: start_standin(settings, workload)}
            for seed in seeds:
                trial = one_trial(session, workload, seed, arms)
                write_trial(trial, settings.out)
                trials.append(trial)
    finally:  # its metrics port is free again: the next cell of one benchmark call opens a session of its own
        close_metrics(session)
    return trials


__all__ = ["REACH_PUBLISHED_PCT", "WORKLOADS", "Trial", "experiment", "summary", "table"]
