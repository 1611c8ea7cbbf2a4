"""Profile ingestion end to end: read → validate (GX) → aggregate → write a versioned dataset.

``validate_profiles`` loads the scenario and the workloads (the scenario-level checks of
:mod:`ceenv`), reads the CSV and Jaeger inputs into one profile table and validates it;
``ingest_profiles`` does the same and, only if everything passed, writes the dataset directory
with the updated call patterns. A failed validation saves its report (JSON + Markdown) under the
reports directory, writes nothing to ``--out`` and raises :class:`ProfileValidationError`. Used by
``reach profiles`` and the ingest flow.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ceenv.scenario import Scenario, load_scenario
from ceenv.workload import Workload, check_workload, load_workload
from flows.profiles.checks import CheckOptions, Requirements, ValidationOutcome, validate_profile
from flows.profiles.csv_profiles import read_csv_profiles
from flows.profiles.dataset import (
    cell_means,
    content_sha256,
    data_files,
    existing_version,
    updated_workload,
    write_dataset,
)
from flows.profiles.errors import ProfileError, ProfileValidationError
from flows.profiles.hosts import CpuTypeResolver, load_node_types
from flows.profiles.jaeger import DEFAULT_HOST_TAGS, JaegerOptions, SpanReport, read_jaeger_profiles
from flows.profiles.report import report_json, save_report, summary_records
from flows.profiles.table import concat

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_REPORTS_DIR = Path("reports") / "profiles"


@dataclass(frozen=True)
class ProfileInputs:
    """Where the measurements come from."""

    csv: tuple[Path, ...] = ()
    """CSV profiles (header-driven; several files are combined)."""
    jaeger: tuple[Path, ...] = ()
    """Jaeger query-API JSON exports."""
    node_types: Path | None = None
    """Node/host → CPU type table (JSON or CSV); scenario node and node type names work without it."""
    ignore_services: tuple[str, ...] = ()
    """Traced services to leave out (e.g. an ingress gateway); workload clients are always left out."""
    host_tag: str | None = None
    """Jaeger process tag that names the host; default: k8s.node.name, node.name, hostname, host.name."""


@dataclass(frozen=True)
class ValidationRun:
    """What ``validate_profiles`` found: the verdicts, the report and where it was saved."""

    outcome: ValidationOutcome
    report: dict[str, Any]
    scenario: Scenario
    workloads: tuple[Workload, ...]
    report_paths: tuple[Path, ...] = field(default_factory=tuple)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_workloads(scenario_dir: Path, workload_paths: Sequence[Path]) -> tuple[Scenario, tuple[Workload, ...]]:
    """Load and cross-check the scenario and every workload (raises ``ScenarioError``)."""
    if not workload_paths:
        raise ProfileError("no workload given; pass --workload data/workloads/<name>_call_patterns.json")
    scenario = load_scenario(scenario_dir)
    workloads = tuple(load_workload(path, scenario) for path in workload_paths)
    names = [w.name for w in workloads]
    if len(set(names)) != len(names):
        raise ProfileError(f"workloads with the same name {names}; each output file is named after its workload")
    return scenario, workloads


def requirements_for(scenario: Scenario, workloads: Sequence[Workload]) -> Requirements:
    """Services the workloads call, the cluster's CPU types and the current mean times."""
    samples: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    services: list[str] = []
    for call in (c for w in workloads for e in w.endpoints for c in e.calls()):
        if call.service not in services:
            services.append(call.service)
        for cpu_type, value_ms in call.execution_ms.items():
            samples[call.service][cpu_type].append(value_ms)
    current = {s: {t: sum(v) / len(v) for t, v in by_type.items()} for s, by_type in samples.items()}
    return Requirements(tuple(services), scenario.cpu_types, current)


def read_profiles(
    inputs: ProfileInputs, scenario: Scenario, workloads: Sequence[Workload]
) -> tuple[pd.DataFrame, SpanReport | None]:
    """Every input file → one profile table (and the Jaeger span accounting, if any)."""
    if not inputs.csv and not inputs.jaeger:
        raise ProfileError("no profile input; pass --csv FILE and/or --jaeger FILE (each may be repeated)")
    table = load_node_types(inputs.node_types) if inputs.node_types else {}
    resolver = CpuTypeResolver.for_scenario(scenario, table)
    frames = [read_csv_profiles(inputs.csv, resolver)] if inputs.csv else []
    spans = None
    if inputs.jaeger:
        clients = {e.client for w in workloads for e in w.endpoints}
        host_tags = (inputs.host_tag,) if inputs.host_tag else DEFAULT_HOST_TAGS
        options = JaegerOptions(frozenset({*clients, *inputs.ignore_services}), host_tags)
        jaeger_frame, spans = read_jaeger_profiles(inputs.jaeger, resolver, options)
        frames.append(jaeger_frame)
    return concat(frames), spans


