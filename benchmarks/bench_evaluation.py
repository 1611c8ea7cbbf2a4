"""Benchmark: the pipeline's evaluation fan-out on Prefect's default task runner vs Dask, on this machine.

Trains a small policy first (4 096 steps on the scenario and workload, a few seconds; its quality
does not matter here, its inference cost does), then runs the same evaluation units (steady and
node-failure families, held-out seeds; the policy and every baseline including the best-known
search) through :func:`flows.evaluation.runner.evaluate_on`
with ``default`` (Prefect's thread pool), ``dask`` (a LocalCluster of one worker process per core,
started and closed inside the measured time) and ``dask://HOST:PORT`` (a standing LocalCluster's
scheduler, its workers warmed by one untimed run: the set-up of a shared Dask cluster), checks that
every runner gives the plain loop's records, and
writes ``benchmarks/results/evaluation/bench.md`` (+ ``bench.json``). Each runner is measured
``--repeats`` times; the table shows the median. Prefect runs against a temporary server (its test
harness), with PREFECT_HOME in a temporary folder. The best-known memo
(:mod:`flows.evaluation.ceilings`) is off in this process and its workers (``REACH_CEILING_MEMO=0``):
every runner searches every state, as the first evaluation of new states does. Heavy: run it under ``flock /tmp/reach-heavy.lock``.

    .venv/bin/python benchmarks/bench_evaluation.py [--seeds 4] [--episodes 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def comparable(records: list[object]) -> list[dict[str, object]]:
    """Records without their decision time (a measurement, not a result)."""
    return [{k: v for k, v in asdict(r).items() if k != "decision_seconds"} for r in records]  # type: ignore[call-overload]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", default="13-29")
    parser.add_argument("--workload", default="aggregator_sequential")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="Local Dask worker processes.")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "evaluation")
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="reach-bench-prefect-"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    from prefect.testing.utilities import prefect_test_harness

    from flows.evaluation.ceilings import MEMO_ENV

    os.environ[MEMO_ENV] = "0"  # the runners compare the same work: no state's ceiling comes from an earlier run
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.evaluation.runner import DEFAULT_THREADS, evaluate_on, evaluate_units
    from flows.evaluation.units import evaluate_unit, plan_units
    from flows.training import TrainConfig, train

    scenario = ROOT / "data" / "scenarios" / args.scenario
    workload = ROOT / "data" / "workloads" / f"{args.workload}_call_patterns.json"
    config = TrainConfig(total_timesteps=4096, n_envs=16, vec_env="batched", n_steps=128, batch_size=512, n_epochs=2)
    policy_dir = train(
        config, scenario, workload, tempfile.mkdtemp(prefix="reach-bench-policy-"), progress=False, tensorboard=False
    ).artefact_dir
    units = plan_units(
        scenario, [workload], ["steady", "node_failure"], list(range(args.seeds)), args.episodes, policy_dir
    )
    began = time.perf_counter()
    reference = comparable([r for unit in units for r in evaluate_unit(unit)])
    sequential_s = time.perf_counter() - began
    from distributed import LocalCluster

    times: dict[str, list[float]] = {"default": [], "pool": [], "dask": [], "standing": []}
    with (
        prefect_test_harness(server_startup_timeout=120),
        LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as standing,
    ):
        specs = {
            "default": "default",
            "pool": "Prefect's own default thread pool",
            "dask": "dask",
            "standing": standing.scheduler_address.replace("tcp", "dask"),
        }
        evaluate_on(specs["standing"], units)  # warm-up: the standing workers import torch and the code once
        for _ in range(args.repeats):
            for name, spec in specs.items():
                began = time.perf_counter()
                if name == "pool":  # what `default` was before 2026-12-01: as many threads as Prefect chooses
                    records = evaluate_units.with_options(task_runner=ThreadPoolTaskRunner())(units)
                else:
                    records = evaluate_on(spec, units, workers=args.workers)
                times[name].append(time.perf_counter() - began)
                if comparable(records) != reference:
                    raise SystemExit(f"runner {spec} gave other records than the sequential loop")
                print(name, round(times[name][-1], 2), flush=True)
    median = {name: statistics.median(t) for name, t in times.items()}
    rows = [
        ("plain loop, no Prefect (reference)", sequential_s, None),
        (f"`default`: Prefect's thread pool with {DEFAULT_THREADS} worker thread", median["default"], times["default"]),
        (
            f"Prefect's thread pool with its default worker count (unbounded: one thread per unit, {len(units)} here; "
            "`default` before 2026-12-01)",
            median["pool"],
            times["pool"],
        ),
        (
            f"Prefect + Dask, `dask`: a LocalCluster of {args.workers} worker processes started and closed per run",
            median["dask"],
            times["dask"],
        ),
        (
            f"Prefect + Dask, `dask://HOST:PORT`: a standing scheduler with {args.workers} warm worker processes",
            median["standing"],
            times["standing"],
        ),
    ]
    lines = [
        f"Evaluation fan-out on this machine ({os.cpu_count()} cores visible): {len(units)} units "
        f"({args.scenario}; {args.workload}; steady + node_failure; {args.seeds} seeds x "
        f"{args.episodes} episodes; a small trained policy and every baseline incl. best-known, searched on "
        "every run (the memo off); "
        f"{len(reference)} records). "
        f"Median of {args.repeats} runs. "
        f"Measured by `{' '.join(['python benchmarks/bench_evaluation.py', *sys.argv[1:]])}`. Dask pays for "
        "starting its cluster (and importing torch in each worker) per run with `dask`; a standing scheduler "
        "(`dask://HOST:PORT`) pays it once. Threads in one process contend for the GIL: the units are many small "
        "numpy operations.",
        "",
        "| runner | wall time (s) | runs (s) | speed-up vs `default` |",
        "|---|---|---|---|",
    ]
    for name, seconds, runs in rows:
        listed = ", ".join(f"{t:.1f}" for t in runs) if runs else "1 run"
        lines.append(f"| {name} | {seconds:.1f} | {listed} | {median['default'] / seconds:.2f}x |")
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.md").write_text(markdown)
    (args.out / "bench.json").write_text(
        json.dumps(
            {"units": len(units), "records": len(reference), "sequential_s": sequential_s, "runs_s": times}, indent=1
        )
    )


if __name__ == "__main__":
    main()
