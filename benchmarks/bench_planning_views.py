"""Benchmark: how much of planning's gap to greedy comes from the network it is shown, and how much from its noise charge.

Greedy is scored on the true drawn network; the policy and its planner (:mod:`bento.planning`) on
the measured one (the drawn network through 10 % log-normal noise, MODEL.md §4). Where greedy's
hill climb is already near the best a short search finds (the generated ``large-3001``), planning
can fall just below it. This script replays the evaluation's held-out start states (the same
seeds, episodes and families as ``bench_general.py`` and ``reach evaluate``) with four planners,
each the bento's planning (plan_k 4, 8 moves deep, width 12, margin 1) with:

- ``measured, noise charge``: what a bento serves (plan_noise 0.1, plan_confidence 1);
- ``measured, no charge``: the same measured network, plan_noise 0 and plan_confidence 0;
- ``true, noise charge``: the planner shown the true network (measurement noise 0), charge kept;
- ``true, no charge``: the true network and no charge, the same rule greedy stops by (a move must
  gain a step cost).

Each is scored against greedy on the same episodes, without the best-known search (the slow part
of an evaluation): the sum of its latency reductions over greedy's (≥ 1: at least greedy's), its
moves per episode, and in how many episodes it ended lower / level / higher than greedy. Default
cells: ``bench_general.py``'s two generated 38-node clusters (``<general>/clusters/large-*``, written
by that benchmark); ``--cluster DIR`` names others (the one ``*_call_patterns.json`` in it is the
workload). Writes ``<out>/planning_views.md`` and ``.json``; ``--tables`` rewrites the Markdown from
the JSON. About 2 minutes here. Heavy: run it under ``flock /tmp/reach-heavy.lock``. Usage:
``python benchmarks/bench_planning_views.py``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bento.planning_settings import PlanningSettings
from ceenv.env import DEFAULT_MEASUREMENT_NOISE

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ["steady", "node_failure", "traffic_surge"]
GENERAL = ROOT / "benchmarks" / "results" / "general"
LEVEL_MS = 1e-6  # end latencies this close count as level with greedy's


@dataclass(frozen=True)
class View:
    """One planner: the network it is shown (measurement noise) and its noise charge."""

    label: str
    measurement_noise: float  # of the env's measured network: 0 shows the true one
    plan_noise: float
    plan_confidence: float


SERVED = PlanningSettings.chosen()  # what a bento built with planning serves
VIEWS = (
    View("measured, noise charge (served)", DEFAULT_MEASUREMENT_NOISE, SERVED.plan_noise, SERVED.plan_confidence),
    View("measured, no charge", DEFAULT_MEASUREMENT_NOISE, 0.0, 0.0),
    View("true, noise charge", 0.0, SERVED.plan_noise, SERVED.plan_confidence),
    View("true, no charge", 0.0, 0.0, 0.0),
)


def workload_of(cluster: Path) -> Path:
    """The one ``*_call_patterns.json`` in ``cluster`` (how ``bench_general.py`` writes a generated cell)."""
    found = sorted(cluster.glob("*_call_patterns.json"))
    if len(found) != 1:
        raise SystemExit(
            f"{cluster}: expected one *_call_patterns.json workload in it, found {len(found)}; "
            "pass a cluster folder written by bench_general.py (or a REACH scenario folder holding one workload)"
        )
    return found[0]


def compare(ends: list[float], greedy_ends: list[float], starts: list[float]) -> dict[str, Any]:
    """A planner's episodes against greedy's on the same starts: reduction ratio and lower/level/higher counts."""
    reduction = sum(s - e for s, e in zip(starts, ends, strict=True))
    greedy = sum(s - e for s, e in zip(starts, greedy_ends, strict=True))
    lower = sum(e < g - LEVEL_MS for e, g in zip(ends, greedy_ends, strict=True))
    higher = sum(e > g + LEVEL_MS for e, g in zip(ends, greedy_ends, strict=True))
    return {
        "ratio": reduction / greedy if greedy > 0 else float("nan"),
        "lower": lower,
        "level": len(ends) - lower - higher,
        "higher": higher,
    }


def cell_rows(model: Path, cluster: Path, seeds: list[int], episodes: int, step_cost_ms: float) -> list[dict[str, Any]]:
    """Greedy and every view on each family's held-out episodes of one cluster."""
    import torch

    from bento.artefact import load_artefact
    from bento.planning import plan_action
    from ceenv.env import CloudEdgeEnv
    from ceenv.layout import layout_from_scenario
    from ceenv.scenario import load_scenario
    from ceenv.simulator import Simulator
    from ceenv.workload import load_workload
    from flows.evaluation.episodes import run_baselines, run_policy, start_state
    from flows.evaluation.report import EPISODE_DEFAULTS
    from flows.evaluation.seeds import evaluation_seed
    from flows.evaluation.units import evaluation_env

    torch.set_num_threads(1)
    max_steps = int(EPISODE_DEFAULTS["max_steps"])  # as reach evaluate plays its episodes
    scenario = load_scenario(cluster)
    workload = load_workload(workload_of(cluster), scenario)
    policy = load_artefact(model, layout_from_scenario(scenario))
    rows = []
    for family in FAMILIES:
        row: dict[str, Any] = {"cluster": scenario.name, "family": family, "views": {}}
        for view in (None, *VIEWS):
            noise = DEFAULT_MEASUREMENT_NOISE if view is None else view.measurement_noise
            env = evaluation_env(scenario, workload, policy, step_cost_ms, max_steps, measurement_noise=noise)
            starts, ends, moves = [], [], 0
            for seed in seeds:
                for episode in range(episodes):
                    reset_seed = evaluation_seed(seed, episode)
                    state = start_state(env, family, reset_seed)
                    if view is None:
                        sim = Simulator(env.model, env.layout, *state)
                        outcome = run_baselines(sim, reset_seed, step_cost_ms, ("greedy",))[0]
                    else:

                        def decide(obs: Any, mask: Any, view: View = view, env: CloudEdgeEnv = env) -> int:
                            return plan_action(
                                policy.model, env.simulator, SERVED.plan_k, SERVED.plan_horizon, step_cost_ms,
                                mask, SERVED.plan_width, SERVED.plan_margin, noise=view.plan_noise,
                                confidence=view.plan_confidence, greedy_slack=SERVED.move_cap_slack, observation=obs,
                            )  # fmt: skip

                        outcome = run_policy(env, state, decide)
                    starts.append(outcome.start_latency_ms)
                    ends.append(outcome.end_latency_ms)
                    moves += outcome.moves
            if view is None:
                row["greedy_ends"], row["starts"] = ends, starts
                row["greedy_moves"] = moves / len(ends)
                continue
            if starts != row["starts"]:  # the shown network is drawn after the start: every view starts alike
                raise RuntimeError(f"{scenario.name} {family}: {view.label} started from other states than greedy")
            row["views"][view.label] = {
                **compare(ends, row["greedy_ends"], row["starts"]),
                "moves": moves / len(ends),
                "ends": ends,
            }
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]], settings: dict[str, Any]) -> str:
    labels = [v.label for v in VIEWS]
    planning = settings["planning"]
    served = (
        f"plan_k {planning['plan_k']}, {planning['plan_horizon']} moves deep, width {planning['plan_width']}, "
        f"margin {planning['plan_margin']:g}"
    )
    lines = [
        "# Planning's view of the network against greedy's (issue 14)",
        "",
        f"_Written by `benchmarks/bench_planning_views.py` on {settings['written_utc']} UTC: `{settings['command']}` "
        f"({settings['wall_seconds']:.0f} s). Model `{settings['model']}`; seeds {settings['seeds']} x "
        f"{settings['episodes']} episodes per family, the evaluation's held-out start states. Greedy sees the true "
        f"network; each planner ({served}) the measured one (relative log-normal noise "
        f"{settings['measurement_noise']:g}) or the true one, with the noise charge (plan_noise {planning['plan_noise']:g} x plan_confidence "
        f"{planning['plan_confidence']:g}, what a bento serves) or without. Each cell: the planner's summed latency reduction over greedy's (>= 1: at least greedy's), "
        "moves per episode, and episodes ending lower / level / higher than greedy's._",
        "",
        "| cluster | family | greedy moves | " + " | ".join(labels) + " |",
        "|---|---|---:|" + "---:|" * len(labels),
    ]
    for row in rows:
        cells = []
        for label in labels:
            v = row["views"][label]
            cells.append(f"{v['ratio']:.3f} ({v['moves']:.1f} moves; {v['lower']}/{v['level']}/{v['higher']})")
        lines.append(f"| {row['cluster']} | {row['family']} | {row['greedy_moves']:.1f} | " + " | ".join(cells) + " |")
    at_least = {label: sum(r["views"][label]["ratio"] >= 1.0 for r in rows) for label in labels}
    lines += [
        "",
        "Groups at or above greedy's reduction: "
        + "; ".join(f"{label} {at_least[label]}/{len(rows)}" for label in labels)
        + ".",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model", type=Path, default=ROOT / "data" / "policies" / "general-v4",
        help="The general (observation v4) policy that seeds the planner.",
    )  # fmt: skip
    parser.add_argument(
        "--cluster", type=Path, action="append",
        help="A cluster folder with one *_call_patterns.json workload (repeatable; default: bench_general.py's "
        "generated clusters under benchmarks/results/general/clusters/).",
    )  # fmt: skip
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--step-cost-ms", type=float, default=1.25)
    parser.add_argument("--out", type=Path, default=GENERAL)
    parser.add_argument("--tables", action="store_true", help="Only rewrite planning_views.md from its JSON; no run.")
    args = parser.parse_args(argv)
    if args.tables:
        recorded = json.loads((args.out / "planning_views.json").read_text())
        (args.out / "planning_views.md").write_text(markdown(recorded["rows"], recorded["settings"]))
        print((args.out / "planning_views.md").read_text())
        return
    clusters = args.cluster or sorted(p for p in (GENERAL / "clusters").glob("large-*") if p.is_dir())
    if not clusters:
        raise SystemExit(
            f"no generated clusters under {GENERAL / 'clusters'}; run benchmarks/bench_general.py first or pass --cluster"
        )
    for cluster in clusters:
        workload_of(cluster)  # every cluster checked before any work
    began = time.perf_counter()
    seeds = list(range(args.seeds))
    rows = []
    for cluster in clusters:
        started = time.perf_counter()
        rows += cell_rows(args.model, cluster, seeds, args.episodes, args.step_cost_ms)
        print(f"{cluster.name} done in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    model = args.model.resolve()
    settings = {
        "written_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "command": " ".join(["python benchmarks/bench_planning_views.py", *(shlex.quote(a) for a in argv)]),
        "wall_seconds": time.perf_counter() - began,
        "model": str(model.relative_to(ROOT) if model.is_relative_to(ROOT) else model),
        "seeds": seeds,
        "episodes": args.episodes,
        "step_cost_ms": args.step_cost_ms,
        "measurement_noise": DEFAULT_MEASUREMENT_NOISE,
        "planning": SERVED.to_dict(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "planning_views.json").write_text(json.dumps({"settings": settings, "rows": rows}, indent=1))
    (args.out / "planning_views.md").write_text(markdown(rows, settings))
    print((args.out / "planning_views.md").read_text())


if __name__ == "__main__":
    main()
