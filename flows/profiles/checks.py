"""Validate a profile table with Great Expectations (GX Core 1.x, ephemeral context).

Three small tables are checked, each with its own expectation suite: the *measurements* (at least
one row, non-null values, times > 0 and below a ceiling, counts >= 1, no unknown services or CPU
types; files without the required columns were already refused by the readers), the *cells*
(service × CPU type: every cell the workload needs is measured unless ``keep_current`` lets it
keep the workload's value; at least ``min_samples`` samples per measured cell) and the *pairs*
(heterogeneity: on a CPU type that is slower for a service, its mean must not be faster than
``1 - tolerance`` times the faster type's mean). The outcome lists every failed expectation with
the offending rows. GX is imported lazily, with analytics disabled. Used by
:mod:`flows.profiles.ingest`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from flows.profiles.table import REQUIRED_COLUMNS, summarise

if TYPE_CHECKING:
    import pandas as pd

MAX_SHOWN = 20


@dataclass(frozen=True)
class CheckOptions:
    """Thresholds of the profile validation."""

    min_samples: int = 10
    """Fewest samples (rows, or the sum of ``count``) a measured (service, CPU type) cell needs."""
    ceiling_ms: float = 60_000.0
    """Largest plausible execution time of one call; anything above is a unit or export error."""
    keep_current: bool = False
    """Let unmeasured cells keep the workload's current execution time instead of failing."""
    heterogeneity_tolerance: float = 0.25
    """How much faster (as a fraction) a slower CPU type may measure than a faster one."""
    cpu_speed_order: tuple[int, ...] | None = None
    """CPU types fastest first; by default each service's order comes from the workload's times."""


@dataclass(frozen=True)
class Requirements:
    """What the scenario and the workloads need from the profile."""

    services: tuple[str, ...]
    cpu_types: tuple[int, ...]
    current_ms: Mapping[str, Mapping[int, float]]


@dataclass(frozen=True)
class CheckResult:
    """One expectation's verdict, in words a user can act on."""

    check: str
    expectation: str
    table: str
    success: bool
    observed: str
    offending: tuple[str, ...] = ()
    offending_total: int = 0
    fix: str = ""


@dataclass(frozen=True)
class ValidationOutcome:
    """All verdicts, plus the per-cell summary and the cells kept at their current value."""

    checks: tuple[CheckResult, ...]
    summary: pd.DataFrame
    kept_cells: tuple[tuple[str, int], ...] = field(default_factory=tuple)

    @property
    def success(self) -> bool:
        return all(c.success for c in self.checks)

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if not c.success)


def cell_key(service: str, cpu_type: int) -> str:
    return f"{service}@cpu_type={cpu_type}"


def _speed_pairs(req: Requirements, options: CheckOptions, service: str) -> list[tuple[int, int]]:
    """(faster, slower) CPU type pairs for ``service``."""
    if options.cpu_speed_order is not None:
        order = [t for t in options.cpu_speed_order if t in req.cpu_types]
        return [(a, b) for i, a in enumerate(order) for b in order[i + 1 :]]
    ref = req.current_ms.get(service, {})
    return [(a, b) for a in ref for b in ref if ref[a] < ref[b]]


def pairs_table(summary: pd.DataFrame, req: Requirements, options: CheckOptions) -> pd.DataFrame:
    """For each service and (faster, slower) pair of measured CPU types: slower mean / faster mean."""
    import pandas as pd

    means = {(r.service, int(r.cpu_type)): float(r.mean_ms) for r in summary.itertuples()}
    rows = []
    for service in req.services:
        for fast, slow in _speed_pairs(req, options, service):
            if (service, fast) in means and (service, slow) in means:
                rows.append(
                    {
                        "service": service,
                        "faster_cpu_type": fast,
                        "slower_cpu_type": slow,
                        "faster_mean_ms": means[(service, fast)],
                        "slower_mean_ms": means[(service, slow)],
                        "ratio": means[(service, slow)] / means[(service, fast)],
                    }
                )
    columns = ["service", "faster_cpu_type", "slower_cpu_type", "faster_mean_ms", "slower_mean_ms", "ratio"]
    return pd.DataFrame(rows, columns=columns)


