"""Simulator speed: env steps per second with random valid actions (resets included), on one core.

Protocol (the one REACH's prototype figure of ~2,400 steps/s on 7 nodes / 13 pods refers to): an
agent asks ``action_masks()``, picks a uniformly random valid action, steps; on termination or
truncation it resets (dynamic mode). Measured for every observation version (the full observation,
move gains included from version 3; version 4 as the general policy trains it, with measured
conditions) on 7-21, 13-29 and 19-37: one ``CloudEdgeEnv``, and
:class:`ceenv.vector.BatchedCloudEdgeEnv` with 64 and 256 copies stepped as one batch (the random
valid actions drawn for the whole batch at once by :func:`uniform_valid_actions`; steps counted
over all copies). Also measures
latency evaluations per second (one placement, and a batch of 256 as greedy and the search use it).
Writes its Markdown table to ``benchmarks/results/env/bench.md`` and the figures to ``bench.json``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_env.py [--seconds 3]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core, as the target says

import argparse  # noqa: E402  thread limits must be set before numpy loads
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

import ceenv  # noqa: E402
from ceenv.env import CloudEdgeEnv  # noqa: E402
from ceenv.layout import SUPPORTED_OBSERVATION_VERSIONS  # noqa: E402
from ceenv.vector import BatchedCloudEdgeEnv  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
SCENARIOS = ("7-21", "13-29", "19-37")
BATCHES = (64, 256)


def steps_per_second(env: gym.Env, seconds: float, seed: int = 0) -> tuple[float, int]:
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    masks = env.unwrapped.action_masks  # type: ignore[attr-defined]
    steps = resets = 0
    began = time.perf_counter()
    deadline = began + seconds
    while True:
        for _ in range(1000):
            valid = np.flatnonzero(masks())
            _, _, terminated, truncated, _ = env.step(valid[rng.integers(valid.size)])
            steps += 1
            if terminated or truncated:
                env.reset()
                resets += 1
        if time.perf_counter() > deadline:
            break
    return steps / (time.perf_counter() - began), resets


def uniform_valid_actions(rng: np.random.Generator, masks: np.ndarray) -> np.ndarray:
    """One uniformly random valid action per row of ``masks`` ``(B, A)`` (every row allows one at least).

    The valid actions of all rows in one ``flatnonzero`` (row-major, so each row's are contiguous),
    then one uniform index into each row's run: a quarter of the time of an argmax over ``B x A``
    uniform draws (the way of drawing until 2026-12-03), which on version 4's 3,201 padded actions
    took a quarter of the batched figure's time for the agent's part alone.
    """
    counts = np.count_nonzero(masks, axis=1)
    valid = np.flatnonzero(masks)
    picks = np.cumsum(counts) - counts + (rng.random(len(masks)) * counts).astype(np.int64)
    actions: np.ndarray = valid[picks] - np.arange(len(masks)) * masks.shape[1]
    return actions


def batched_steps_per_second(env: BatchedCloudEdgeEnv, seconds: float, seed: int = 0) -> float:
    """Steps per second over all copies; each copy takes a uniformly random valid action."""
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    steps = 0
    began = time.perf_counter()
    deadline = began + seconds
    while time.perf_counter() < deadline:
        for _ in range(20):
            env.step(uniform_valid_actions(rng, env.action_masks()))
            steps += env.num_envs
    return steps / (time.perf_counter() - began)


def evaluations_per_second(env: CloudEdgeEnv, seconds: float, batch: int) -> float:
    env.reset(seed=1)
    sim = env.simulator
    counts = np.repeat(sim.counts[None], batch, axis=0)
    done = 0
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        for _ in range(200):
            if batch == 1:
                sim.model.latency(sim.counts, sim.costs)
            else:
                sim.model.latency_batch(counts, sim.costs)
        done += 200 * batch
    return done / (time.perf_counter() - began)


def measure(name: str, workload: Path, seconds: float) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    scenario = DATA / "scenarios" / name
    for version in SUPPORTED_OBSERVATION_VERSIONS:
        measured = version >= 4  # the general policy's config (data/train/general.json)
        env = CloudEdgeEnv(scenario, workload, observation_version=version, measured_conditions=measured)
        single, resets = steps_per_second(env, seconds)
        row: dict[str, object] = {
            "scenario": name,
            "observation_version": version,
            "nodes": env.layout.node_count,
            "slots": env.layout.slot_count,
            "actions": env.layout.action_count,
            "observation_size": env.layout.observation_size,
            "steps_per_s": single,
            "resets": resets,
        }
        for batch in BATCHES:
            batched = BatchedCloudEdgeEnv(
                batch, scenario, workload, observation_version=version, measured_conditions=measured
            )
            row[f"batched_{batch}_steps_per_s"] = batched_steps_per_second(batched, seconds)
        if version == 3:  # ENV_ID's default observation
            wrapped = gym.make(ceenv.ENV_ID, scenario=str(scenario), workload=str(workload))
            row["steps_per_s_gym_make"] = steps_per_second(wrapped, seconds)[0]
            pod_node = gym.make(
                ceenv.ENV_ID_POD_NODE, scenario=str(scenario), workload=str(workload), measured_conditions=True
            )
            row["steps_per_s_gym_make_v4"] = steps_per_second(pod_node, seconds)[0]
            row["latency_evals_per_s"] = evaluations_per_second(env, seconds, 1)
            row["batched_latency_evals_per_s"] = evaluations_per_second(env, seconds, 256)
        rows.append(row)
        print(row, flush=True)
    return rows


def table(rows: list[dict[str, object]], workload: str, seconds: float) -> str:
    batch_heads = " | ".join(f"batched x{b} steps/s" for b in BATCHES)
    lines = [
        f"Env steps per second on one core (`OMP_NUM_THREADS=1`), random valid actions, resets included, "
        f"workload `{workload}`, {seconds:g} s per figure; v4 with measured conditions (the general policy's "
        "config). Measured by `python benchmarks/bench_env.py`.",
        "",
        f"| scenario | observation | obs size | actions | single env steps/s | {batch_heads} |",
        "|---|---|---|---|---|" + "---|" * len(BATCHES),
    ]
    for r in rows:
        batched = " | ".join(f"{r[f'batched_{b}_steps_per_s']:,.0f}" for b in BATCHES)
        lines.append(
            f"| {r['scenario']} | v{r['observation_version']} | {r['observation_size']} | {r['actions']} | "
            f"{r['steps_per_s']:,.0f} | {batched} |"
        )
    lines += [
        "",
        "| scenario | steps/s via gym.make (v3) | steps/s via gym.make (v4) | latency evals/s | "
        "batched latency evals/s (256) |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['scenario']} | {r['steps_per_s_gym_make']:,.0f} | {r['steps_per_s_gym_make_v4']:,.0f} | "
        f"{r['latency_evals_per_s']:,.0f} | "
        f"{r['batched_latency_evals_per_s']:,.0f} |"
        for r in rows
        if "latency_evals_per_s" in r
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per figure")
    parser.add_argument("--workload", default="aggregator_sequential")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "env", help="results folder")
    args = parser.parse_args()
    workload = DATA / "workloads" / f"{args.workload}_call_patterns.json"
    rows = [row for name in SCENARIOS for row in measure(name, workload, args.seconds)]
    markdown = table(rows, args.workload, args.seconds)
    print(markdown)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.md").write_text(markdown)
    (args.out / "bench.json").write_text(json.dumps({"workload": args.workload, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
