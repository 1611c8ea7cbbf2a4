"""``reach profiles``: validate measured execution times and ingest them as a new workload dataset.

Thin typer commands over :mod:`flows.profiles.ingest`. ``validate`` checks CSV profiles and/or
Jaeger traces against a scenario and workloads with Great Expectations and saves a report;
``ingest`` does the same and, if everything passes, writes a versioned dataset directory. Any bad
input or failed check prints a clear message on stderr and exits with code 2 (never a traceback).
pandas and great_expectations are imported inside the commands, so ``reach --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from flows.profiles.checks import CheckOptions
    from flows.profiles.ingest import ProfileInputs, ValidationRun

app = typer.Typer(
    help="Validate and ingest measured execution times (CSV profiles, Jaeger traces).", no_args_is_help=True
)
console = Console()
errors = Console(stderr=True)

CsvOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--csv", help="CSV profile: service, cpu_type|node_type|node, execution_time_ms[, count]. Repeatable."
    ),
]
JaegerOpt = Annotated[
    list[Path] | None, typer.Option("--jaeger", help="Jaeger query-API JSON export (GET /api/traces). Repeatable.")
]
NodeTypesOpt = Annotated[
    Path | None,
    typer.Option("--node-types", help='Host/node → CPU type table: JSON {"host": 0} or CSV node,cpu_type.'),
]
IgnoreOpt = Annotated[
    list[str] | None,
    typer.Option("--ignore-service", help="Traced service to leave out (e.g. an ingress gateway). Repeatable."),
]
HostTagOpt = Annotated[
    str | None,
    typer.Option("--host-tag", help="Jaeger process tag naming the host (default: k8s.node.name, hostname…)."),
]
ScenarioOpt = Annotated[
    str, typer.Option("--scenario", "-s", help="Scenario directory or a name under data/scenarios, e.g. 7-21.")
]
WorkloadOpt = Annotated[
    list[str],
    typer.Option("--workload", "-w", help="Workload name or *_call_patterns.json path to update. Repeatable."),
]
ReportsOpt = Annotated[Path, typer.Option("--reports", help="Where validation reports go.")]
MinSamplesOpt = Annotated[int, typer.Option("--min-samples", min=1, help="Fewest samples per (service, CPU type).")]
CeilingOpt = Annotated[float, typer.Option("--ceiling-ms", min=0.0, help="Largest plausible execution time (ms).")]
KeepOpt = Annotated[
    bool, typer.Option("--keep-current", help="Unmeasured cells keep the workload's current time instead of failing.")
]
ToleranceOpt = Annotated[
    float,
    typer.Option("--tolerance", min=0.0, max=1.0, help="How much faster a slower CPU type may measure (fraction)."),
]
SpeedOrderOpt = Annotated[
    str | None,
    typer.Option("--cpu-speed-order", help="CPU types fastest first, e.g. 0,1,2 (default: from the workload's times)."),
]
DEFAULT_REPORTS = Path("reports") / "profiles"


def _fail(message: object, code: int = 2) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {escape(str(message))}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _speed_order(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of CPU types such as 0,1,2") from None


def _inputs(
    csv: list[Path] | None,
    jaeger: list[Path] | None,
    node_types: Path | None,
    ignore: list[str] | None,
    host_tag: str | None,
) -> ProfileInputs:
    from flows.profiles.ingest import ProfileInputs

    return ProfileInputs(tuple(csv or ()), tuple(jaeger or ()), node_types, tuple(ignore or ()), host_tag)


def _options(
    min_samples: int, ceiling_ms: float, keep_current: bool, tolerance: float, order: str | None
) -> CheckOptions:
    from flows.profiles.checks import CheckOptions

    return CheckOptions(min_samples, ceiling_ms, keep_current, tolerance, _speed_order(order))


def _paths(scenario: str, workloads: list[str]) -> tuple[Path, list[Path]]:
    from flows.local.paths import resolve_scenario, resolve_workload

    scenario_dir = resolve_scenario(scenario)
    return scenario_dir, [resolve_workload(w, scenario_dir) for w in workloads]


def _print_summary(run: ValidationRun) -> None:
    table = Table(title="Measured execution time per service and CPU type (ms)")
    for column in ("service", "cpu_type", "n", "mean_ms", "p50_ms", "p95_ms"):
        table.add_column(column, justify="left" if column == "service" else "right")
    for row in run.report["summary"]:
        table.add_row(
            row["service"],
            str(row["cpu_type"]),
            str(row["n"]),
            *(f"{row[k]:.4g}" for k in ("mean_ms", "p50_ms", "p95_ms")),
        )
    console.print(table)
    spans = run.report.get("spans")
    if spans:
        console.print(
            f"Jaeger: {spans['traces']} traces, {spans['spans_total']} spans: {spans['spans_used']} used, "
            f"{spans['spans_dropped']} dropped {spans['dropped_by_reason']}",
            highlight=False,
            soft_wrap=True,
        )
    for cell in run.report.get("kept_current_cells", []):
        console.print(
            f"kept current value: {cell['service']} on cpu_type {cell['cpu_type']}", highlight=False, soft_wrap=True
        )


@app.command()
def validate(
    scenario: ScenarioOpt,
    workload: WorkloadOpt,
    csv: CsvOpt = None,
    jaeger: JaegerOpt = None,
    node_types: NodeTypesOpt = None,
    ignore_service: IgnoreOpt = None,
    host_tag: HostTagOpt = None,
    reports: ReportsOpt = DEFAULT_REPORTS,
    min_samples: MinSamplesOpt = 10,
    ceiling_ms: CeilingOpt = 60_000.0,
    keep_current: KeepOpt = False,
    tolerance: ToleranceOpt = 0.25,
    cpu_speed_order: SpeedOrderOpt = None,
) -> None:
    """Check profiles against the scenario and workloads; save a report; exit 2 if anything fails."""
    from ceenv.validation import ScenarioError
    from flows.profiles.errors import ProfileError
    from flows.profiles.ingest import failure_message, validate_profiles

    try:
        scenario_dir, workload_paths = _paths(scenario, workload)
        inputs = _inputs(csv, jaeger, node_types, ignore_service, host_tag)
        options = _options(min_samples, ceiling_ms, keep_current, tolerance, cpu_speed_order)
        run = validate_profiles(inputs, scenario_dir, workload_paths, options, reports)
    except (ScenarioError, ProfileError, OSError) as err:
        raise _fail(err) from None
    _print_summary(run)
    if not run.outcome.success:
        raise _fail(failure_message(run))
    console.print(
        f"[green]valid:[/] {len(run.outcome.checks)} checks passed; report: {run.report_paths[0]}",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
def ingest(
    scenario: ScenarioOpt,
    workload: WorkloadOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="New dataset directory (never overwritten).")],
    csv: CsvOpt = None,
    jaeger: JaegerOpt = None,
    node_types: NodeTypesOpt = None,
    ignore_service: IgnoreOpt = None,
    host_tag: HostTagOpt = None,
    reports: ReportsOpt = DEFAULT_REPORTS,
    min_samples: MinSamplesOpt = 10,
    ceiling_ms: CeilingOpt = 60_000.0,
    keep_current: KeepOpt = False,
    tolerance: ToleranceOpt = 0.25,
    cpu_speed_order: SpeedOrderOpt = None,
    percentiles: Annotated[
        bool, typer.Option("--percentiles", help="Also write execution-time-p50/-p95 into the call patterns.")
    ] = False,
) -> None:
    """Validate profiles, then write the updated call patterns, summary and report to --out."""
    from ceenv.validation import ScenarioError
    from flows.profiles.errors import ProfileError
    from flows.profiles.ingest import ingest_profiles

    try:
        scenario_dir, workload_paths = _paths(scenario, workload)
        inputs = _inputs(csv, jaeger, node_types, ignore_service, host_tag)
        options = _options(min_samples, ceiling_ms, keep_current, tolerance, cpu_speed_order)
        target, run = ingest_profiles(inputs, scenario_dir, workload_paths, out, options, reports, percentiles)
    except (ScenarioError, ProfileError, OSError) as err:
        raise _fail(err) from None
    _print_summary(run)
    import json

    version = json.loads((target / "manifest.json").read_text(encoding="utf-8"))["version"]
    console.print(f"[green]wrote[/] {target} (dataset version {version})", highlight=False, soft_wrap=True)
