"""Benchmark: how much of the best-known reduction a beam search finds within greedy's moves + 1.

``best_known`` (:func:`ceenv.search.best_known`) climbs with free moves from random walks of valid
moves, so its placement is reachable by migrations but may lie many of them away. This script measures, on the evaluation's held-out
start states (the same seeds, episodes and families as ``bench_general.py`` and ``reach evaluate``),
the best reduction a beam search over move sequences on the true conditions
(:func:`ceenv.search.beam_search`, no step cost) finds within ``k = greedy's moves + 1`` moves of
that very episode, as a fraction of the best-known reduction (the evaluation's own formula: per
seed, sum of reductions over sum of best-known reductions; mean over seeds). A beam gives a *lower
bound* of the k-move optimum, not an upper bound of what a policy reaches: the planner and even the
raw policy beat it in some groups. Two widths are run (a wider beam is not always better). Per
(cluster, workload, family): best-known moves (migrations needed), greedy's moves and fraction, and
the k-move fractions. A second beam (the widest width, up to ``--deep`` moves) shows what a
latency-guided search finds with more moves: ``best_known`` also walks through worse placements at
random, and in a full cluster some of its placements need such detours, which a beam prunes.
Writes ``<out>/bound.md`` and ``<out>/bound.json``; ``--tables`` rewrites ``bound.md`` from
``bound.json``. Heavy: run it under ``flock /tmp/reach-heavy.lock``. Usage: ``python
benchmarks/bench_bound.py --seeds 5 --episodes 4 --widths 16,64 --deep 12``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ["steady", "node_failure", "traffic_surge"]
TARGET = 0.95
DEFAULT_GATE = ROOT / "data" / "gate" / "default.json"


def gate_fraction() -> float:
    """The default gate's minimum fraction of the best-known reduction (``data/gate/default.json``)."""
    from flows.evaluation.gate import load_gate_rules

    return load_gate_rules(DEFAULT_GATE).min_fraction_of_best_known


def cell_records(
    scenario_dir: Path,
    workload_file: Path,
    seeds: list[int],
    episodes: int,
    widths: list[int],
    model: Path,
    deep: int,
) -> list[Any]:
    """Greedy, best-known, the k-move beam (one record per width) and the deep beam, per held-out episode."""
    from bento.artefact import read_metadata
    from ceenv.baselines import run_greedy
    from ceenv.env import CloudEdgeEnv
    from ceenv.scenario import load_scenario
    from ceenv.search import beam_search, best_known
    from ceenv.simulator import DEFAULT_STEP_COST_MS, Simulator
    from ceenv.workload import load_workload, workload_name
    from flows.evaluation.episodes import EpisodeRecord, start_state
    from flows.evaluation.seeds import evaluation_seed

    scenario = load_scenario(scenario_dir)
    workload = load_workload(workload_file, scenario)
    # The env of flows.evaluation.units for the general policy: its padded layout orders the pods as
    # the evaluation does, so greedy and best_known find exactly the evaluation's placements.
    limits = read_metadata(model).layout
    env = CloudEdgeEnv(
        scenario, workload, dynamic=True, step_cost_ms=DEFAULT_STEP_COST_MS, observation_version=4,
        max_nodes=limits["max_nodes"], max_slots=limits["max_slots"], measured_conditions=True,
    )  # fmt: skip
    records = []
    for family in FAMILIES:
        for seed in seeds:
            for episode in range(episodes):
                labels = {
                    "scenario": scenario.name, "workload": workload_name(workload_file), "family": family,
                    "seed": seed, "episode": episode, "invalid_actions": 0,
                }  # fmt: skip
                rng_seed = evaluation_seed(seed, episode)
                sim = Simulator(env.model, env.layout, *start_state(env, family, rng_seed))
                greedy = run_greedy(sim, DEFAULT_STEP_COST_MS)
                best = best_known(sim, np.random.default_rng(rng_seed))
                # The ceiling before 2026-12-01 (random placements of all pods, reachable or not), for comparison.
                before = best_known(sim, np.random.default_rng(rng_seed), restarts=4, kicks=4, reachable=False)
                for method, outcome in (("greedy", greedy), ("best_known", best), ("best_known_before", before)):
                    records.append(
                        EpisodeRecord(
                            method=method,
                            start_latency_ms=outcome.start_latency_ms,
                            end_latency_ms=outcome.end_latency_ms,
                            moves=outcome.moves,
                            decision_seconds=outcome.decision_seconds,
                            **labels,
                        )
                    )
                searches = [(f"beam_w{width}", greedy.moves + 1, width) for width in widths]
                for method, depth, width in [*searches, ("beam_deep", deep, max(widths))]:
                    began = time.perf_counter()
                    value, moves = beam_search(sim, depth, width)
                    records.append(
                        EpisodeRecord(
                            method=method,
                            start_latency_ms=sim.latency_ms,
                            end_latency_ms=value,
                            moves=len(moves),
                            decision_seconds=time.perf_counter() - began,
                            **labels,
                        )
                    )
    return records


def rows(records: list[Any], widths: list[int]) -> list[dict[str, Any]]:
    from flows.evaluation.report import summarize

    out = []
    for group in summarize(records):
        methods = group.methods
        out.append(
            {
                "scenario": group.scenario,
                "workload": group.workload,
                "family": group.family,
                "best_known_moves": methods["best_known"].moves_per_episode.mean,
                "greedy_moves": methods["greedy"].moves_per_episode.mean,
                "greedy_fraction": methods["greedy"].fraction_of_best_known.mean,
                **{f"k_fraction_w{w}": methods[f"beam_w{w}"].fraction_of_best_known.mean for w in widths},
                **{f"k_moves_w{w}": methods[f"beam_w{w}"].moves_per_episode.mean for w in widths},
                "deep_fraction": methods["beam_deep"].fraction_of_best_known.mean,
                "deep_moves": methods["beam_deep"].moves_per_episode.mean,
                "before_fraction": methods["best_known_before"].fraction_of_best_known.mean,
            }
        )
    return out


