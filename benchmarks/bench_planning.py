"""Benchmark: how the decision-time planner's depth, width, margin and noise charge trade quality, moves and time.

Evaluates the shipped general policy (``data/policies/general-v4``) with decision-time planning
(:mod:`bento.planning`, ``plan_k`` = the chosen one) in every reference cell (REACH's 3 sizes x 3
workloads) on held-out start states (``--seeds`` x ``--episodes``, families steady, node_failure and
traffic_surge), once per planning setting ``horizon/width/margin[/noise/confidence]`` given with
``--setting`` (three numbers: a fixed margin per move, the planner before the noise charge; the
row of the defaults of :mod:`bento.planning_settings` is marked). Per setting: the mean fraction
of the best-known reduction over the 27 (cell, family) groups, the cells whose every family is ≥
greedy's fraction, the cells (and groups) within greedy's moves + 1, the cells the default gate
passes, and the in-process decision time (``bento.policy.Policy.decide`` on REACH requests of
19-37, the largest reference cluster, as ``bench_general.decision_times_ms`` takes them: 1000 timed after 100
warm-up calls since 2026-12-01, 200 with no warm-up in the table written before: p50 and p99), and the mean fraction on bench_general's two
generated 38-node clusters (never trained on; a fixed margin is in step costs, so it weighs more on
an application whose moves gain a few ms; the noise charge is in the application's own scale). Writes ``<out>/planning.md`` (the README's
table) and ``<out>/planning.json``; ``--tables`` rewrites the table from ``planning.json``; ``--replace --setting …``
measures only the given settings and puts their rows in place of the same settings' rows of
``planning.json`` (same seeds and episodes; the table names the re-measured rows and when). Heavy (about
6 to 7 minutes per setting on this 2-core machine, 2026-12-02): run it under ``flock /tmp/reach-heavy.lock``. Usage:
``python benchmarks/bench_planning.py [--setting 8/12/1/0.1/1 ...]``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_finetune import cell_summary  # noqa: E402
from bench_general import REPORTS, decision_times_ms, evaluate_cells, gate_rows, memo_note, row  # noqa: E402
from bench_tables import table, write_tables  # noqa: E402

GENERAL = ROOT / "data" / "policies" / "general-v4"
TIMED_SIZE = "19-37"
DEFAULT_SETTINGS = [
    "8/12/8",
    "8/12/4",
    "8/12/1",
    "8/12/1/0.1/0.5",
    "8/12/1/0.1/1",
    "8/12/1/0.1/1.5",
    "8/12/1/0.1/2",
    "10/16/1/0.1/1",
    "8/12/1/0.1/1/2",
    "8/12/1/0.1/1/1",
    "8/12/1/0.1/1/0",
]  # horizon/width/margin[/noise/confidence[/slack]]; 8/12/8: the previous default (a fixed margin, no noise charge)
LARGE = 2  # generated 38-node clusters (bench_general's, never trained on) also measured per setting


def parse_setting(text: str) -> dict[str, Any]:
    """``"10/16/1/0.1/1"`` → the planning arguments (``plan_k`` chosen, horizon 10, width 16, margin 1, noise 0.1,
    confidence 1); ``"8/12/8"`` (no noise and confidence) is a fixed margin, the planner before the noise charge;
    ``"8/12/1/0.1/1/1"`` adds ``plan_slack`` 1 (no plan longer than greedy's moves from here + 1)."""
    from bento.planning_settings import CHOSEN_PLAN_K, NO_MOVE_CAP, PlanningSettings

    try:
        parts = text.split("/")
        if len(parts) not in (3, 5, 6):
            raise ValueError("3, 5 or 6 numbers")
        horizon, width, margin = parts[:3]
        noise, confidence = parts[3:5] if len(parts) >= 5 else ("0", "0")
        slack = parts[5] if len(parts) == 6 else str(NO_MOVE_CAP)
        settings = PlanningSettings(
            plan_k=CHOSEN_PLAN_K,
            plan_horizon=int(horizon),
            plan_width=int(width),
            plan_margin=float(margin),
            plan_noise=float(noise),
            plan_confidence=float(confidence),
            plan_slack=int(slack),
        )
    except ValueError as err:
        raise SystemExit(
            f"--setting {text!r}: give horizon/width/margin[/noise/confidence[/slack]], e.g. 8/12/1/0.1/1 ({err})"
        ) from None
    return settings.to_dict()


def label(planning: dict[str, Any]) -> str:
    """``8 / 12 / 8`` (a fixed margin), ``8 / 12 / 1, noise 0.1 × 1`` (with the noise charge), plus ``, slack 1``
    with a move cap (``plan_slack`` below the horizon; a row recorded before the setting has none)."""
    from bento.planning_settings import NO_MOVE_CAP

    text = f"{planning['plan_horizon']} / {planning['plan_width']} / {planning['plan_margin']:g}"
    if planning.get("plan_noise", 0) and planning.get("plan_confidence", 0):
        text += f", noise {planning['plan_noise']:g} × {planning['plan_confidence']:g}"
    if planning.get("plan_slack", NO_MOVE_CAP) < planning["plan_horizon"]:
        text += f", slack {planning['plan_slack']}"
    return text


def measure(
    planning: dict[str, Any], seeds: list[int], episodes: int, gate_rules: Path, large: list[tuple[Path, Path]]
) -> dict[str, Any]:
    """One planning setting over the 9 reference cells (per-cell summaries, gate verdicts, decision times) and ``large``."""
    from ceenv.reference import SIZES, WORKLOADS
    from flows.training.general import reference_files

    REPORTS.clear()
    cells = []
    for size in SIZES:
        for workload in WORKLOADS:
            groups = evaluate_cells(
                GENERAL, [reference_files(size, workload)], seeds, episodes, gate_label="planning", **planning
            )
            cells.append({"scenario": size, "workload": workload, **cell_summary([row(g, "planning") for g in groups])})
    gates = gate_rows(gate_rules)
    generated = [row(g, "planning") for g in evaluate_cells(GENERAL, large, seeds, episodes, **planning)]
    timing = decision_times_ms(GENERAL, *reference_files(TIMED_SIZE, "chain"), **planning)
    moves = [m for c in cells for m, _ in c["moves"].values()]
    return {
        "planning": planning,
        "cells": cells,
        "mean_fraction": statistics.fmean(f for c in cells for f in c["fractions"].values()),
        "ge_greedy_cells": sum(c["ge_greedy"] for c in cells),
        "moves_ok_cells": sum(c["moves_ok"] for c in cells),
        "gate_passed_cells": sum(g["all_passed"] for g in gates),
        "gate_failed": [f"{g['scenario']} {g['workload']}" for g in gates if not g["all_passed"]],
        "mean_moves": statistics.fmean(moves),
        "invalid": sum(c["invalid"] for c in cells),
        "decision_ms": timing,
        "generated": [
            {k: r[k] for k in ("scenario", "family", "policy_fraction", "greedy_fraction", "ge_greedy", "moves_ok")}
            for r in generated
        ],
    }


def markdown_blocks(results: list[dict[str, Any]]) -> list[str]:
    from bento.planning_settings import PlanningSettings

    chosen = PlanningSettings.chosen()
    rows = []
    for r in results:
        p = r["planning"]
        name = label(p) + (" (default)" if PlanningSettings.from_recorded(p).same_decisions(chosen) else "")
        groups = sum(policy <= greedy + 1 for c in r["cells"] for policy, greedy in c["moves"].values())
        rows.append(
            [
                name,
                f"{r['mean_fraction']:.3f}",
                f"{r['ge_greedy_cells']}/9",
                f"{r['moves_ok_cells']}/9 ({groups}/27)",
                f"{r['mean_moves']:.1f}",
                f"{r['gate_passed_cells']}/9",
                r["invalid"],
                f"{r['decision_ms']['p50_ms']:.1f} / {r['decision_ms']['p99_ms']:.1f}",
                _generated_cell(r.get("generated", [])),
            ]
        )
    header = [
        "horizon / width / margin, noise × confidence, slack",
        "mean fraction of best-known (27 groups)",
        "cells ≥ greedy",
        "cells (groups) with moves ≤ greedy + 1",
        "moves per episode",
        "default gate passes",
        "invalid",
        f"decision ms p50 / p99 ({TIMED_SIZE})",
        "generated 38-node clusters: mean fraction (groups ≥ greedy)",
    ]
    failed = "; ".join(f"{label(r['planning'])}: {', '.join(r['gate_failed']) or 'none'}" for r in results)
    return [table(header, rows, "lrrrrrrrr"), f"Cells the default gate refuses, per setting: {failed}."]


def _generated_cell(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "–"
    mean = statistics.fmean(r["policy_fraction"] for r in rows)
    return f"{mean:.3f} ({sum(r['ge_greedy'] for r in rows)}/{len(rows)})"


def replaced(recorded: dict[str, Any], run: dict[str, Any], arguments: str) -> dict[str, Any]:
    """``recorded`` (a planning.json) with ``run``'s rows in place of the same settings' rows (or added).

    The seeds and episodes must be the recorded ones (rows of one table compare like with like); the
    record keeps, per re-measurement, when, by which arguments and which rows (``replaced``).
    """
    if (run["seeds"], run["episodes"]) != (recorded.get("seeds"), recorded.get("episodes")):
        raise SystemExit(
            f"--replace: planning.json was measured on seeds {recorded.get('seeds')} x {recorded.get('episodes')} "
            f"episodes, this run on {run['seeds']} x {run['episodes']}; give the same --seeds and --episodes"
        )
    new = {label(r["planning"]): r for r in run["results"]}
    results = [new.pop(label(r["planning"]), r) for r in recorded["results"]] + list(new.values())
    history = [
        *recorded.get("replaced", []),
        {
            "written_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
            "arguments": arguments,
            "rows": [label(r["planning"]) for r in run["results"]],
            "wall_seconds": run["wall_seconds"],
        },
    ]
    return {**recorded, "results": results, "replaced": history}


def write(args: argparse.Namespace, run: dict[str, Any], how: str = "") -> None:
    """planning.md from a run's record (``planning.json``)."""
    results, seeds = run["results"], run.get("seeds", list(range(args.seeds)))
    whole = f"{run['wall_seconds']:.0f} s in all{memo_note(run)}{how}"
    if run.get("replaced"):
        whole = f"rows re-measured as said below; the other rows from the full sweep, {whole}"
    note = (
        f" ({whole}). The general policy `data/policies/general-v4` with planning "
        f"(plan_k {results[0]['planning']['plan_k']}), every reference cell, seeds {seeds} x "
        f"{run.get('episodes', args.episodes)} episodes "
        "per family (steady, node failure, surge); cells count (size, workload) pairs whose every family meets the "
        "target, groups count (cell, family) pairs; the last column: the same seeds on bench_general's 2 generated "
        "38-node clusters and applications (6 groups, never trained on)"
    )
    for again in run.get("replaced", []):
        note += (
            f". Re-measured on {again['written_utc']} UTC (`python benchmarks/bench_planning.py {again['arguments']}`, "
            f"{again['wall_seconds']:.0f} s): {'; '.join(again['rows'])}"
        )
    if run.get("replaced"):
        note += ". Rows named in no re-measurement are as the full sweep measured them"
    write_tables(args.out / "planning.md", "bench_planning.py", markdown_blocks(results), note=note)
    print((args.out / "planning.md").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--setting",
        action="append",
        help=f"horizon/width/margin[/noise/confidence[/slack]] (repeatable; default: {' '.join(DEFAULT_SETTINGS)}).",
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--gate-rules", type=Path, default=ROOT / "data" / "gate" / "default.json")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "planning")
    parser.add_argument("--tables", action="store_true", help="Rewrite planning.md from planning.json; no run.")
    parser.add_argument(
        "--replace",
        action="store_true",
        help="Measure only the --setting rows and put them in place of the same settings' rows of "
        "OUT/planning.json (the other rows kept as measured; the table says which rows were re-measured when).",
    )
    args = parser.parse_args()
    if args.replace and args.tables:
        parser.error("--replace measures rows and --tables measures none; give one of them")
    if args.replace and not args.setting:
        parser.error("--replace needs the --setting rows to re-measure, e.g. --replace --setting 8/12/1/0.1/1")
    recorded: dict[str, Any] | None = None
    if args.replace:  # checked before anything is measured
        record = args.out / "planning.json"
        if not record.is_file():
            parser.error(f"--replace: {record} does not exist; run the full sweep first (no --replace)")
        recorded = json.loads(record.read_text())
        if (list(range(args.seeds)), args.episodes) != (recorded.get("seeds"), recorded.get("episodes")):
            parser.error(
                f"--replace: {record} was measured on seeds {recorded.get('seeds')} x {recorded.get('episodes')} "
                f"episodes; give the same --seeds and --episodes"
            )
    if args.tables:
        write(args, json.loads((args.out / "planning.json").read_text()), ", rewritten from planning.json")
        return
    import torch

    from flows.evaluation import ceilings

    torch.set_num_threads(1)
    began = time.perf_counter()
    seeds = list(range(args.seeds))
    from bench_general import write_large_clusters

    large = write_large_clusters(Path(tempfile.mkdtemp(prefix="reach-bench-planning-")), LARGE)  # bench_general's
    results = []
    for text in args.setting or DEFAULT_SETTINGS:
        planning = parse_setting(text)
        print(f"planning {text} …", flush=True)
        results.append(measure(planning, seeds, args.episodes, args.gate_rules, large))
        print(f"  mean fraction {results[-1]['mean_fraction']:.3f}", flush=True)
    run = {
        "wall_seconds": time.perf_counter() - began,
        "ceilings": ceilings.memo_counts(),
        "seeds": seeds,
        "episodes": args.episodes,
        "results": results,
    }
    if recorded is not None:
        run = replaced(recorded, run, " ".join(shlex.quote(a) for a in sys.argv[1:]))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "planning.json").write_text(json.dumps(run, indent=1))
    write(args, run)


if __name__ == "__main__":
    main()
