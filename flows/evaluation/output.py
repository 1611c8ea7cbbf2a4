"""Writing an evaluation report: ``report.json``, ``report.md`` and the PNG plots.

The Markdown table has one block per group (scenario, workload, family) and one row per method;
the plots are the end-latency distribution per method (one panel per group) and mean moves vs
mean latency reduction per method. matplotlib is imported inside :func:`write_plots` only. Used by
``reach evaluate`` and the benchmark.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from flows.evaluation.episodes import EpisodeRecord
from flows.evaluation.report import Estimate, EvaluationReport, GroupReport

METHOD_ORDER = ("policy", "noop", "random", "greedy", "balancer", "best_known")


def _ci(e: Estimate, digits: int = 1) -> str:
    half = (e.ci_high - e.ci_low) / 2
    return f"{e.mean:.{digits}f} ± {half:.{digits}f}"


def _ordered(group: GroupReport) -> list[str]:
    return [m for m in METHOD_ORDER if m in group.methods] + sorted(set(group.methods) - set(METHOD_ORDER))


def group_table(group: GroupReport) -> str:
    """One Markdown table for one group (± = half-width of the 95 % CI over seeds)."""
    lines = [
        f"#### {group.scenario} · {group.workload} · {group.family}",
        "",
        "| method | mean end latency (ms) | p95 end latency (ms) | reduction vs start (%) | fraction of best-known "
        "| moves / episode | decision ms / move | invalid actions |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in _ordered(group):
        m = group.methods[name]
        lines.append(
            f"| {name} | {_ci(m.mean_end_latency_ms)} | {m.p95_end_latency_ms:.1f} | {_ci(m.reduction_pct)} "
            f"| {_ci(m.fraction_of_best_known, 3)} | {_ci(m.moves_per_episode)} | {m.decision_ms_per_move:.3f} "
            f"| {m.invalid_actions} |"
        )
    return "\n".join(lines)


def _what(report: EvaluationReport) -> str:
    """The evaluated policy in words: its artefact, what it was trained on, raw or with which planning."""
    model, s = report.model, report.settings
    if not model:
        return "baselines only"
    trained = f" (trained on {model['scenario']} / {model['workload']})" if model.get("scenario") else ""
    if s.get("plan_k"):
        how = (
            f"deciding with planning (plan_k {s['plan_k']}, horizon {s.get('plan_horizon')}, "
            f"width {s.get('plan_width')}, margin {s.get('plan_margin')}, noise {s.get('plan_noise', 0)}, "
            f"confidence {s.get('plan_confidence', 0)})"
        )
    else:
        how = "the raw policy"
    return f"`{model.get('directory')}`{trained}, {how}"


def _ceiling(settings: dict[str, Any]) -> str:
    """The best-known search the fractions divide by, as the report names it."""
    from ceenv.search import CEILING_BEFORE

    return str(settings.get("best_known") or CEILING_BEFORE)


def markdown(report: EvaluationReport) -> str:
    s = report.settings
    header = (
        f"Evaluation of {_what(report)}: {s.get('episodes')} episodes × "
        f"seeds {s.get('seeds')} per group (start-state seeds {s.get('seed_range')}, never used in training); "
        "± is the half-width of the 95 % confidence interval over seeds. "
        f"Fractions are of the best-known reduction ({_ceiling(s)})."
    )
    return "\n\n".join([header, *(group_table(g) for g in report.groups)]) + "\n"


def write_plots(report: EvaluationReport, records: list[EpisodeRecord], out_dir: Path) -> list[Path]:
    """``latency_distribution.png`` and ``moves_vs_gain.png`` under ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = report.groups
    fig, axes = plt.subplots(len(groups), 1, figsize=(9, 2.8 * len(groups)), squeeze=False)
    for ax, group in zip(axes[:, 0], groups, strict=True):
        names = _ordered(group)
        data = [
            [r.end_latency_ms for r in records if (r.scenario, r.workload, r.family) == group.key and r.method == m]
            for m in names
        ]
        ax.boxplot(data, tick_labels=names, showfliers=False)
        ax.set_ylabel("end latency (ms)")
        ax.set_title(f"{group.scenario} · {group.workload} · {group.family}", fontsize=9)
    fig.tight_layout()
    distribution = out_dir / "latency_distribution.png"
    fig.savefig(distribution, dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 5))
    for name in METHOD_ORDER:
        points = [
            (g.methods[name].moves_per_episode.mean, g.methods[name].reduction_pct.mean)
            for g in groups
            if name in g.methods
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.scatter(xs, ys, label=name)
    ax.set_xlabel("moves per episode (mean)")
    ax.set_ylabel("latency reduction vs start (%)")
    ax.set_title("moves vs gain (one point per method and group)")
    ax.legend()
    fig.tight_layout()
    moves = out_dir / "moves_vs_gain.png"
    fig.savefig(moves, dpi=110)
    plt.close(fig)
    return [distribution, moves]


def write_report(
    report: EvaluationReport, records: list[EpisodeRecord], out_dir: str | Path, plots: bool = True
) -> list[Path]:
    """Write report.json, report.md and (optionally) the plots; return the paths written.

    Everything is written into a staging folder beside the outputs first and moved into place only
    once all of it is written, so a failure (a plot that cannot be drawn, a full disk) leaves the
    folder's previous report whole instead of half replaced.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".report-", dir=out))
    try:
        (staging / "report.json").write_text(json.dumps(report.model_dump(mode="json"), indent=1))
        (staging / "report.md").write_text(markdown(report))
        staged = [staging / "report.json", staging / "report.md"] + (
            write_plots(report, records, staging) if plots else []
        )
        written = []
        for file in staged:
            os.replace(file, out / file.name)
            written.append(out / file.name)
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)
