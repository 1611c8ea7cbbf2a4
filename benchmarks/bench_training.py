"""Benchmark: how fast does a 13-29 ``aggregator_sequential`` policy approach the best-known reduction?

Trains with ``data/train/fast.json`` under a wall-clock limit (10 minutes by default) on this
machine, validating every ``eval_freq_steps`` on held-out validation states, and writes the
learning curve (fraction of the best-known latency reduction and latency reduction vs wall time)
as ``curve.csv``, ``curve.md`` and ``curve.png``; then evaluates the best policy with every
baseline on the held-out evaluation seeds and writes ``evaluation/report.{json,md}`` and plots.
``--throughput`` instead measures env steps per second of PPO training for a few vec-env /
thread settings (the measurement behind the defaults). Heavy: run it under
``flock /tmp/reach-heavy.lock``. Usage: ``python benchmarks/bench_training.py --out benchmarks/results/training-13-29``.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET_FRACTION = 0.95


def greedy_reference(config: Any, scenario: Path, workload: Path) -> float:
    """Greedy's fraction of the best-known reduction on the validation states the curve is scored on."""
    from ceenv.baselines import run_greedy
    from ceenv.simulator import Simulator
    from flows.training.envs import make_env
    from flows.training.validation import Validator

    env = make_env(scenario, workload, config)
    validator = Validator(env, config.eval_episodes)
    best = sum(max(b, 0.0) for b in validator.best_reduction_ms)
    gained = sum(
        run_greedy(Simulator(env.model, env.layout, *state), config.step_cost_ms).reduction_ms
        for state in validator.states
    )
    return gained / best


def write_curve(curve: list[dict[str, float]], out: Path, minutes: float, greedy: float | None = None) -> None:
    """curve.csv, curve.md and curve.png of the validation curve (with greedy's level when given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with (out / "curve.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(curve[0]))
        writer.writeheader()
        writer.writerows(curve)
    lines = [
        "| wall time (s) | env steps | fraction of best-known reduction | latency reduction (%) | moves / episode |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {p['wall_seconds']:.0f} | {p['timesteps']:.0f} | {p['fraction_of_best_known']:.3f} | "
        f"{p['reduction_pct']:.1f} | {p['moves_per_episode']:.1f} |"
        for p in curve
    ]
    (out / "curve.md").write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(
        [p["wall_seconds"] / 60 for p in curve],
        [p["fraction_of_best_known"] for p in curve],
        marker="o",
        label="policy (validation)",
    )
    ax.axhline(TARGET_FRACTION, color="red", linestyle="--", label=f"target {TARGET_FRACTION:.0%} of best-known")
    if greedy is not None:
        ax.axhline(greedy, color="green", linestyle="-.", label=f"greedy, exact simulator ({greedy:.3f})")
    ax.axvline(minutes, color="grey", linestyle=":", label=f"{minutes:g}-minute budget")
    ax.set_xlabel("wall time (minutes, this machine)")
    ax.set_ylabel("fraction of the best-known latency reduction")
    ax.set_title("13-29 aggregator_sequential: MaskablePPO learning curve")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "curve.png", dpi=110)
    plt.close(fig)


def run_training(args: argparse.Namespace) -> None:
    from flows.evaluation import evaluate
    from flows.evaluation.output import write_report
    from flows.training import load_train_config, train

    out = Path(args.out)
    config = load_train_config(args.config, max_wall_seconds=args.minutes * 60, total_timesteps=args.max_steps)
    scenario = ROOT / "data" / "scenarios" / "13-29"
    workload = ROOT / "data" / "workloads" / "aggregator_sequential_call_patterns.json"
    result = train(config, scenario, workload, out / "run", progress=False)
    greedy = greedy_reference(config, scenario, workload)
    write_curve(result.curve, out, args.minutes, greedy)
    reached = [p for p in result.curve if p["fraction_of_best_known"] >= TARGET_FRACTION]
    summary = {
        "config": str(args.config),
        "timesteps": result.timesteps,
        "wall_seconds": result.wall_seconds,
        "steps_per_second": result.timesteps / result.wall_seconds,
        "best_validation_fraction": result.best_fraction_of_best_known,
        "best_at_timesteps": result.best_timesteps,
        "target_reached_at_seconds": reached[0]["wall_seconds"] if reached else None,
        "greedy_validation_fraction": greedy,
    }
    started = time.perf_counter()
    report, records = evaluate(
        scenario,
        [workload],
        result.artefact_dir,
        list(range(args.seeds)),
        args.episodes,
        ["steady", "node_failure", "traffic_surge"],
    )
    write_report(report, records, out / "evaluation")
    summary["evaluation_seconds"] = time.perf_counter() - started
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    print((out / "curve.md").read_text())
    print((out / "evaluation" / "report.md").read_text())


def replot(args: argparse.Namespace) -> None:
    """Redraw the curve of an earlier run from its curve.csv; record greedy's level in summary.json."""
    from flows.training import load_train_config

    out = Path(args.out)
    with (out / "curve.csv").open() as handle:
        curve = [
            {k: int(v) if k == "timesteps" else float(v) for k, v in row.items()} for row in csv.DictReader(handle)
        ]
    config = load_train_config(args.config)
    scenario = ROOT / "data" / "scenarios" / "13-29"
    workload = ROOT / "data" / "workloads" / "aggregator_sequential_call_patterns.json"
    greedy = greedy_reference(config, scenario, workload)
    write_curve(curve, out, args.minutes, greedy)
    summary_file = out / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    summary["greedy_validation_fraction"] = greedy
    summary_file.write_text(json.dumps(summary, indent=1))
    print(f"greedy on the validation states: {greedy:.3f}; redrew {out / 'curve.png'}")