def _below_gate(table: list[dict[str, Any]], fraction: float) -> list[str]:
    return list(dict.fromkeys(f"{r['scenario']} {r['workload']}" for r in table if r["deep_fraction"] < fraction))


def markdown(table: list[dict[str, Any]], widths: list[int], settings: dict[str, Any]) -> str:
    from ceenv.search import CEILING_BEFORE

    wide = f"k_fraction_w{max(widths)}"
    gate = gate_fraction()
    mean = float(np.mean([r[wide] for r in table]))
    reachable = [r for r in table if r[wide] >= TARGET]
    lines = [
        "# The k-move beam: the best-known reduction a beam search finds within greedy's moves + 1",
        "",
        f"{len(settings['seeds'])} evaluation seeds x {settings['episodes']} episodes per (cluster, workload, family), "
        "the held-out start states of `reach evaluate` and `bench_general.py`. k = greedy's moves in that episode "
        "+ 1 (so a policy with k moves in every episode makes greedy's mean + 1). Beam search over move sequences on "
        "the true conditions (`ceenv.search.beam_search`, widths "
        + " and ".join(str(w) for w in widths)
        + "): a lower bound of the k-move optimum. Fractions: per seed, sum of reductions / sum of best-known "
        f"reductions, mean over seeds (the evaluation's formula). Best-known: {settings.get('best_known', CEILING_BEFORE)}; "
        f"the last column is the best-known reduction of {CEILING_BEFORE} as a fraction of this one: above 1 where "
        "it counted placements no migration reaches (or by the searches' spread, a few per cent). "
        f"Command: `{settings['command']}` "
        f"({settings['wall_seconds']:.0f} s on this machine).",
        "",
        f"Mean k-move fraction (width {max(widths)}) {mean:.3f}; ≥ {TARGET} in {len(reachable)}/{len(table)} groups"
        + (": " + ", ".join(f"{r['scenario']} {r['workload']} {r['family']}" for r in reachable) if reachable else "")
        + ".",
        "",
        f"Up to {settings['deep']} moves (beam width {max(widths)}): mean fraction "
        f"{np.mean([r['deep_fraction'] for r in table]):.3f}; cells (cluster, workload) where this beam stays below "
        f"the default gate's {gate} in some family: "
        + (", ".join(_below_gate(table, gate)) or "none")
        + " (a lower bound: the planner beats this beam in some groups).",
        "",
        "| cluster | workload | family | best-known moves | greedy moves | greedy fraction | "
        + " | ".join(f"k-move fraction (width {w})" for w in widths)
        + f" | fraction within {settings['deep']} moves (moves) | ceiling before 2026-12-01 ÷ this one |",
        "|---|---|---|---|---|---|" + "---|" * (len(widths) + 2),
    ]
    for r in table:
        lines.append(
            f"| {r['scenario']} | {r['workload']} | {r['family']} | {r['best_known_moves']:.1f} | {r['greedy_moves']:.1f} "
            f"| {r['greedy_fraction']:.3f} | "
            + " | ".join(f"{r[f'k_fraction_w{w}']:.3f}" for w in widths)
            + f" | {r['deep_fraction']:.3f} ({r['deep_moves']:.1f}) | "
            + (f"{r['before_fraction']:.3f} |" if "before_fraction" in r else "|")
        )
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model", type=Path, default=ROOT / "data" / "policies" / "general-v4",
        help="The general policy whose evaluation's start states (its layout limits) to use.",
    )  # fmt: skip
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--widths", default="16,64", help="Beam widths, comma-separated.")
    parser.add_argument("--deep", type=int, default=12, help="Moves of the deep beam (any number up to this).")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "general")
    parser.add_argument("--tables", action="store_true", help="Only rewrite bound.md from OUT/bound.json; no run.")
    args = parser.parse_args()
    if args.tables:
        recorded = json.loads((args.out / "bound.json").read_text())
        settings = recorded["settings"]
        (args.out / "bound.md").write_text(markdown(recorded["rows"], list(settings["widths"]), settings))
        print((args.out / "bound.md").read_text())
        return
    from ceenv.reference import SIZES, WORKLOADS
    from ceenv.search import CEILING
    from flows.training.general import reference_files

    began = time.perf_counter()
    widths = [int(w) for w in args.widths.split(",")]
    seeds = list(range(args.seeds))
    records = []
    for size in SIZES:
        for workload in WORKLOADS:
            cell = reference_files(size, workload)
            records += cell_records(*cell, seeds, args.episodes, widths, args.model, args.deep)
            print(f"{size} {workload} done", flush=True)
    table = rows(records, widths)
    settings = {
        "seeds": seeds,
        "episodes": args.episodes,
        "widths": widths,
        "deep": args.deep,
        "best_known": CEILING,
        "wall_seconds": time.perf_counter() - began,
        "command": f"python benchmarks/bench_bound.py --seeds {args.seeds} --episodes {args.episodes} "
        f"--widths {args.widths} --deep {args.deep}",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bound.json").write_text(json.dumps({"settings": settings, "rows": table}, indent=1))
    (args.out / "bound.md").write_text(markdown(table, widths, settings))
    print((args.out / "bound.md").read_text())


if __name__ == "__main__":
    main()