def required_cells(req: Requirements, options: CheckOptions) -> tuple[list[str], list[tuple[str, int]]]:
    """Cells that must be measured, and cells that may keep their current value (``keep_current``)."""
    needed, keepable = [], []
    for service in req.services:
        for cpu_type in req.cpu_types:
            if options.keep_current and cpu_type in req.current_ms.get(service, {}):
                keepable.append((service, cpu_type))
            else:
                needed.append(cell_key(service, cpu_type))
    return needed, keepable


def _suites(req: Requirements, options: CheckOptions, needed: Sequence[str]) -> dict[str, list[tuple[str, Any]]]:
    """The expectation suites: table name → [(check name, GX expectation)]."""
    import great_expectations as gx

    e: Any = gx.expectations
    floor = 1.0 - options.heterogeneity_tolerance
    not_null = [
        (f"column {c!r} has no empty cells", e.ExpectColumnValuesToNotBeNull(column=c))
        for c in (*REQUIRED_COLUMNS, "count")
    ]
    return {
        "measurements": [
            ("at least one measurement", e.ExpectTableRowCountToBeBetween(min_value=1)),
            *not_null,
            (
                f"execution times are > 0 ms and <= {options.ceiling_ms:g} ms",
                e.ExpectColumnValuesToBeBetween(
                    column="execution_time_ms", min_value=0, strict_min=True, max_value=options.ceiling_ms
                ),
            ),
            ("counts are >= 1", e.ExpectColumnValuesToBeBetween(column="count", min_value=1)),
            (
                "no unknown services (every service is called by the workload)",
                e.ExpectColumnValuesToBeInSet(column="service", value_set=sorted(req.services)),
            ),
            (
                "no unknown CPU types (every CPU type is in the cluster)",
                e.ExpectColumnValuesToBeInSet(column="cpu_type", value_set=list(req.cpu_types)),
            ),
        ],
        "cells": [
            (
                "every (service, CPU type) cell of the workload is measured",
                e.ExpectColumnDistinctValuesToContainSet(column="cell", value_set=list(needed)),
            ),
            (
                f"at least {options.min_samples} samples per measured cell",
                e.ExpectColumnValuesToBeBetween(column="n", min_value=options.min_samples),
            ),
        ],
        "pairs": [
            (
                f"heterogeneity: a slower CPU type is not more than {options.heterogeneity_tolerance:.0%} faster",
                e.ExpectColumnValuesToBeBetween(column="ratio", min_value=floor),
            ),
        ],
    }


_FIXES = (
    ("cells", "distinct", "measure the missing cells, or pass --keep-current to keep the workload's current times"),
    ("cells", "", "collect more samples for these cells, or lower --min-samples"),
    (
        "pairs",
        "",
        "check the node -> CPU type mapping of these measurements, or raise --tolerance / set --cpu-speed-order",
    ),
    ("measurements", "not_be_null", "fill in or delete the rows with empty cells"),
    ("measurements", "row_count", "pass at least one file with measurements"),
)
_FIXES_BY_NAME = (
    (
        "unknown services",
        "delete these rows, leave traced services out with --ignore-service, or use the workload's names",
    ),
    ("unknown CPU types", "use a cpu_type of the cluster's nodes.json, or fix the --node-types table"),
    ("execution times", "times are milliseconds of one call: fix these rows (units?) or raise --ceiling-ms"),
    ("counts", "count is how many measurements a row stands for: use an integer >= 1"),
)


def fix_for(check: str, expectation: str, table: str) -> str:
    """What the user should do about a failed check."""
    for name_part, fix in _FIXES_BY_NAME:
        if name_part in check:
            return fix
    for fix_table, type_part, fix in _FIXES:
        if table == fix_table and type_part in expectation:
            return fix
    return "check the input files"


def _describe_row(table: str, row: Mapping[str, Any], options: CheckOptions) -> str:
    if table == "measurements":
        return (
            f"{row['source']}: service={row['service']!r} cpu_type={row['cpu_type']} "
            f"execution_time_ms={row['execution_time_ms']} count={row['count']}"
        )
    if table == "cells":
        return f"{row['cell']}: n={row['n']} (need >= {options.min_samples})"
    return (
        f"{row['service']}: cpu_type {row['slower_cpu_type']} measures {row['slower_mean_ms']:.4g} ms but the faster "
        f"cpu_type {row['faster_cpu_type']} measures {row['faster_mean_ms']:.4g} ms (ratio {row['ratio']:.3f})"
    )


