"""Benchmark: a per-cluster fine-tune of the shipped general policy, judged as the bento serves it.

For each reference cell (REACH's 3 sizes x 3 workloads, or the ``--size``/``--workload`` chosen), fine-tunes
``data/policies/general-v4`` with ``data/train/finetune.json`` for ``--seconds`` of wall clock (the
pipeline's default fine-tune), then evaluates on held-out start states (``--seeds`` x ``--episodes``, the
families steady, node_failure and traffic_surge): the fine-tuned policy with decision-time planning (what
``reach demo`` serves), the same raw, and the general policy with planning and no fine-tune (what the
fine-tune adds). Per cell and family it gives each one's fraction of the best-known reduction beside
greedy's, moves per episode, invalid actions, the issue's targets (≥ greedy's fraction, moves ≤ greedy's
+ 1, 0 invalid, ≥ 0.95 on average) and the default gate's verdict on the fine-tuned planner. Writes
``<out>/finetune.md`` and ``<out>/finetune.json``. Heavy (about 2.5 minutes per cell): run it under
``flock /tmp/reach-heavy.lock``. Usage: ``python benchmarks/bench_finetune.py [--size 13-29] [--seconds 120]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_general import FAMILIES, REPORTS, TARGET_MEAN_FRACTION, evaluate_cells, gate_rows, row  # noqa: E402

GENERAL = ROOT / "data" / "policies" / "general-v4"
FINETUNE = ROOT / "data" / "train" / "finetune.json"


def fine_tune(scenario: Path, workload: Path, seconds: float, out: Path) -> dict[str, Any]:
    """Fine-tune the general policy on one cell for ``seconds``; the artefact and how the run went."""
    from flows.training import load_train_config, train

    config = load_train_config(FINETUNE, max_wall_seconds=seconds)
    result = train(config, scenario, workload, out, progress=False, tensorboard=False)
    return {
        "artefact": result.artefact_dir,
        "timesteps": result.timesteps,
        "wall_seconds": result.wall_seconds,
        "best_validation": result.best_fraction_of_best_known,
        "best_timesteps": result.best_timesteps,  # 0: no checkpoint validated above the starting weights
    }


def cell_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One setting on one cell over its families: mean fraction, and whether every family meets each target."""
    return {
        "fractions": {r["family"]: r["policy_fraction"] for r in rows},
        "greedy": {r["family"]: r["greedy_fraction"] for r in rows},
        "moves": {r["family"]: (r["policy_moves"], r["greedy_moves"]) for r in rows},
        "mean_fraction": statistics.fmean(r["policy_fraction"] for r in rows),
        "ge_greedy": all(r["ge_greedy"] for r in rows),
        "moves_ok": all(r["moves_ok"] for r in rows),
        "invalid": sum(r["invalid_actions"] for r in rows),
    }


def _families(values: dict[str, float]) -> str:
    return " / ".join(f"{values[f]:.3f}" for f in FAMILIES if f in values)


def markdown(cells: list[dict[str, Any]], settings: dict[str, Any]) -> str:
    yes = {True: "yes", False: "**no**"}
    lines = [
        "# Per-cluster fine-tune of the general policy (issue 14, item 5)",
        "",
        f"_Written by `benchmarks/bench_finetune.py` on {settings['written_utc']} UTC: `{settings['command']}` "
        f"({settings['wall_seconds']:.0f} s in all). Fine-tune: `data/train/finetune.json` from "
        f"`data/policies/general-v4`, {settings['seconds']:g} s wall clock per cell on this 2-core machine. "
        f"Held out: seeds {settings['seeds']} x {settings['episodes']} episodes per family. Fractions of the "
        "best-known reduction, steady / node failure / surge; moves per episode averaged over the families._"
        + (
            f" **Interrupted: {len(cells)} of {settings['cells_planned']} cells measured.**"
            if len(cells) < settings["cells_planned"]
            else ""
        ),
        "",
        "| cell | fine-tune steps (s) | fine-tuned + planning | greedy | moves (greedy) | ≥ greedy | moves ≤ greedy + 1 "
        "| invalid | default gate | fine-tuned raw | general + planning, no fine-tune |",
        "|---|---:|---|---|---:|---|---|---:|---|---|---|",
    ]
    for cell in cells:
        planned, raw, untuned = cell["planning"], cell["raw"], cell["untuned"]
        moves = statistics.fmean(m for m, _ in planned["moves"].values())
        greedy_moves = statistics.fmean(g for _, g in planned["moves"].values())
        lines.append(
            f"| {cell['scenario']} {cell['workload']} | {cell['timesteps']:,} ({cell['wall_seconds']:.0f}) "
            f"| {_families(planned['fractions'])} | {_families(planned['greedy'])} | {moves:.1f} ({greedy_moves:.1f}) "
            f"| {yes[planned['ge_greedy']]} | {yes[planned['moves_ok']]} | {planned['invalid']} "
            f"| {'passed' if cell['gate_passed'] else 'refused: ' + ', '.join(cell['gate_failed'])} "
            f"| {_families(raw['fractions'])} | {_families(untuned['fractions'])} |"
        )
    mean = statistics.fmean(c["planning"]["mean_fraction"] for c in cells)
    untuned = statistics.fmean(c["untuned"]["mean_fraction"] for c in cells)
    lines += [
        "",
        f"Mean fraction, fine-tuned + planning: **{mean:.3f}** (target ≥ {TARGET_MEAN_FRACTION}); general + "
        f"planning without the fine-tune: {untuned:.3f}. ≥ greedy in every family: "
        f"{sum(c['planning']['ge_greedy'] for c in cells)} of {len(cells)} cells; moves ≤ greedy + 1 in every "
        f"family: {sum(c['planning']['moves_ok'] for c in cells)} of {len(cells)}; default gate (all three "
        f"families): {sum(c['gate_passed'] for c in cells)} of {len(cells)}.",
    ]
    return "\n".join(lines) + "\n"


