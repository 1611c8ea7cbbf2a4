"""The world's speed, and the sim-to-real gap: twin vs world, mean and p95, against load and per workload.

Speed (default): emulated requests per second of CPU time on one core, for the 21-pod 7-21 app
(every slot filled: client + 5 replicas of 4 services, spread over the 6 non-client nodes), with
and without the mesh metrics and traces; the target is ≥ 500/s so that the live world keeps up
with real time with headroom. Writes ``benchmarks/results/world/bench.md``.

Gap (``--gap``): for REACH's three workloads on 7-21 and a seeded random start placement each
(nominal conditions, as ``reach demo`` starts from), the twin's prediction beside the world's
measured mean and p95 at rps multipliers 1, 2, 4, 6, 8 (600 s of emulated time each, the default
non-ideal world). Writes ``benchmarks/results/world/gap.md`` and ``docs/world-gap.png``.

    .venv/bin/python benchmarks/bench_world.py [--gap] [--seconds 600]
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"

import argparse
import time
from pathlib import Path

import numpy as np

from ceenv.latency import LatencyModel
from ceenv.layout import layout_from_scenario
from ceenv.placement import draw_start
from ceenv.scenario import Scenario, load_scenario
from ceenv.workload import Workload, load_workload
from flows.loop.world.emulator import World
from flows.loop.world.measure import measure_world
from flows.loop.world.metrics import MeshMetrics
from flows.loop.world.model import Cluster, PodSpec, WorldOptions, pods_from_assignment
from flows.loop.world.traces import TraceLog

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "world"
WORKLOADS = ("chain", "aggregator_sequential", "aggregator_parallel")
LOADS = (1.0, 2.0, 4.0, 6.0, 8.0)


def load(workload: str) -> tuple[Scenario, Workload]:
    scenario = load_scenario(ROOT / "data" / "scenarios" / "7-21")
    return scenario, load_workload(ROOT / "data" / "workloads" / f"{workload}_call_patterns.json", scenario)


def full_app(scenario: Scenario) -> list[PodSpec]:
    """Every slot filled, replicas round-robin over the non-client nodes: 21 pods on 7-21."""
    workers = [n.name for n in scenario.nodes if n.layer != "client"]
    client = next(n.name for n in scenario.nodes if n.layer == "client")
    assignment = {"client": [client]}
    k = 0
    for service in scenario.services:
        if service.name != "client":
            assignment[service.name] = [workers[(k + r) % len(workers)] for r in range(service.max_replica)]
            k += 1
    return pods_from_assignment(Cluster.from_scenario(scenario), assignment)


def speed(seconds: float) -> str:
    scenario, workload = load("aggregator_parallel")
    pods = full_app(scenario)
    rows = []
    for label, mesh in (("world only", False), ("with Istio metrics, ping-mesh and traces", True)):
        metrics = MeshMetrics() if mesh else None
        traces = TraceLog(max_traces=10**9) if mesh else None
        world = World(scenario, workload, pods, WorldOptions(rps_multiplier=20.0), 1, metrics=metrics, traces=traces)
        began = time.process_time()
        world.run(seconds)
        cpu_s = time.process_time() - began
        n = len(world.completed.latency_ms)
        rows.append(
            f"| {label} | {len(pods)} | {n} | {seconds:.0f} | {cpu_s:.2f} | {n / cpu_s:,.0f} | {seconds / cpu_s:.1f} |"
        )
    head = [
        "# The world's speed (one core)",
        "",
        f"7-21, aggregator_parallel, 21 pods, 100 rps (5 rps × 20), default non-ideal world, seed 1. "
        f"Measured by `benchmarks/bench_world.py --seconds {seconds:.0f}` (CPU time of the process).",
        "",
        "| run | pods | requests | emulated s | CPU s | requests / CPU s | × real time |",
        "|---|---|---|---|---|---|---|",
    ]
    return "\n".join([*head, *rows]) + "\n"


def start_placement(scenario: Scenario, workload: Workload, seed: int) -> list[PodSpec]:
    """A seeded random feasible start (nominal conditions), as the env's reset draws it."""
    model = LatencyModel(scenario, workload)
    layout = layout_from_scenario(scenario)
    _, slot_node = draw_start(model, layout, np.random.default_rng(seed), dynamic=False)
    assignment: dict[str, list[str]] = {}
    for slot, node in enumerate(slot_node):
        if node >= 0:
            service = layout.service_names[layout.slot_service[slot]]
            assignment.setdefault(service, []).append(layout.node_names[node])
    return pods_from_assignment(Cluster.from_scenario(scenario), assignment)


def gap(seconds: float) -> str:
    rows = []
    curves: dict[str, list[tuple[float, float, float, float]]] = {}
    for name in WORKLOADS:
        scenario, workload = load(name)
        pods = start_placement(scenario, workload, seed=0)
        for rps in LOADS:
            m = measure_world(scenario, workload, pods, seconds, WorldOptions(rps_multiplier=rps), seed=1)
            curves.setdefault(name, []).append((rps, m.twin_ms, m.mean_ms, m.p95_ms))
            rows.append(
                f"| {name} | {rps:g} | {m.requests} | {m.failed} | {m.twin_ms:.1f} | {m.mean_ms:.1f} | "
                f"{m.p95_ms:.1f} | {100 * (m.mean_ms / m.twin_ms - 1):+.1f} % |"
            )
    plot(curves, ROOT / "docs" / "world-gap.png")
    head = [
        "# The sim-to-real gap: the twin's formula vs the world",
        "",
        f"7-21, a seeded random start placement per workload (seed 0, nominal conditions), the default "
        f"non-ideal world (service CV 0.5, jitter CV 0.2, drift), {seconds:.0f} s of emulated time per cell, seed 1. "
        "Measured by `benchmarks/bench_world.py --gap`; plot: `docs/world-gap.png`.",
        "",
        "| workload | rps × | requests | failed | twin ms | world mean ms | world p95 ms | mean vs twin |",
        "|---|---|---|---|---|---|---|---|",
    ]
    return "\n".join([*head, *rows]) + "\n"


def plot(curves: dict[str, list[tuple[float, float, float, float]]], target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4.4 * len(curves), 3.8), constrained_layout=True, sharey=True)
    for ax, (name, points) in zip(axes, curves.items(), strict=True):
        rps, twin, mean, p95 = (np.array(v) for v in zip(*points, strict=True))
        ax.plot(rps, twin, "k--", label="twin (MODEL.md §2)")
        ax.plot(rps, mean, "o-", color="tab:blue", label="world mean")
        ax.plot(rps, p95, "s-", color="tab:red", label="world p95")
        ax.set_title(f"7-21 / {name}", fontsize=10)
        ax.set_xlabel("rps multiplier (× 5 rps)")
        ax.set_yscale("log")
    axes[0].set_ylabel("end-to-end latency (ms)")
    axes[0].legend(fontsize=8)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gap", action="store_true", help="twin vs world against load and per workload")
    parser.add_argument("--seconds", type=float, default=None, help="emulated seconds per run")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.gap:
        text = gap(args.seconds or 600.0)
        (RESULTS / "gap.md").write_text(text, encoding="utf-8")
    else:
        text = speed(args.seconds or 300.0)
        (RESULTS / "bench.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
