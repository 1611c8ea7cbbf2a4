"""Measure a placement in the world, in virtual time, next to the twin's prediction: ``reach world measure``.

:func:`measure_world` runs a :class:`~flows.loop.world.emulator.World` for ``seconds`` of emulated
time (as fast as the CPU allows), gives the requests in flight :data:`DRAIN_S` more seconds to
finish, and summarises the requests that arrived in ``[warmup_s, seconds)``: count, failures, the
requests still unfinished after the drain (a saturated placement: the statistics, of the finished
requests only, are then too low), mean and percentiles of the end-to-end latency, and ``twin_ms``,
the CEEnv formula (MODEL.md §2) on the same placement under nominal conditions.
:func:`measure_placement` resolves names and the placement file as ``reach sim latency`` does
(same checks) and can write the world's traces as Jaeger JSON. Used by the CLI, the gap benchmark
and the tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ceenv.latency import LatencyModel, build_network, nominal_conditions
from ceenv.scenario import Scenario
from ceenv.workload import Workload
from flows.loop.world.emulator import World
from flows.loop.world.model import Cluster, PodSpec, WorldOptions, placement_counts, pods_from_assignment
from flows.loop.world.traces import TraceLog, write_jaeger

DRAIN_S = 120.0  # after the last arrival, requests in flight get this long to finish


@dataclass(frozen=True)
class Measurement:
    """What ``reach world measure --json`` prints (latencies in ms)."""

    requests: int  # finished successfully
    failed: int
    unfinished: int  # arrived in the window, still in flight after DRAIN_S: not in the latency statistics
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    twin_ms: float

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def twin_latency_ms(scenario: Scenario, workload: Workload, pods: Sequence[PodSpec]) -> float:
    """The twin's application latency (nominal conditions) of the same placement."""
    model = LatencyModel(scenario, workload)
    costs = model.prepare(build_network(scenario, nominal_conditions(scenario)))
    return float(model.latency(placement_counts(Cluster.from_scenario(scenario), pods), costs))


def summarise(world: World, since_ms: float, until_ms: float, twin_ms: float) -> Measurement:
    """Statistics of the successful requests that arrived in ``[since_ms, until_ms)``, the failed ones apart,
    and how many of those that arrived then have not finished (yet)."""
    done = world.completed
    start = np.asarray(done.start_ms)
    latency = np.asarray(done.latency_ms)
    ok = np.asarray(done.ok, dtype=bool)
    window = (start >= since_ms) & (start < until_ms)
    arrivals = np.asarray(world.arrived_ms)
    arrived = int(((arrivals >= since_ms) & (arrivals < until_ms)).sum())
    unfinished, failed = arrived - int(window.sum()), int((window & ~ok).sum())
    good = latency[window & ok]
    if good.size == 0:
        nan = float("nan")
        return Measurement(0, failed, unfinished, nan, nan, nan, nan, twin_ms)
    p50, p95, p99 = (float(v) for v in np.percentile(good, [50, 95, 99]))
    return Measurement(int(good.size), failed, unfinished, float(good.mean()), p50, p95, p99, twin_ms)


def measure_world(
    scenario: Scenario,
    workload: Workload,
    pods: Sequence[PodSpec],
    seconds: float,
    options: WorldOptions,
    seed: int,
    warmup_s: float = 0.0,
    traces: TraceLog | None = None,
) -> Measurement:
    """Run the world for ``seconds`` of emulated time and measure it (see the module docstring)."""
    if not seconds > warmup_s >= 0:
        raise ValueError(f"need seconds > warmup >= 0, got seconds={seconds}, warmup={warmup_s}")
    world = World(scenario, workload, pods, options, seed, traces=traces)
    world.run(seconds)
    world.stop_arrivals()
    world.run(DRAIN_S)
    return summarise(world, warmup_s * 1000.0, seconds * 1000.0, twin_latency_ms(scenario, workload, pods))


def checked_pods(
    scenario: Scenario, workload: Workload, assignment: Mapping[str, list[str]], file: str
) -> list[PodSpec]:
    """The placement file's pods, after the same checks as ``reach sim latency`` (layer rule, capacity)."""
    from ceenv.layout import layout_from_scenario
    from ceenv.placement import slots_from_assignment

    model = LatencyModel(scenario, workload)
    slots_from_assignment(model, layout_from_scenario(scenario), nominal_conditions(scenario), assignment, file)
    return pods_from_assignment(Cluster.from_scenario(scenario), assignment)


def measure_placement(
    scenario: str,
    workload: str,
    placement: Path,
    seconds: float,
    rps: float = 1.0,
    seed: int = 0,
    ideal: bool = False,
    traces_path: Path | None = None,
    max_traces: int = 1000,
) -> Measurement:
    """``reach world measure``: resolve the names and the file, measure, optionally write traces."""
    from ceenv.placement import load_assignment
    from flows.evaluation.placements import load_problem

    loaded, work = load_problem(scenario, workload)
    pods = checked_pods(loaded, work, load_assignment(placement), str(placement))
    options = WorldOptions(rps_multiplier=rps)
    if ideal:
        options = options.idealised()
    log = TraceLog(max_traces) if traces_path is not None else None
    result = measure_world(loaded, work, pods, seconds, options, seed, traces=log)
    if log is not None and traces_path is not None:
        write_jaeger(log, traces_path)
    return result