THROUGHPUT_SETTINGS = [  # (vec_env, n_envs, torch threads, n_steps per env, batch size)
    ("dummy", 8, 1, 256, 256),  # data/train/fast.json, the previous default
    ("subproc", 2, 1, 1024, 256),
    ("batched", 64, 1, 64, 256),
    ("batched", 128, 1, 32, 1024),
    ("batched", 128, 2, 32, 1024),
    ("batched", 256, 2, 16, 1024),
]


def run_throughput(args: argparse.Namespace) -> None:
    """Env steps per second of MaskablePPO training, PPO updates included, per vec env and batch setting.

    Each setting trains 4 096 warm-up steps, then measures ``--throughput-steps`` more on 13-29
    ``aggregator_sequential`` (observation 3, gain-biased policy, 10 epochs per rollout); writes
    ``throughput.json`` and ``throughput.md`` under ``--out``.
    """
    import torch

    from flows.training import TrainConfig
    from flows.training.envs import make_vec_env
    from flows.training.trainer import build_model

    scenario = ROOT / "data" / "scenarios" / "13-29"
    workload = ROOT / "data" / "workloads" / "aggregator_sequential_call_patterns.json"
    rows = []
    for vec_env, n_envs, threads, n_steps, batch_size in THROUGHPUT_SETTINGS:
        torch.set_num_threads(threads)
        config = TrainConfig(
            vec_env=vec_env, n_envs=n_envs, torch_threads=threads, n_steps=n_steps, batch_size=batch_size
        )  # type: ignore[arg-type]
        venv = make_vec_env(scenario, workload, config)
        model = build_model(config, venv, None)
        model.learn(4096)
        began = time.perf_counter()
        model.learn(args.throughput_steps, reset_num_timesteps=False)
        rows.append(
            {
                "vec_env": vec_env,
                "n_envs": n_envs,
                "torch_threads": threads,
                "n_steps": n_steps,
                "batch_size": batch_size,
                "steps_per_second": round(args.throughput_steps / (time.perf_counter() - began)),
            }
        )
        venv.close()
        print(rows[-1], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "throughput.json").write_text(json.dumps(rows, indent=1))
    lines = [
        f"Training throughput on 13-29 aggregator_sequential (MaskablePPO, gain-biased policy, observation 3, "
        f"10 epochs per rollout, PPO updates included; {args.throughput_steps} measured steps after 4096 warm-up).",
        "Measured by `python benchmarks/bench_training.py --throughput`.",
        "",
        "| vec env | envs | torch threads | n_steps per env | batch size | env steps/s |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['vec_env']} | {r['n_envs']} | {r['torch_threads']} | {r['n_steps']} | {r['batch_size']} | "
        f"{r['steps_per_second']:,} |"
        for r in rows
    ]
    (out / "throughput.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(ROOT / "data" / "train" / "fast.json"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "training-13-29"))
    parser.add_argument("--minutes", type=float, default=10.0, help="Wall-clock training budget.")
    parser.add_argument(
        "--max-steps", type=int, default=50_000_000, help="Env-step cap (the wall clock normally stops first)."
    )
    parser.add_argument("--seeds", type=int, default=5, help="Evaluation seeds.")
    parser.add_argument("--episodes", type=int, default=20, help="Evaluation episodes per seed and family.")
    parser.add_argument("--throughput", action="store_true", help="Only measure training throughput.")
    parser.add_argument("--throughput-steps", type=int, default=16384, help="Measured steps per throughput setting.")
    parser.add_argument(
        "--replot", action="store_true", help="Only redraw curve.{png,md} from OUT/curve.csv (adds greedy's level)."
    )
    args = parser.parse_args()
    if args.throughput:
        run_throughput(args)
    elif args.replot:
        replot(args)
    else:
        run_training(args)


if __name__ == "__main__":
    main()
