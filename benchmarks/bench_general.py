"""Benchmark: decision quality of the general (size-agnostic) policy in every cell, beside greedy.

Evaluates one artefact on held-out start states (evaluation seeds, ``--seeds`` of them, each with
``--episodes`` episodes) in every cell of REACH's 3 sizes x 3 workloads and on generated clusters
of 38 nodes (twice the largest training size, never trained on; their files are written under
``<out>/clusters/`` so ``reach evaluate`` can reuse them), in the families steady, node_failure and
traffic_surge (which grows each application's front service: the reference ``aggregator``, a
generated application's first-called service). For each (cluster, workload, family) it reports the policy's and greedy's fraction of
the best-known reduction (mean and 95 % CI over seeds), moves per episode and invalid actions, and
whether the issue's targets hold (fraction ≥ greedy's, moves ≤ greedy's + 1, 0 invalid; ≥ 0.95 on
average). ``--reach-model`` adds REACH's own setting (observation v1, plain MLP) as rows. The
in-process decision time (``bento.policy.Policy.decide`` on REACH requests, p50/p99) is measured
too, on every reference size and on the first generated cluster: ``--timing-warmup`` untimed calls
(lazy initialisation, allocator warm-up), then ``--timing-samples`` timed ones (default 1000, so the
p99 is the 10th-slowest of them, not the 2nd of 200); both counts are recorded. ``--timing-only``
re-measures only those times for the run recorded in ``<out>/general.json`` (its model, planning
settings and clusters, from its recorded command), rewrites the JSON's timing entries and then the
tables, without re-running the evaluation. ``--planning-only`` re-runs only the planning rows and their
gate verdicts of that recorded run (its model, seeds, planning settings and clusters), keeping its raw
and REACH rows and decision times, e.g. after a change to the planner alone. ``--plan-k`` adds the policy with decision-time planning (:mod:`bento.planning`), evaluated
through the evaluation itself (``reach evaluate --plan-k``), as the bento decides. The default gate
(``--gate-rules``) is applied to every reference cell's report, raw and with planning. Writes
``<out>/general.md``, ``<out>/summary.md`` (the README's table) and ``<out>/general.json``. Heavy: run it under
``flock /tmp/reach-heavy.lock``. Usage:
``python benchmarks/bench_general.py --model data/policies/general-v4 --out benchmarks/results/general``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from planning_options import add_planning_options

from bento.planning_settings import PlanningSettings

if TYPE_CHECKING:
    from flows.evaluation.episodes import Family

ROOT = Path(__file__).resolve().parents[1]
FAMILIES: list[Family] = ["steady", "node_failure", "traffic_surge"]
TARGET_MEAN_FRACTION = 0.95
DECISION_SAMPLES = 1000  # timed Policy.decide calls per (cluster, setting): the p99 is the 10th-slowest
DECISION_WARMUP = 100  # untimed calls first: lazy initialisation, allocator and cache warm-up


def write_large_clusters(out: Path, count: int) -> list[tuple[Path, Path]]:
    """Generated 38-node clusters and applications as REACH files under ``out/clusters``."""
    from flows.training.general import LARGE_GENERATOR_SEED, LARGE_LIMITS, LARGE_NODES, generated

    cells = []
    for k in range(count):
        seed = LARGE_GENERATOR_SEED + k
        drawn = generated(seed, LARGE_LIMITS, f"large-{seed}", nodes=LARGE_NODES)
        directory = out / "clusters" / drawn.name
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "nodes.json").write_text(json.dumps(drawn.nodes_doc, indent=1))
        (directory / "services.json").write_text(json.dumps(drawn.services_doc, indent=1))
        workload = directory / drawn.workload_file
        workload.write_text(json.dumps(drawn.workload_doc, indent=1))
        cells.append((directory, workload))
    return cells


def progress(line: str) -> None:
    """One line of progress on stderr (the tables go to stdout and the results folder)."""
    print(line, file=sys.stderr, flush=True)


def evaluate_cells(
    model: Path,
    cells: list[tuple[Path, Path]],
    seeds: list[int],
    episodes: int,
    families: list[Family] = FAMILIES,
    gate_label: str | None = None,
    **planning: Any,
) -> list[Any]:
    """Every (cluster, workload) cell x family: the evaluation report's groups (``planning``: plan_k etc.).

    With ``gate_label``, each cell's report is also kept in ``REPORTS`` for the gate section.
    """
    from flows.evaluation import evaluate

    groups = []
    what = "raw" if int(planning.get("plan_k") or 0) <= 0 else "planning"
    for done, (scenario, workload) in enumerate(cells, 1):
        began = time.perf_counter()
        report, _ = evaluate(
            scenario,
            [workload],
            model,
            seeds,
            episodes,
            families,
            baselines=("noop", "random", "greedy", "best_known"),
            **planning,
        )
        groups.extend(report.groups)
        progress(
            f"{model} {what}: {scenario.name} / {workload.stem} done in {time.perf_counter() - began:.0f} s "
            f"({done}/{len(cells)} cells)"
        )
        if gate_label is not None:
            REPORTS.append((gate_label, report))
    return groups


def memo_note(run: dict[str, Any]) -> str:
    """How often the best-known search ran and was reused (runs before the memo recorded nothing)."""
    counts = run.get("ceilings")
    if not counts:
        return ""
    return f"; the best-known search ran on {counts['misses']} states, its result was reused {counts['hits']} times"


REPORTS: list[tuple[str, Any]] = []  # (what was evaluated, one cell's evaluation report), for the gate section


def gate_rows(rules_file: Path) -> list[dict[str, Any]]:
    """The gate (``rules_file``) on every evaluated cell, raw and with planning: all families and steady only."""
    from flows.evaluation.gate import gate, load_gate_rules

    rules = load_gate_rules(rules_file)
    out = []
    for label, report in REPORTS:
        steady = report.model_copy(update={"groups": [g for g in report.groups if g.family == "steady"]})
        verdicts = {"all": gate(report, None, rules), "steady": gate(steady, None, rules)}
        fractions = {g.family: g.methods["policy"].fraction_of_best_known.mean for g in report.groups}
        group = report.groups[0]
        out.append(
            {
                "scenario": group.scenario,
                "workload": group.workload,
                "policy": label,
                "steady_passed": verdicts["steady"].passed,
                "all_passed": verdicts["all"].passed,
                "fractions": fractions,
                "failed": sorted({c.rule for c in verdicts["all"].checks if not c.passed}),
            }
        )
    return out


def time_decisions(policy: Any, bodies: Sequence[Any], samples: int, warmup: int) -> dict[str, Any]:
    """``warmup`` untimed ``policy.decide`` calls, then ``samples`` timed ones, cycling through ``bodies``.

    p50 and p99 (ms) of the timed calls, with the counts used (``samples``, ``warmup``).
    """
    if samples < 1 or warmup < 0 or not bodies:
        raise ValueError(f"need samples >= 1, warmup >= 0 and a body (samples {samples}, warmup {warmup})")
    for i in range(warmup):
        policy.decide(bodies[i % len(bodies)])
    times = []
    for i in range(samples):
        body = bodies[i % len(bodies)]
        began = time.perf_counter()
        policy.decide(body)
        times.append(1000 * (time.perf_counter() - began))
    return {
        "p50_ms": float(np.percentile(times, 50)),
        "p99_ms": float(np.percentile(times, 99)),
        "samples": samples,
        "warmup": warmup,
    }


def decision_times_ms(
    model: Path,
    scenario_dir: Path,
    workload_file: Path,
    samples: int = DECISION_SAMPLES,
    warmup: int = DECISION_WARMUP,
    **planning: Any,
) -> dict[str, Any]:
    """``Policy.decide`` (encode + network + answer) on REACH requests of this cluster: p50 and p99, ms.

    ``samples`` start states (seeds 0, 1, ...), each decided once timed, after ``warmup`` untimed decisions.
    """
    from bento.artefact import load_artefact
    from bento.policy import GateVerdict, NominalLatency, Policy, PolicyCard
    from ceenv.env import CloudEdgeEnv
    from ceenv.layout import layout_from_scenario
    from ceenv.payload import request_from_state
    from ceenv.schema import ActionRequest

    env = CloudEdgeEnv(scenario_dir, workload_file)
    loaded = load_artefact(model, layout_from_scenario(env.scenario, 3))
    card = PolicyCard.from_artefact(loaded.metadata, GateVerdict(passed=True, reason="benchmark"))
    latency = NominalLatency.from_files(str(scenario_dir), str(workload_file))
    policy = Policy(loaded, card, loaded.layout, "benchmark", latency, PlanningSettings.from_mapping(planning))
    bodies = []
    for seed in range(samples):
        env.reset(seed=seed)
        sim = env.simulator
        raw = request_from_state(
            env.layout, sim.free_cpu_millicores, sim.free_memory_bytes, sim.slot_node, sim.target_ok()
        )
        bodies.append(ActionRequest.model_validate(raw))
    return time_decisions(policy, bodies, samples, warmup)


def planning_of(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """The planning arguments of a run (``args``) and how the tables name them."""
    planning = {
        "plan_k": args.plan_k,
        "plan_horizon": args.horizon,
        "plan_width": args.plan_width,
        "plan_margin": args.plan_margin,
        "plan_noise": args.plan_noise,
        "plan_confidence": args.plan_confidence,
        "plan_slack": args.plan_slack,
    }
    what = (
        f"top-{args.plan_k} + width {args.plan_width}, {args.horizon} moves deep, margin {args.plan_margin:g}, "
        f"noise {args.plan_noise:g}, confidence {args.plan_confidence:g}"
    )
    if args.plan_slack < args.horizon:
        what += f", at most greedy's moves + {args.plan_slack} per plan"
    return planning, what


def timed_cells(
    args: argparse.Namespace, large: list[tuple[Path, Path]]
) -> dict[str, tuple[tuple[Path, Path], dict[str, Any]]]:
    """What the decision time is measured on: timing key → ((scenario dir, workload file), planning arguments).

    Every reference size (aggregator_sequential) and the first generated cluster, raw and (``--plan-k`` > 0)
    with planning.
    """
    from ceenv.reference import SIZES
    from flows.training.general import LARGE_NODES, reference_files

    clusters = {size: reference_files(size, "aggregator_sequential") for size in SIZES}
    if large:
        clusters[f"generated {large[0][0].name} ({LARGE_NODES} nodes)"] = large[0]
    cells: dict[str, tuple[tuple[Path, Path], dict[str, Any]]] = {
        f"{what}, raw policy": (files, {}) for what, files in clusters.items()
    }
    if args.plan_k > 0:
        planning, what = planning_of(args)
        for size, files in clusters.items():
            cells[f"{size}, with planning ({what})"] = (files, planning)
    return cells


def measure_timing(
    model: Path, cells: dict[str, tuple[tuple[Path, Path], dict[str, Any]]], samples: int, warmup: int
) -> dict[str, Any]:
    """:func:`decision_times_ms` of every cell of :func:`timed_cells`."""
    times = {}
    for key, (files, planning) in cells.items():
        began = time.perf_counter()
        times[key] = decision_times_ms(model, *files, samples=samples, warmup=warmup, **planning)
        progress(f"decision times: {key} done in {time.perf_counter() - began:.0f} s ({len(times)}/{len(cells)})")
    return times


def timing_note(settings: dict[str, Any]) -> dict[str, Any] | None:
    """How the recorded decision times were measured (``settings["timing"]``: samples, warm-up and, after
    ``--timing-only``, when and by which command), or None for a run recorded before the counts were kept."""
    return settings.get("timing")


def row(group: Any, label: str) -> dict[str, Any]:
    policy, greedy = group.methods["policy"], group.methods["greedy"]
    return {
        "setting": label,
        "scenario": group.scenario,
        "workload": group.workload,
        "family": group.family,
        "policy_fraction": policy.fraction_of_best_known.mean,
        "policy_ci": [policy.fraction_of_best_known.ci_low, policy.fraction_of_best_known.ci_high],
        "greedy_fraction": greedy.fraction_of_best_known.mean,
        "policy_moves": policy.moves_per_episode.mean,
        "greedy_moves": greedy.moves_per_episode.mean,
        "invalid_actions": policy.invalid_actions,
        "ge_greedy": policy.fraction_of_best_known.mean >= greedy.fraction_of_best_known.mean,
        "moves_ok": policy.moves_per_episode.mean <= greedy.moves_per_episode.mean + 1,
    }


def gate_markdown(gates: list[dict[str, Any]], rules_file: str) -> list[str]:
    """The gate section: one line per (reference cell, raw or planning)."""
    passed = {label: sum(g["steady_passed"] for g in gates if g["policy"] == label) for label in ("raw", "planning")}
    total = {label: sum(g["policy"] == label for g in gates) for label in ("raw", "planning")}
    lines = [
        f"## The default gate (`{rules_file}`) on every reference cell",
        "",
        "`flows.evaluation.gate.gate` (no incumbent) on each cell's evaluation report above: its steady family only, "
        "and all three families. Planning is evaluated the way the bento decides with `plan_k` "
        "(`reach evaluate --plan-k`, `flows.evaluation.units`). Steady family passes: "
        + "; ".join(f"{label} {passed[label]}/{total[label]}" for label in ("raw", "planning") if total[label])
        + ".",
        "",
        "| cluster | workload | policy | steady fraction | node_failure | traffic_surge | gate, steady | gate, all families "
        "| failed rules |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for g in gates:
        f = g["fractions"]
        lines.append(
            f"| {g['scenario']} | {g['workload']} | {g['policy']} | {f.get('steady', float('nan')):.3f} "
            f"| {f.get('node_failure', float('nan')):.3f} | {f.get('traffic_surge', float('nan')):.3f} "
            f"| {'pass' if g['steady_passed'] else 'FAIL'} | {'pass' if g['all_passed'] else 'FAIL'} "
            f"| {', '.join(g['failed']) or '–'} |"
        )
    return [*lines, ""]


def summary_markdown(rows: list[dict[str, Any]], timing: dict[str, Any], settings: dict[str, Any]) -> str:
    """One line per setting (the README's table): mean fraction, groups ((cell, family) pairs) ≥ greedy and within
    greedy's moves + 1."""
    note = timing_note(settings)
    caption = f"_Written by `benchmarks/bench_general.py` on {settings['written_utc']} UTC: `{settings['command']}`"
    caption += planning_note(settings)
    if note is not None and note.get("command"):
        caption += f"; decision times re-measured on {note['written_utc']} UTC: `{note['command']}`"
    p99_header = "decision p99"
    if note is not None:
        p99_header += f" ({note['samples']} timed calls after {note['warmup']} warm-up)"
    lines = [
        caption + "._",
        "",
        f"| setting | mean fraction of best-known (greedy) | ≥ greedy | moves ≤ greedy + 1 | invalid | {p99_header} |",
        "|---|---|---|---|---|---|",
    ]
    for label in dict.fromkeys(r["setting"] for r in rows):
        mine = [r for r in rows if r["setting"] == label]
        p99 = [
            t["p99_ms"]
            for what, t in timing.items()
            if ("planning" in what) == ("planning" in label) and ("generated" in what) == ("generated" in label)
        ]
        shown = f"{min(p99):.1f}–{max(p99):.1f} ms" if p99 and "REACH" not in label else ""
        lines.append(
            f"| {label}, {len(mine)} groups | {np.mean([r['policy_fraction'] for r in mine]):.3f} "
            f"({np.mean([r['greedy_fraction'] for r in mine]):.3f}) | {sum(r['ge_greedy'] for r in mine)}/{len(mine)} "
            f"| {sum(r['moves_ok'] for r in mine)}/{len(mine)} | {sum(r['invalid_actions'] for r in mine)} | {shown} |"
        )
    gates = settings["gate"]
    for label in ("raw", "planning"):
        mine = [g for g in gates if g["policy"] == label]
        if mine:
            lines.append(
                f"| default gate, {label}: reference cells passing (steady family / all three) "
                f"| {sum(g['steady_passed'] for g in mine)}/{len(mine)} / {sum(g['all_passed'] for g in mine)}/{len(mine)} "
                "| | | | |"
            )
    return "\n".join([*lines, ""])


def markdown(rows: list[dict[str, Any]], timing: dict[str, Any], settings: dict[str, Any]) -> str:
    lines = [
        "# General policy: decision quality in every cell",
        "",
        f"Model `{settings['model']}`; {len(settings['seeds'])} evaluation seeds x {settings['episodes']} episodes per "
        "(cluster, workload, family); fraction of the best-known reduction (mean over seeds, 95 % CI); "
        "greedy sees the true drawn conditions, the policy the measured ones (the drawn network through 10 % "
        "log-normal noise, the payload's `measured` block); planning (`bento.planning`: a beam search over move "
        "sequences, seeded by the policy's top moves) searches on those measured conditions. How much of the "
        "best-known reduction a beam search on the true network finds within greedy's moves + 1: `bound.md`. Command: "
        f"`{settings['command']}` ({settings['wall_seconds']:.0f} s on this machine{memo_note(settings)}"
        f"{planning_note(settings)}).",
        "",
    ]
    for label in dict.fromkeys(r["setting"] for r in rows):
        mine = [r for r in rows if r["setting"] == label]
        mean = float(np.mean([r["policy_fraction"] for r in mine]))
        greedy_mean = float(np.mean([r["greedy_fraction"] for r in mine]))
        cells_ge = sum(r["ge_greedy"] for r in mine)
        moves_ok = sum(r["moves_ok"] for r in mine)
        invalid = sum(r["invalid_actions"] for r in mine)
        lines += [
            f"## {label}",
            "",
            f"Mean fraction {mean:.3f} (greedy {greedy_mean:.3f}; target ≥ {TARGET_MEAN_FRACTION}: "
            f"{'met' if mean >= TARGET_MEAN_FRACTION else 'NOT met'}); ≥ greedy in {cells_ge}/{len(mine)} groups "
            f"((cluster, workload, family); {'met' if cells_ge == len(mine) else 'NOT met'}); moves ≤ greedy + 1 in "
            f"{moves_ok}/{len(mine)} groups; invalid actions {invalid}.",
            "",
            "| cluster | workload | family | policy fraction (95 % CI) | greedy | policy moves | greedy moves "
            "| invalid | ≥ greedy | moves ≤ greedy + 1 |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in mine:
            lo, hi = r["policy_ci"]
            lines.append(
                f"| {r['scenario']} | {r['workload']} | {r['family']} | {r['policy_fraction']:.3f} ({lo:.3f}–{hi:.3f}) "
                f"| {r['greedy_fraction']:.3f} | {r['policy_moves']:.1f} | {r['greedy_moves']:.1f} "
                f"| {r['invalid_actions']} | {'yes' if r['ge_greedy'] else 'no'} | {'yes' if r['moves_ok'] else 'no'} |"
            )
        lines.append("")
    note = timing_note(settings)
    if note is None:  # a run recorded before the counts were kept: 200 timed calls, no warm-up
        measured = "on 200 start states per cluster"
    else:
        measured = (
            f"on {note['samples']} start states per cluster, each timed once, after {note['warmup']} untimed "
            "warm-up calls"
        )
    remeasured = ""
    if note is not None and note.get("command"):
        remeasured = f" Re-measured alone on {note['written_utc']} UTC: `{note['command']}`."
    lines += [
        "## Decision time",
        "",
        "In-process `bento.policy.Policy.decide` (decode the REACH request, encode, network or planning, answer) "
        f"{measured} (`/get_action` adds HTTP); planning = bento arguments `plan_k`, "
        f"`plan_horizon`, `plan_width`, `plan_margin`, `plan_noise`, `plan_confidence`, `plan_slack`.{remeasured}",
        "",
    ]
    lines += ["| what | p50 ms | p99 ms |", "|---|---|---|"]
    lines += [f"| {size} | {t['p50_ms']:.2f} | {t['p99_ms']:.2f} |" for size, t in timing.items()]
    lines.append("")
    lines += gate_markdown(settings["gate"], settings["gate_rules"])
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (``argv``, default ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="The general (observation v4) artefact (required unless --tables).")
    parser.add_argument("--reach-model", type=Path, help="Optional: a REACH-setting artefact (v1, MLP) for its rows.")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--large", type=int, default=2, help="Generated 38-node clusters to evaluate on.")
    # Defaults: the chosen planning (bento.planning_settings), what `reach serve --plan-k 4` serves.
    chosen = PlanningSettings.chosen()
    parser.add_argument(
        "--plan-k", type=int, default=chosen.plan_k, help="Planning: the policy's top moves searched (0 = none)."
    )
    parser.add_argument(
        "--horizon", type=int, default=chosen.plan_horizon, help="Planning: moves per searched sequence."
    )
    add_planning_options(parser, ("plan_width", "plan_margin", "plan_noise", "plan_confidence", "plan_slack"), "")
    parser.add_argument("--gate-rules", type=Path, default=ROOT / "data" / "gate" / "default.json")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "general")
    parser.add_argument(
        "--tables", action="store_true", help="Only rewrite general.md and summary.md from OUT/general.json; no run."
    )
    parser.add_argument(
        "--timing-samples",
        type=int,
        default=DECISION_SAMPLES,
        help="Timed Policy.decide calls (start states) per cluster and setting.",
    )
    parser.add_argument(
        "--timing-warmup", type=int, default=DECISION_WARMUP, help="Untimed Policy.decide calls before the timed ones."
    )
    parser.add_argument(
        "--timing-only",
        action="store_true",
        help="Only re-measure the decision times of the run recorded in OUT/general.json (its model, planning "
        "and clusters), rewrite its timing entries and the tables; no evaluation.",
    )
    parser.add_argument(
        "--planning-only",
        action="store_true",
        help="Only re-run the planning rows (and their gate verdicts) of the run recorded in OUT/general.json, with "
        "its model, seeds and planning settings; the raw, REACH and timing entries are kept as recorded.",
    )
    args = parser.parse_args(argv)
    if sum((args.tables, args.timing_only, args.planning_only)) > 1:
        parser.error("--tables, --timing-only and --planning-only exclude each other")
    again = "--timing-only" if args.timing_only else "--planning-only" if args.planning_only else None
    if again is not None and args.model is not None:
        parser.error(f"{again} takes the model (and every setting) from OUT/general.json's recorded command")
    recorded = ("reach_model", "seeds", "episodes", "large", "plan_k", "horizon", "plan_width", "plan_margin",
                "plan_noise", "plan_confidence", "plan_slack", "gate_rules")  # fmt: skip
    changed = [name for name in recorded if getattr(args, name) != parser.get_default(name)]
    if again is not None and changed:
        options = ", ".join("--" + name.replace("_", "-") for name in changed)
        parser.error(f"{again} takes {options} from OUT/general.json's recorded command; leave them out")
    if args.model is None and not (args.tables or again):
        parser.error(
            "--model is required (e.g. --model data/policies/general-v4), unless --tables, --timing-only or "
            "--planning-only"
        )
    if args.timing_samples < 1 or args.timing_warmup < 0:
        parser.error("--timing-samples must be >= 1 and --timing-warmup >= 0")
    return args


def write_tables(out: Path) -> None:
    """general.md and summary.md from ``out/general.json`` (what a run recorded)."""
    recorded = json.loads((out / "general.json").read_text())
    rows, timing, settings = recorded["rows"], recorded["timing"], recorded["settings"]
    (out / "general.md").write_text(markdown(rows, timing, settings))
    (out / "summary.md").write_text(summary_markdown(rows, timing, settings))


def recorded_args(command: str) -> argparse.Namespace:
    """The arguments of a recorded run's command (``settings["command"]``: ``python benchmarks/bench_general.py ...``)."""
    words = shlex.split(command)
    script = next(i for i, word in enumerate(words) if word.endswith("bench_general.py"))
    return parse_args(words[script + 1 :])


def recorded_large(out: Path, count: int) -> list[tuple[Path, Path]]:
    """The generated clusters a recorded run wrote under ``out/clusters`` (the first ``count`` of them)."""
    from flows.training.general import LARGE_GENERATOR_SEED

    cells = []
    for k in range(count):
        directory = out / "clusters" / f"large-{LARGE_GENERATOR_SEED + k}"
        workloads = sorted(directory.glob("*_call_patterns.json"))
        if not (directory / "nodes.json").is_file() or len(workloads) != 1:
            raise SystemExit(
                f"{directory}: not the generated cluster the recorded run wrote (nodes.json, one workload)"
            )
        cells.append((directory, workloads[0]))
    return cells


def refresh_timing(args: argparse.Namespace, argv: Sequence[str]) -> None:
    """``--timing-only``: re-measure the decision times of the run in ``args.out/general.json``; rewrite the tables."""
    import torch

    torch.set_num_threads(1)
    path = args.out / "general.json"
    recorded = json.loads(path.read_text())
    settings = recorded["settings"]
    original = recorded_args(settings["command"])
    model = Path(settings["model"])
    model = model if model.is_absolute() else ROOT / model  # recorded relative to the repository
    large = recorded_large(args.out, min(original.large, 1))  # the first generated cluster is the one timed
    cells = timed_cells(original, large)
    if set(cells) != set(recorded["timing"]):
        raise SystemExit(
            f"{path}: its timing entries {sorted(recorded['timing'])} are not the ones its command measures "
            f"{sorted(cells)}; re-run the benchmark instead"
        )
    timing = measure_timing(model, cells, args.timing_samples, args.timing_warmup)
    recorded["timing"] = {key: timing[key] for key in recorded["timing"]}  # the recorded order
    settings["timing"] = {
        "samples": args.timing_samples,
        "warmup": args.timing_warmup,
        "written_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "command": "python benchmarks/bench_general.py " + " ".join(shlex.quote(a) for a in argv),
    }
    path.write_text(json.dumps(recorded, indent=1))
    write_tables(args.out)


PLANNING_LABEL = "general policy + planning"  # how every planning row's setting begins


def planning_rows(
    model: Path,
    args: argparse.Namespace,
    reference: list[tuple[Path, Path]],
    large: list[tuple[Path, Path]],
    seeds: list[int],
    episodes: int,
) -> list[dict[str, Any]]:
    """The planning rows (``args``' planning) on the reference cells (kept for the gate section) and ``large``."""
    planning, what = planning_of(args)
    rows = [
        row(g, f"{PLANNING_LABEL} (beam search on the twin: {what})")
        for g in evaluate_cells(model, reference, seeds, episodes, gate_label="planning", **planning)
    ]
    rows += [
        row(g, f"{PLANNING_LABEL}, generated 38-node clusters")
        for g in evaluate_cells(model, large, seeds, episodes, **planning)
    ]
    return rows


def refresh_planning(args: argparse.Namespace, argv: Sequence[str]) -> None:
    """``--planning-only``: re-run the planning rows and gate verdicts of the run in ``args.out/general.json``.

    The model, seeds, episodes, planning settings and generated clusters are the recorded run's; its raw
    and REACH rows, their gate verdicts and the decision times stay as recorded. The tables say when and
    by which command the planning rows were re-run.
    """
    import torch

    from ceenv.reference import SIZES, WORKLOADS
    from flows.evaluation import ceilings
    from flows.training.general import reference_files

    torch.set_num_threads(1)
    began = time.perf_counter()
    path = args.out / "general.json"
    recorded = json.loads(path.read_text())
    settings = recorded["settings"]
    original = recorded_args(settings["command"])
    if original.plan_k <= 0:
        raise SystemExit(f"{path}: its run played no planning (--plan-k 0); re-run the benchmark instead")
    model = Path(settings["model"])
    model = model if model.is_absolute() else ROOT / model
    reference = [reference_files(size, workload) for size in SIZES for workload in WORKLOADS]
    large = recorded_large(args.out, original.large)
    REPORTS.clear()
    rows = planning_rows(model, original, reference, large, settings["seeds"], settings["episodes"])
    recorded["rows"] = [r for r in recorded["rows"] if not r["setting"].startswith(PLANNING_LABEL)] + rows
    rules = Path(settings["gate_rules"])  # the rules the recorded raw verdicts were judged by
    rules = rules if rules.is_absolute() else ROOT / rules
    settings["gate"] = [g for g in settings["gate"] if g["policy"] != "planning"] + gate_rows(rules)
    settings["planning_rows"] = {
        "written_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "command": "python benchmarks/bench_general.py " + " ".join(shlex.quote(a) for a in argv),
        "wall_seconds": time.perf_counter() - began,
        "ceilings": ceilings.memo_counts(),
    }
    path.write_text(json.dumps(recorded, indent=1))
    write_tables(args.out)


def planning_note(settings: dict[str, Any]) -> str:
    """How the planning rows were re-run after the recorded run (``--planning-only``), or ``""``."""
    again = settings.get("planning_rows")
    if not again:
        return ""
    return (
        f"; planning rows and their gate verdicts re-run on {again['written_utc']} UTC: `{again['command']}` "
        f"({again['wall_seconds']:.0f} s{memo_note(again)})"
    )


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.tables:
        write_tables(args.out)
        print((args.out / "summary.md").read_text())
        return
    if args.timing_only:
        refresh_timing(args, argv)
        print((args.out / "summary.md").read_text())
        return
    if args.planning_only:
        refresh_planning(args, argv)
        print((args.out / "summary.md").read_text())
        return
    import torch

    from ceenv.reference import SIZES, WORKLOADS
    from flows.evaluation import ceilings
    from flows.training.general import reference_files

    torch.set_num_threads(1)
    began = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    seeds = list(range(args.seeds))
    reference = [reference_files(size, workload) for size in SIZES for workload in WORKLOADS]
    rows = [
        row(g, "general policy, reference cells")
        for g in evaluate_cells(args.model, reference, seeds, args.episodes, gate_label="raw")
    ]
    large = write_large_clusters(args.out, args.large)
    rows += [
        row(g, "general policy, generated 38-node clusters")
        for g in evaluate_cells(args.model, large, seeds, args.episodes)
    ]
    if args.reach_model is not None:
        # REACH's setting fits one cluster: its own training cell only.
        from bento.artefact import read_metadata

        meta = read_metadata(args.reach_model)
        cell = [reference_files(meta.scenario_name, meta.workload_name)]
        rows += [
            row(g, "REACH's setting (observation v1, MLP)")
            for g in evaluate_cells(args.reach_model, cell, seeds, args.episodes)
        ]
    timing = measure_timing(args.model, timed_cells(args, large), args.timing_samples, args.timing_warmup)
    if args.plan_k > 0:
        rows += planning_rows(args.model, args, reference, large, seeds, args.episodes)
    settings = {
        "written_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"),
        "model": str(args.model),
        "seeds": seeds,
        "episodes": args.episodes,
        "wall_seconds": time.perf_counter() - began,
        "ceilings": ceilings.memo_counts(),
        "command": f"python benchmarks/bench_general.py --model {args.model} --seeds {args.seeds} "
        f"--episodes {args.episodes} --large {args.large} --plan-k {args.plan_k} --horizon {args.horizon} "
        f"--plan-width {args.plan_width} --plan-margin {args.plan_margin:g} --plan-noise {args.plan_noise:g} "
        f"--plan-confidence {args.plan_confidence:g} --timing-samples {args.timing_samples} "
        f"--timing-warmup {args.timing_warmup}"
        + (f" --plan-slack {args.plan_slack}" if args.plan_slack != PlanningSettings.chosen().plan_slack else "")
        + (f" --reach-model {args.reach_model}" if args.reach_model else ""),
        "gate": gate_rows(args.gate_rules),
        "gate_rules": str(
            args.gate_rules.relative_to(ROOT) if args.gate_rules.is_relative_to(ROOT) else args.gate_rules
        ),
        "timing": {"samples": args.timing_samples, "warmup": args.timing_warmup},
    }
    (args.out / "general.json").write_text(json.dumps({"settings": settings, "rows": rows, "timing": timing}, indent=1))
    write_tables(args.out)
    print((args.out / "general.md").read_text())


if __name__ == "__main__":
    main()
