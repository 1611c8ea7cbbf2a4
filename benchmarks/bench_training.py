"""Benchmark: how fast does a 13-29 ``aggregator_sequential`` policy approach the best-known reduction?

Trains with ``data/train/fast.json`` under a wall-clock limit (10 minutes by default) on this
machine, validating every ``eval_freq_steps`` on held-out validation states, and writes the
learning curve (fraction of the best-known latency reduction and latency reduction vs wall time)
as ``curve.csv``, ``curve.md`` and ``curve.png``; then evaluates the best policy with every
baseline on the held-out evaluation seeds and writes ``evaluation/report.{json,md}`` and plots.
The README's tables are ``curve.md`` and ``bench.md`` (the run's summary and the policy against
the baselines on the held-out states, one row per method and family), each headed by the command
and the date (``benchmarks/bench_tables.py``; ``scripts/readme_tables.py`` copies them into the
README). ``--tables`` rewrites both from the files of an earlier run (``curve.csv``,
``summary.json``, ``evaluation/report.json``) and says so in their first line. ``--throughput``
instead measures env steps per second of PPO training for a few vec-env / thread settings (the
measurement behind the defaults). Heavy: run it under ``flock /tmp/reach-heavy.lock``. Usage:
``python benchmarks/bench_training.py --out benchmarks/results/training-13-29``.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET_FRACTION = 0.95


def greedy_reference(config: Any, scenario: Path, workload: Path) -> float:
    """Greedy's fraction of the best-known reduction on the validation states the curve is scored on, by the
    curve's own formula (:meth:`flows.training.validation.Validator.score`: per env, the ratio of sums; the
    mean over envs). Greedy sees the true conditions, as in the evaluation."""
    import numpy as np

    from ceenv.baselines import run_greedy
    from ceenv.simulator import Simulator
    from flows.evaluation.episodes import fraction_of_best_known
    from flows.training.envs import make_env
    from flows.training.validation import Validator

    env = make_env(scenario, workload, config)
    validator = Validator(env, config.eval_episodes)
    fractions = []
    for states, best_ms in zip(validator.states, validator.best_reduction_ms, strict=True):
        best = sum(max(b, 0.0) for b in best_ms)
        gained = sum(
            run_greedy(Simulator(env.model, env.layout, *state), config.step_cost_ms, env.max_steps).reduction_ms
            for state in states
        )
        fractions.append(fraction_of_best_known(gained, best))
    return float(np.mean(fractions))


def write_curve(
    curve: list[dict[str, float]], out: Path, minutes: float, greedy: float | None = None, note: str = ""
) -> None:
    """curve.csv, curve.md and curve.png of the validation curve (with greedy's level when given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with (out / "curve.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(curve[0]))
        writer.writeheader()
        writer.writerows(curve)
    write_curve_table(curve, out, note)
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


def write_curve_table(curve: list[dict[str, float]], out: Path, note: str = "") -> None:
    """curve.md: the validation curve as a Markdown table, headed by the command and the date."""
    from bench_tables import table, write_tables

    rows = [
        [f"{p['wall_seconds']:.0f}", f"{p['timesteps']:,.0f}", f"{p['fraction_of_best_known']:.3f}",
         f"{p['reduction_pct']:.1f}", f"{p['moves_per_episode']:.1f}"]
        for p in curve
    ]  # fmt: skip
    header = ["wall time (s)", "env steps", "fraction of best-known reduction", "latency reduction (%)",
              "moves / episode"]  # fmt: skip
    write_tables(out / "curve.md", "bench_training.py", [table(header, rows, "rrrrr")], note=note)


def _estimate(value: dict[str, float], digits: int) -> str:
    half = (value["ci_high"] - value["ci_low"]) / 2
    return f"{value['mean']:.{digits}f}" + (f" ± {half:.{digits}f}" if half > 0 else "")


def write_bench_table(out: Path, note: str = "") -> None:
    """bench.md: the run's summary and the held-out evaluation (policy and baselines per family)."""
    from bench_tables import table, write_tables

    summary = json.loads((out / "summary.json").read_text())
    report = json.loads((out / "evaluation" / "report.json").read_text())
    reached = summary.get("target_reached_at_seconds")
    greedy = summary.get("greedy_validation_fraction")
    run = table(
        ["config", "env steps", "wall time (s)", "steps/s", "best validation fraction", "at env steps",
         f"{TARGET_FRACTION:g} reached", "greedy on the same states"],
        [[Path(summary["config"]).name, f"{summary['timesteps']:,}", f"{summary['wall_seconds']:.0f}",
          f"{summary['steps_per_second']:,.0f}", f"{summary['best_validation_fraction']:.3f}",
          f"{summary['best_at_timesteps']:,}", "no" if reached is None else f"after {reached:.0f} s",
          "—" if greedy is None else f"{greedy:.3f}"]],
        "lrrrrrlr",
    )  # fmt: skip
    rows = []
    for group in report["groups"]:
        for method, stats in group["methods"].items():
            rows.append(
                [group["family"], method, _estimate(stats["mean_end_latency_ms"], 1),
                 _estimate(stats["reduction_pct"], 1), _estimate(stats["fraction_of_best_known"], 3),
                 _estimate(stats["moves_per_episode"], 1), stats["invalid_actions"]]
            )  # fmt: skip
    settings = report.get("settings", {})
    evaluation = table(
        ["family", "method", "mean end latency (ms)", "reduction vs start (%)", "fraction of best-known",
         "moves / episode", "invalid actions"],
        rows,
        "llrrrrr",
    )  # fmt: skip
    caption = (
        f"Held-out evaluation: seeds {settings.get('seeds')}, {settings.get('episodes')} episodes per seed and family; "
        "± is the half-width of the 95 % interval over seeds."
    )
    write_tables(out / "bench.md", "bench_training.py", [run, caption, evaluation], note=note)


def rewrite_tables(args: argparse.Namespace) -> None:
    """``--tables``: curve.md and bench.md again from an earlier run's files (no training)."""
    out = Path(args.out)
    with (out / "curve.csv").open() as handle:
        curve = [
            {k: int(v) if k == "timesteps" else float(v) for k, v in row.items()} for row in csv.DictReader(handle)
        ]
    note = f", from the files of the run in {out.name}/ (curve.csv, summary.json, evaluation/report.json)"
    write_curve_table(curve, out, note)
    write_bench_table(out, note)
    print(f"rewrote {out / 'curve.md'} and {out / 'bench.md'}")


def run_training(args: argparse.Namespace) -> None:
    from ceenv.search import CEILING
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
        "best_known": CEILING,  # the ceiling of every fraction above
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
    write_bench_table(out)
    print(json.dumps(summary, indent=1))
    print((out / "curve.md").read_text())
    print((out / "bench.md").read_text())


def replot(args: argparse.Namespace) -> None:
    """Redraw the curve of an earlier run from its curve.csv; record greedy's level in summary.json.

    Greedy's level is computed now, against today's best-known ceiling: a run whose summary names
    another ceiling (or none: before 2026-12-01) is refused, since its curve divides by the other one.
    """
    from ceenv.search import CEILING, CEILING_BEFORE
    from flows.training import load_train_config

    out = Path(args.out)
    summary_file = out / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    if summary.get("best_known") != CEILING:
        raise SystemExit(
            f"{out}/curve.csv divides by another best-known ceiling "
            f"({summary.get('best_known') or CEILING_BEFORE}) than greedy's level would now "
            f"({CEILING}); run the benchmark again (without --replot) to draw both against one ceiling"
        )
    with (out / "curve.csv").open() as handle:
        curve = [
            {k: int(v) if k == "timesteps" else float(v) for k, v in row.items()} for row in csv.DictReader(handle)
        ]
    config = load_train_config(args.config)
    scenario = ROOT / "data" / "scenarios" / "13-29"
    workload = ROOT / "data" / "workloads" / "aggregator_sequential_call_patterns.json"
    greedy = greedy_reference(config, scenario, workload)
    write_curve(curve, out, args.minutes, greedy, f", redrawn from {out.name}/curve.csv of an earlier run")
    summary["greedy_validation_fraction"] = greedy
    summary_file.write_text(json.dumps(summary, indent=1))
    print(f"greedy on the validation states: {greedy:.3f}; redrew {out / 'curve.png'}")


# (config, vec_env, n_envs, torch threads, n_steps per env, batch size, grouped minibatches). "fast":
# observation 3 and the gain-biased network on 13-29 (TrainConfig's defaults otherwise); "general":
# data/train/general.json (observation 4, pod_node, measured conditions) across its 16 training clusters.
THROUGHPUT_SETTINGS = [
    ("fast", "dummy", 8, 1, 256, 256, False),  # data/train/fast.json, the previous default
    ("fast", "batched", 128, 2, 32, 1024, False),
    ("general", "dummy", 16, 1, 128, 256, False),  # data/train/general.json until this round
    ("general", "batched", 16, 1, 128, 256, False),
    ("general", "batched", 64, 2, 32, 1024, False),
    ("general", "dummy", 16, 1, 128, 256, True),  # minibatches grouped by cluster size
    ("general", "batched", 16, 1, 128, 256, True),
    ("general", "dummy", 16, 2, 128, 256, True),  # data/train/general.json now
    ("general", "batched", 64, 2, 32, 256, True),  # more envs stepped as one batch, same minibatches
    ("general", "batched", 128, 2, 16, 256, True),
    ("general", "batched", 256, 2, 8, 256, True),
]


def _setting_config(setting: tuple[Any, ...]) -> Any:
    """The TrainConfig of one :data:`THROUGHPUT_SETTINGS` entry (``general``: general.json's, overridden)."""
    from flows.training import TrainConfig

    name, vec_env, n_envs, threads, n_steps, batch_size, grouped = setting
    overrides = {
        "vec_env": vec_env,
        "n_envs": n_envs,
        "torch_threads": threads,
        "n_steps": n_steps,
        "batch_size": batch_size,
        "group_minibatches": grouped,
    }
    base = json.loads((ROOT / "data" / "train" / "general.json").read_text()) if name == "general" else {}
    return TrainConfig(**{**base, **overrides})


def _measure_throughput(setting: tuple[Any, ...], steps: int) -> float:
    """Env steps per second of one throughput setting: 4 096 warm-up steps, then ``steps`` timed ones."""
    import torch

    from flows.training.envs import make_vec_env
    from flows.training.general import training_clusters
    from flows.training.trainer import build_model

    config = _setting_config(setting)
    clusters = training_clusters(7) if setting[0] == "general" else None  # fast: 13-29 only
    torch.set_num_threads(config.torch_threads)
    scenario = ROOT / "data" / "scenarios" / "13-29"
    workload = ROOT / "data" / "workloads" / "aggregator_sequential_call_patterns.json"
    venv = make_vec_env(scenario, workload, config, clusters)
    model = build_model(config, venv, None)
    model.learn(4096)
    began = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    rate = steps / (time.perf_counter() - began)
    venv.close()
    return rate


def throughput_rows(rates: list[list[float]]) -> list[dict[str, Any]]:
    """One row per setting of :data:`THROUGHPUT_SETTINGS` from its rates over the rounds (median, min, max)."""
    rows = []
    for setting, measured in zip(THROUGHPUT_SETTINGS, rates, strict=True):
        config = _setting_config(setting)
        rows.append(
            {
                "config": setting[0],
                "policy": config.policy,
                "observation_version": config.observation_version,
                "n_epochs": config.n_epochs,
                "vec_env": config.vec_env,
                "n_envs": config.n_envs,
                "torch_threads": config.torch_threads,
                "n_steps": config.n_steps,
                "batch_size": config.batch_size,
                "group_minibatches": config.group_minibatches,
                "steps_per_second": round(statistics.median(measured)),
                "rounds": [round(r) for r in measured],
            }
        )
    return rows


def throughput_markdown(rows: list[dict[str, Any]], steps: int, rounds: int, when: str) -> str:
    """``throughput.md``: the settings and their median steps/s over the rounds, with the range."""
    lines = [
        f"Training throughput, MaskablePPO with PPO updates included ({steps} measured steps after "
        "4096 warm-up, 2 cores): `fast` = 13-29 aggregator_sequential, observation 3, gain-biased network; "
        "`general` = `data/train/general.json` across its 16 training clusters (observation 4, pod_node network, "
        f"measured conditions). Median of {rounds} round{'s' if rounds > 1 else ''} (every setting once per round, "
        "in table order; the range is the slowest and fastest round: this shared machine's speed drifts). "
        f"Measured by `python benchmarks/bench_training.py --throughput --rounds {rounds}` on {when}.",
        "",
        "| config | policy | obs | epochs | vec env | envs | torch threads | n_steps per env | batch size | "
        "minibatches grouped by size | env steps/s | range |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['config']} | {r['policy']} | v{r['observation_version']} | {r['n_epochs']} | {r['vec_env']} | "
        f"{r['n_envs']} | {r['torch_threads']} | {r['n_steps']} | {r['batch_size']} | "
        f"{'yes' if r.get('group_minibatches') else 'no'} | {r['steps_per_second']:,} | "
        f"{min(r['rounds']):,}–{max(r['rounds']):,} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


def run_throughput(args: argparse.Namespace) -> None:
    """Env steps per second of MaskablePPO training, PPO updates included, per config, vec env and batch setting.

    Each setting trains 4 096 warm-up steps, then measures ``--throughput-steps`` more: ``fast`` on
    13-29 ``aggregator_sequential`` (observation 3, gain-biased policy, 10 epochs per rollout),
    ``general`` with ``data/train/general.json`` across its 16 clusters (observation 4, pod_node,
    4 epochs). ``--rounds`` measures every setting that many times, round after round, and reports
    the median; writes ``throughput.json`` and ``throughput.md`` under ``--out``.
    """
    if args.rounds < 1:
        raise SystemExit(f"--rounds must be at least 1, not {args.rounds}")
    rates: list[list[float]] = [[] for _ in THROUGHPUT_SETTINGS]
    for round_index in range(args.rounds):
        for k, setting in enumerate(THROUGHPUT_SETTINGS):
            rates[k].append(_measure_throughput(setting, args.throughput_steps))
            print(f"round {round_index + 1}/{args.rounds}: {setting}: {rates[k][-1]:,.0f} steps/s", flush=True)
    rows = throughput_rows(rates)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "throughput.json").write_text(json.dumps(rows, indent=1))
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    (out / "throughput.md").write_text(throughput_markdown(rows, args.throughput_steps, args.rounds, when))


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
        "--rounds",
        type=int,
        default=3,
        help="Throughput: measure every setting this many times; the table shows the median.",
    )
    parser.add_argument(
        "--tables", action="store_true", help="Only rewrite curve.md and bench.md from OUT's files of an earlier run."
    )
    parser.add_argument(
        "--replot", action="store_true", help="Only redraw curve.{png,md} from OUT/curve.csv (adds greedy's level)."
    )
    args = parser.parse_args()
    if args.throughput:
        run_throughput(args)
    elif args.tables:
        rewrite_tables(args)
    elif args.replot:
        replot(args)
    else:
        run_training(args)


if __name__ == "__main__":
    main()
