"""Simulator speed: env steps per second with random valid actions (resets included), on one core.

Protocol (the one REACH's prototype figure of ~2,400 steps/s on 7 nodes / 13 pods refers to): an
agent asks ``action_masks()``, picks a uniformly random valid action, steps; on termination or
truncation it resets (dynamic mode). Also measures latency evaluations per second (one placement,
and a batch of 256 as greedy and the search use it) for 7-21, 13-29 and 19-37.

    .venv/bin/python benchmarks/bench_env.py [--seconds 3] [--json out/bench_env.json]
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

DATA = Path(__file__).resolve().parents[1] / "data"
SCENARIOS = ("7-21", "13-29", "19-37")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per figure")
    parser.add_argument("--workload", default="aggregator_sequential")
    parser.add_argument("--json", type=Path, default=Path("out/bench_env.json"), help="where to write the results")
    args = parser.parse_args()
    workload = DATA / "workloads" / f"{args.workload}_call_patterns.json"
    rows = []
    for name in SCENARIOS:
        env = CloudEdgeEnv(DATA / "scenarios" / name, workload)
        wrapped = gym.make(ceenv.ENV_ID, scenario=str(DATA / "scenarios" / name), workload=str(workload))
        raw_sps, resets = steps_per_second(env, args.seconds)
        wrapped_sps, _ = steps_per_second(wrapped, args.seconds)
        rows.append(
            {
                "scenario": name,
                "nodes": env.layout.node_count,
                "slots": env.layout.slot_count,
                "actions": env.layout.action_count,
                "steps_per_s": raw_sps,
                "steps_per_s_gym_make": wrapped_sps,
                "resets": resets,
                "latency_evals_per_s": evaluations_per_second(env, args.seconds, 1),
                "batched_latency_evals_per_s": evaluations_per_second(env, args.seconds, 256),
            }
        )
    base = rows[0]
    print(
        "| scenario | nodes | slots | actions | env steps/s | steps/s via gym.make | latency evals/s | batched evals/s | step cost vs 7-21 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['scenario']} | {r['nodes']} | {r['slots']} | {r['actions']} | {r['steps_per_s']:,.0f} | "
            f"{r['steps_per_s_gym_make']:,.0f} | {r['latency_evals_per_s']:,.0f} | {r['batched_latency_evals_per_s']:,.0f} | "
            f"{base['steps_per_s'] / r['steps_per_s']:.2f}x |"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"workload": args.workload, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
