"""Validation reports and summary tables, as JSON, CSV and Markdown.

A report is a plain dict (``report_json``) holding the verdict of every expectation with its
offending rows, the per-cell summary, the span accounting of Jaeger inputs and the inputs with
their SHA-256; ``report_markdown`` renders it for people. ``save_report`` writes both files
atomically (temporary file, then rename). Used by :mod:`flows.profiles.ingest` and the CLI.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.local.paths import write_text_atomic
from flows.profiles.checks import ValidationOutcome

if TYPE_CHECKING:
    import pandas as pd

SUMMARY_COLUMNS = ("service", "cpu_type", "n", "mean_ms", "p50_ms", "p95_ms")


def summary_records(summary: pd.DataFrame) -> list[dict[str, Any]]:
    """The per-cell summary as JSON-ready rows."""
    return [
        {k: (int(v) if k in ("cpu_type", "n") else v) for k, v in row.items()} for row in summary.to_dict("records")
    ]


def report_json(outcome: ValidationOutcome, context: Mapping[str, Any]) -> dict[str, Any]:
    """Everything a user needs to see why the profile passed or failed."""
    return {
        "success": outcome.success,
        **context,
        "failed_checks": [c.check for c in outcome.failures],
        "checks": [asdict(c) for c in outcome.checks],
        "kept_current_cells": [{"service": s, "cpu_type": t} for s, t in outcome.kept_cells],
        "summary": summary_records(outcome.summary),
    }


def summary_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table service × CPU type: n, mean, p50, p95 (ms)."""
    lines = ["| service | cpu_type | n | mean_ms | p50_ms | p95_ms |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        stats = " | ".join(f"{r[k]:.4g}" for k in ("mean_ms", "p50_ms", "p95_ms"))
        lines.append(f"| {r['service']} | {r['cpu_type']} | {r['n']} | {stats} |")
    return "\n".join(lines) + "\n"


def _check_lines(checks: list[dict[str, Any]]) -> list[str]:
    lines = ["| | check | table | observed |", "|---|---|---|---|"]
    for c in checks:
        lines.append(f"| {'pass' if c['success'] else '**FAIL**'} | {c['check']} | {c['table']} | {c['observed']} |")
    for c in (c for c in checks if not c["success"]):
        lines += ["", f"### Failed: {c['check']} (`{c['expectation']}`)", ""]
        lines += [f"- {item}" for item in c["offending"]]
        if c["offending_total"] > len(c["offending"]):
            lines.append(f"- … and {c['offending_total'] - len(c['offending'])} more")
        lines += ["", f"Fix: {c['fix']}"]
    return lines


def report_markdown(report: Mapping[str, Any]) -> str:
    """The report rendered for people."""
    verdict = "PASSED" if report["success"] else "FAILED"
    lines = [f"# Profile validation {verdict}", "", f"Created: {report.get('created_at', '')}", ""]
    lines += [f"- scenario: `{report.get('scenario', '')}`"]
    lines += [f"- workload: `{w}`" for w in report.get("workloads", [])]
    lines += [f"- input: `{i['path']}` (sha256 {i['sha256'][:12]})" for i in report.get("inputs", [])]
    lines += ["", "## Checks (Great Expectations)", "", *_check_lines(report["checks"])]
    if report.get("spans"):
        lines += ["", "## Jaeger spans", "", "```json", json.dumps(report["spans"], indent=2), "```"]
    if report.get("kept_current_cells"):
        kept = ", ".join(f"{c['service']}@{c['cpu_type']}" for c in report["kept_current_cells"])
        lines += ["", f"Cells kept at the workload's current value (--keep-current): {kept}"]
    lines += ["", "## Summary (ms)", "", summary_markdown(report["summary"])]
    return "\n".join(lines)


def save_report(report: Mapping[str, Any], directory: Path, stem: str) -> tuple[Path, Path]:
    """Save the report as ``<stem>.json`` and ``<stem>.md`` under ``directory``."""
    json_path, md_path = directory / f"{stem}.json", directory / f"{stem}.md"
    write_text_atomic(json_path, json.dumps(report, indent=2, default=str) + "\n")
    write_text_atomic(md_path, report_markdown(report))
    return json_path, md_path