def _context(
    inputs: ProfileInputs,
    scenario_dir: Path,
    workload_paths: Sequence[Path],
    options: CheckOptions,
    spans: SpanReport | None,
) -> dict[str, Any]:
    files = [*inputs.csv, *inputs.jaeger, *([inputs.node_types] if inputs.node_types else [])]
    return {
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "scenario": str(scenario_dir),
        "workloads": [str(p) for p in workload_paths],
        "inputs": [{"path": str(p), "sha256": _sha256(p)} for p in files],
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(options).items()},
        "spans": spans.to_json() if spans else None,
    }


def _report_stem(report: dict[str, Any]) -> str:
    stamp = report["created_at"].replace("-", "").replace(":", "")
    inputs = hashlib.sha256("".join(i["sha256"] for i in report["inputs"]).encode()).hexdigest()[:8]
    return f"profiles-validation-{stamp}-{inputs}"


def failure_message(run: ValidationRun) -> str:
    """One readable block: each failed expectation with its first offending values, and the reports."""
    lines = ["profile validation failed:"]
    for check in run.outcome.failures:
        lines.append(f"  - {check.check} [{check.expectation} on {check.table}]: {check.observed}")
        lines += [f"      {item}" for item in check.offending[:5]]
        if check.offending_total > 5:
            lines.append(f"      … {check.offending_total - 5} more in the report")
        lines.append(f"      fix: {check.fix}")
    lines += [f"  report: {p}" for p in run.report_paths]
    return "\n".join(lines)


def validate_profiles(
    inputs: ProfileInputs,
    scenario_dir: Path,
    workload_paths: Sequence[Path],
    options: CheckOptions | None = None,
    reports_dir: Path | None = DEFAULT_REPORTS_DIR,
) -> ValidationRun:
    """Read and validate; save the report under ``reports_dir`` (unless None). Never raises on a failed check."""
    options = options or CheckOptions()
    scenario, workloads = load_workloads(scenario_dir, workload_paths)
    frame, spans = read_profiles(inputs, scenario, workloads)
    outcome = validate_profile(frame, requirements_for(scenario, workloads), options)
    report = report_json(outcome, _context(inputs, scenario_dir, workload_paths, options, spans))
    paths = save_report(report, reports_dir, _report_stem(report)) if reports_dir is not None else ()
    return ValidationRun(outcome, report, scenario, workloads, tuple(paths))


def ingest_profiles(
    inputs: ProfileInputs,
    scenario_dir: Path,
    workload_paths: Sequence[Path],
    out: Path,
    options: CheckOptions | None = None,
    reports_dir: Path = DEFAULT_REPORTS_DIR,
    percentiles: bool = False,
) -> tuple[Path, ValidationRun]:
    """Validate, then write the dataset to ``out``; a failed validation writes only the report."""
    if out.exists() and existing_version(out) is None:
        raise ProfileError(f"{out}: already exists and is not a profile dataset; choose a new --out directory")
    run = validate_profiles(inputs, scenario_dir, workload_paths, options, reports_dir=None)
    if not run.outcome.success:
        paths = save_report(run.report, reports_dir, _report_stem(run.report))
        failed = replace(run, report_paths=tuple(paths))
        raise ProfileValidationError(failure_message(failed), failed.report_paths)
    cells = summary_records(run.outcome.summary)
    updated = tuple(updated_workload(w, cell_means(cells)) for w in run.workloads)
    for name, workload in zip(workload_paths, updated, strict=True):
        check_workload(workload, run.scenario, f"{out}/{Path(name).name} (updated)")
    files = data_files(updated, cells, percentiles)
    version = content_sha256(files)
    previous = existing_version(out)
    if previous == version:
        return out, run
    if previous is not None:
        raise ProfileError(
            f"{out}: holds another dataset (version {previous[:12]}); datasets are never overwritten: "
            "choose a new --out directory"
        )
    manifest = {
        "content_sha256": version,
        "version": version[:12],
        "created_at": run.report["created_at"],
        "files": {n: hashlib.sha256(t.encode()).hexdigest() for n, t in sorted(files.items())},
        **{k: run.report[k] for k in ("scenario", "workloads", "inputs", "options", "spans")},
        "percentiles": percentiles,
        "created_by": "reach profiles ingest",
    }
    return write_dataset(out, files, run.report, manifest), run