def _verdict(
    check: str, table: str, result: Any, frame: pd.DataFrame, options: CheckOptions, needed: Sequence[str]
) -> CheckResult:
    config = result.expectation_config
    info = result.exception_info or {}
    details = result.result or {}
    if info.get("raised_exception"):
        return CheckResult(check, config.type, table, False, f"GX raised: {info.get('exception_message')}")
    if "unexpected_index_list" in details or "unexpected_count" in details:
        indices = list(details.get("unexpected_index_list") or [])
        offending = tuple(_describe_row(table, frame.loc[i].to_dict(), options) for i in indices[:MAX_SHOWN])
        count = int(details.get("unexpected_count", len(indices)))
        observed = f"{count} of {details.get('element_count', len(frame))} rows unexpected"
        return CheckResult(check, config.type, table, bool(result.success), observed, offending, count)
    observed_value = details.get("observed_value")
    if config.type == "expect_column_distinct_values_to_contain_set":
        missing = [] if result.success else sorted(set(needed) - set(frame["cell"]))
        missing_cells = tuple(f"{cell}: no measurements" for cell in missing[:MAX_SHOWN])
        return CheckResult(
            check,
            config.type,
            table,
            bool(result.success),
            f"{len(missing)} cell(s) missing",
            missing_cells,
            len(missing),
        )
    return CheckResult(check, config.type, table, bool(result.success), f"observed {observed_value!r}")


def _with_fix(verdict: CheckResult) -> CheckResult:
    return (
        verdict if verdict.success else replace(verdict, fix=fix_for(verdict.check, verdict.expectation, verdict.table))
    )


def run_suites(
    frames: Mapping[str, pd.DataFrame],
    suites: Mapping[str, list[tuple[str, Any]]],
    options: CheckOptions,
    needed: Sequence[str],
) -> list[CheckResult]:
    """Validate each table with its suite in one ephemeral GX context; verdicts in suite order."""
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("profiles")
    verdicts: list[CheckResult] = []
    for table, checks in suites.items():
        frame = frames[table]
        batch = (
            source.add_dataframe_asset(name=table)
            .add_batch_definition_whole_dataframe(table)
            .get_batch(batch_parameters={"dataframe": frame})
        )
        suite = gx.ExpectationSuite(name=f"reach-profiles-{table}")
        for number, (_, expectation) in enumerate(checks):
            expectation.meta = {"check_number": number}
            suite.add_expectation(expectation)
        results = batch.validate(suite, result_format="COMPLETE").results
        by_number = {(r.expectation_config.meta or {}).get("check_number"): r for r in results if r.expectation_config}
        verdicts.extend(
            _with_fix(_verdict(name, table, by_number[i], frame, options, needed)) for i, (name, _) in enumerate(checks)
        )
    return verdicts


def _usable_rows(frame: pd.DataFrame, req: Requirements, options: CheckOptions) -> pd.DataFrame:
    ok = (
        frame["service"].isin(req.services)
        & frame["cpu_type"].isin(req.cpu_types)
        & (frame["execution_time_ms"] > 0)
        & (frame["execution_time_ms"] <= options.ceiling_ms)
        & (frame["count"] >= 1)
    )
    return frame[ok.fillna(False).astype(bool)]


def validate_profile(frame: pd.DataFrame, req: Requirements, options: CheckOptions) -> ValidationOutcome:
    """Run every check on the profile table; the outcome says what failed and on which rows."""
    summary = summarise(_usable_rows(frame, req, options))
    cells = summary.assign(
        cell=[cell_key(s, int(t)) for s, t in zip(summary["service"], summary["cpu_type"], strict=True)]
    )
    needed, keepable = required_cells(req, options)
    frames = {"measurements": frame, "cells": cells, "pairs": pairs_table(summary, req, options)}
    verdicts = run_suites(frames, _suites(req, options, needed), options, needed)
    measured = {(s, int(t)) for s, t in zip(summary["service"], summary["cpu_type"], strict=True)}
    kept = tuple(cell for cell in keepable if cell not in measured)
    return ValidationOutcome(tuple(verdicts), summary, kept)