def write(
    args: argparse.Namespace, cells: list[dict[str, Any]], planning: dict[str, Any], began: float, planned: int
) -> None:
    command = "python benchmarks/bench_finetune.py" + "".join(
        [f" --size {s}" for s in args.size or []] + [f" --workload {w}" for w in args.workload or []]
    )
    settings = {
        "written_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "command": f"{command} --seconds {args.seconds:g} --seeds {args.seeds} --episodes {args.episodes}",
        "seconds": args.seconds,
        "seeds": list(range(args.seeds)),
        "episodes": args.episodes,
        "planning": planning,
        "wall_seconds": time.perf_counter() - began,
        "cells_planned": planned,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "finetune.json").write_text(json.dumps({"settings": settings, "cells": cells}, indent=1))
    (args.out / "finetune.md").write_text(markdown(cells, settings))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", action="append", help="Reference size (repeatable; default: all three).")
    parser.add_argument("--workload", action="append", help="Workload (repeatable; default: all three).")
    parser.add_argument("--seconds", type=float, default=120.0, help="Fine-tune wall-clock budget per cell.")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--gate-rules", type=Path, default=ROOT / "data" / "gate" / "default.json")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "finetune")
    args = parser.parse_args()
    import torch

    from bento.planning_settings import CHOSEN_PLAN_K
    from ceenv.reference import SIZES, WORKLOADS
    from flows.pipeline import PipelineParams
    from flows.training.general import reference_files

    torch.set_num_threads(1)
    began = time.perf_counter()
    # The chosen planning with the pipeline's defaults (bento.planning_settings), as `reach demo` serves.
    planning = PipelineParams(plan_k=CHOSEN_PLAN_K).planning()
    seeds = list(range(args.seeds))
    cells = []
    with tempfile.TemporaryDirectory(prefix="reach-finetune-") as scratch:
        sizes, workloads = args.size or list(SIZES), args.workload or list(WORKLOADS)
        for size in sizes:
            for workload in workloads:
                cell = reference_files(size, workload)
                print(f"{size} {workload}: fine-tuning for {args.seconds:g} s …", flush=True)
                run = fine_tune(*cell, args.seconds, Path(scratch) / f"{size}-{workload}")
                REPORTS.clear()
                evaluated = {
                    "planning": evaluate_cells(
                        run["artefact"], [cell], seeds, args.episodes, gate_label="planning", **planning
                    ),
                    "raw": evaluate_cells(run["artefact"], [cell], seeds, args.episodes),
                    "untuned": evaluate_cells(GENERAL, [cell], seeds, args.episodes, **planning),
                }
                gate = gate_rows(args.gate_rules)[0]
                summary = {k: cell_summary([row(g, k) for g in groups]) for k, groups in evaluated.items()}
                cells.append(
                    {"scenario": size, "workload": workload, **{k: v for k, v in run.items() if k != "artefact"},
                     **summary, "gate_passed": gate["all_passed"], "gate_failed": gate["failed"]}
                )  # fmt: skip
                print(f"  planning {_families(summary['planning']['fractions'])}", flush=True)
                write(
                    args, cells, planning, began, len(sizes) * len(workloads)
                )  # after every cell: an interrupted run keeps what it measured
    print((args.out / "finetune.md").read_text())


if __name__ == "__main__":
    main()
