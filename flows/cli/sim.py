"""``reach sim``: latency of a placement, a greedy-vs-best-known demo, and file validation.

Thin typer commands over :mod:`ceenv`. Bad input prints one clear line on stderr and exits with
code 2 (``validate`` exits 1 when the files are invalid). matplotlib is imported only by ``demo``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Simulate end-to-end latency on REACH-format scenarios.", no_args_is_help=True)
console = Console()
errors = Console(stderr=True)

ScenarioOpt = Annotated[
    str,
    typer.Option(
        "--scenario",
        "-s",
        help="Scenario directory (nodes.json + services.json) or a name under data/scenarios, e.g. 7-21.",
    ),
]
WorkloadOpt = Annotated[
    str,
    typer.Option(
        "--workload",
        "-w",
        help="Workload name (aggregator_sequential, aggregator_parallel, chain) or a path to a *_call_patterns.json file.",
    ),
]


def _fail(err: Exception, code: int = 2) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@app.command()
def latency(
    scenario: ScenarioOpt,
    workload: WorkloadOpt,
    placement: Annotated[Path, typer.Option("--placement", "-p", help='placement.json: {"service": ["node", ...]}')],
    as_json: Annotated[bool, typer.Option("--json", help="Print {latency_ms, endpoints} as JSON.")] = False,
) -> None:
    """End-to-end latency (nominal conditions) of a placement, per endpoint and for the application."""
    from ceenv.validation import ScenarioError
    from flows.evaluation.placements import placement_latency

    try:
        result = placement_latency(scenario, workload, placement)
    except ScenarioError as err:
        raise _fail(err) from None
    if as_json:
        print(json.dumps(result))
        return
    table = Table(title=f"Latency (nominal) of {placement}")
    table.add_column("endpoint")
    table.add_column("latency ms", justify="right")
    for name, value in result["endpoints"].items():
        table.add_row(name, f"{value:.3f}")
    table.add_row("[bold]application (rps-weighted)[/]", f"[bold]{result['latency_ms']:.3f}[/]")
    console.print(table)


@app.command()
def demo(
    scenario: ScenarioOpt = "7-21",
    workload: WorkloadOpt = "aggregator_sequential",
    seed: Annotated[int, typer.Option(help="Seed of the start state draw.", min=0)] = 0,
    dynamic: Annotated[bool, typer.Option(help="Draw capacities, utilisation and delays (else nominal).")] = True,
    out: Annotated[
        Path | None, typer.Option(help="PNG to write (default: out/demo-<scenario>-<workload>.png).")
    ] = None,
) -> None:
    """Draw a start placement, run greedy and the best-known search, print a table and write a PNG."""
    from ceenv.validation import ScenarioError
    from flows.evaluation.placements import plot_demo, run_demo

    try:
        result = run_demo(scenario, workload, seed, dynamic)
    except ScenarioError as err:
        raise _fail(err) from None
    table = Table(title=f"{result.scenario} / {result.workload}, seed {seed} ({'dynamic' if dynamic else 'nominal'})")
    for column in ("method", "latency ms", "reduction %", "moves", "time ms"):
        table.add_column(column, justify="right" if column != "method" else "left")
    for o in result.outcomes:
        table.add_row(
            o.method,
            f"{o.end_latency_ms:.2f}",
            f"{o.reduction_pct:.1f}",
            str(o.moves),
            f"{o.decision_seconds * 1e3:.1f}",
        )
    console.print(table)
    from flows.local.paths import out_dir

    target = out or out_dir() / f"demo-{result.scenario}-{result.workload}.png"
    plot_demo(result, target)
    console.print(f"wrote {target}")


@app.command()
def validate(
    scenario: ScenarioOpt,
    workload: Annotated[
        str | None, typer.Option("--workload", "-w", help="Also validate this workload against the scenario.")
    ] = None,
) -> None:
    """Validate a scenario (and optionally a workload); print every problem; exit 1 if any."""
    from flows.evaluation.placements import validate_files

    problems, summary = validate_files(scenario, workload)
    for problem in problems:
        errors.print(f"[bold red]invalid:[/] {problem}", highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(1)
    console.print(f"[green]valid:[/] {summary}", highlight=False)


@app.command("import-mubench")
def import_mubench(
    workmodel: Annotated[Path, typer.Option(help="muBench workmodel.json (compute_pi or loader form).")],
    times: Annotated[Path, typer.Option(help='Execution times: {"service": {"<cpu_type>": "7ms", ...}, ...}.')],
    out: Annotated[Path, typer.Option(help="The *_call_patterns.json to write (never overwritten).")],
    entry: Annotated[str | None, typer.Option(help="Entry service (default: the one no service calls).")] = None,
    client: Annotated[str, typer.Option(help="Name of the client service that calls the entry.")] = "client",
    rps: Annotated[float, typer.Option(help="Request rate of the endpoint.")] = 5.0,
) -> None:
    """Convert a muBench work model into a REACH call-pattern file, with execution times supplied separately."""
    from ceenv.validation import ScenarioError
    from flows.profiles.workmodel import import_workmodel

    try:
        written = import_workmodel(workmodel, times, out, entry=entry, client=client, rps=rps)
    except (ScenarioError, OSError) as err:  # OSError: --out exists or cannot be written (the message names it)
        raise _fail(err) from None
    console.print(f"wrote {written}")


@app.command()
def generate(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Directory to write nodes.json, services.json and the workload into.")
    ],
    seed: Annotated[int, typer.Option(help="Seed of the generator: the same seed writes the same files.", min=0)] = 0,
    nodes: Annotated[
        int | None, typer.Option(help="Nodes, the client node included (default: drawn in 5..20).")
    ] = None,
    services: Annotated[int | None, typer.Option(help="Services besides the client (default: drawn in 3..8).")] = None,
    cpu_types: Annotated[int | None, typer.Option(help="CPU types (default: drawn in 1..3).")] = None,
    endpoints: Annotated[int | None, typer.Option(help="Endpoints of the workload (default: drawn in 1..3).")] = None,
    max_replica: Annotated[int, typer.Option(help="Largest max-replica a service may draw.", min=1)] = 5,
    force: Annotated[bool, typer.Option(help="Overwrite files already in --out.")] = False,
) -> None:
    """Write a random, feasible cluster and application in REACH's file format (ceenv.generator)."""
    import numpy as np

    from ceenv.generator import GeneratorLimits, generate_scenario

    try:
        limits = GeneratorLimits(max_replica=(1, max_replica))
        generated = generate_scenario(
            np.random.default_rng(seed),
            nodes=nodes,
            services=services,
            cpu_types=cpu_types,
            endpoints=endpoints,
            limits=limits,
            name=out.name or "generated",
        )
        scenario, workload = generated.parse()
    except ValueError as err:
        raise _fail(err) from None
    files = {
        "nodes.json": generated.nodes_doc,
        "services.json": generated.services_doc,
        generated.workload_file: generated.workload_doc,
    }
    if out.exists() and not out.is_dir():
        raise _fail(ValueError(f"--out {out} is a file; pass a folder for nodes.json, services.json and the workload"))
    existing = [name for name in files if (out / name).exists()]
    if existing and not force:
        raise _fail(ValueError(f"{out} already holds {', '.join(existing)}; pass --force to overwrite"))
    out.mkdir(parents=True, exist_ok=True)
    for name, doc in files.items():  # each file appears whole or not at all
        tmp = out / f".{name}.tmp"
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
        tmp.replace(out / name)
    console.print(
        f"wrote {out}: {len(scenario.nodes)} nodes ({', '.join(scenario.layers)}), {len(scenario.services) - 1} services besides the client, "
        f"{scenario.slot_count} pod slots, workload {generated.workload_file} with {len(workload.endpoints)} endpoint(s)"
    )
