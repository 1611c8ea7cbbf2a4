"""``reach world``: measure a placement in the world (request-level emulation) beside the twin's prediction.

A thin typer command over :func:`flows.loop.world.measure.measure_placement`; SimPy is imported
inside the command so that ``reach --help`` stays fast. Bad input prints one clear line on stderr
and exits with code 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Emulate the application request by request (the world) and measure it.", no_args_is_help=True)
console = Console()
errors = Console(stderr=True)


@app.command()
def measure(
    scenario: Annotated[
        str, typer.Option("--scenario", "-s", help="Scenario directory or a name under data/scenarios, e.g. 7-21.")
    ],
    workload: Annotated[str, typer.Option("--workload", "-w", help="Workload name or a *_call_patterns.json file.")],
    placement: Annotated[Path, typer.Option("--placement", "-p", help='placement.json: {"service": ["node", ...]}')],
    seconds: Annotated[
        float, typer.Option(help="Emulated seconds of arrivals (virtual time, run as fast as possible).")
    ] = 300.0,
    rps: Annotated[float, typer.Option(help="Multiplies every endpoint's rps.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of every random draw of the world.")] = 0,
    ideal: Annotated[
        bool, typer.Option("--ideal", help="Fixed service times, no jitter, no drift: the twin's limit.")
    ] = False,
    traces: Annotated[
        Path | None, typer.Option("--traces", help="Write the requests' traces here as Jaeger query-API JSON.")
    ] = None,
    max_traces: Annotated[int, typer.Option(help="Trace at most this many requests (the first ones).")] = 1000,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print {requests, failed, unfinished, mean_ms, p50_ms, p95_ms, p99_ms, twin_ms} as JSON."
        ),
    ] = False,
) -> None:
    """Run the world on a placement for SECONDS of emulated time; latency statistics and the twin's number."""
    from ceenv.validation import ScenarioError
    from flows.loop.world.measure import DRAIN_S, measure_placement
    from flows.loop.world.model import WorldError

    try:
        result = measure_placement(scenario, workload, placement, seconds, rps, seed, ideal, traces, max_traces)
    except (ScenarioError, WorldError, ValueError) as err:
        errors.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if result.unfinished:
        errors.print(
            f"[bold yellow]warning:[/] {result.unfinished} of the requests that arrived had not finished "
            f"{DRAIN_S:g} s after the last arrival: the placement is saturated at rps {rps:g}, and the latency "
            "statistics, of the finished requests only, are too low; lower --rps or give the services more replicas",
            highlight=False,
            soft_wrap=True,
        )
    if as_json:
        print(json.dumps(result.to_json()))
        return
    table = Table(
        title=f"World ({'ideal' if ideal else 'default'}) on {placement}, {seconds:g} s × rps {rps:g}, seed {seed}"
    )
    keys = ("requests", "failed", "unfinished", "mean_ms", "p50_ms", "p95_ms", "p99_ms", "twin_ms")
    for key in keys:
        table.add_column(key.replace("_ms", " ms"), justify="right")
    row = result.to_json()
    table.add_row(*(str(row[k]) for k in keys))
    console.print(table)
    if traces is not None:
        console.print(f"traces: {traces}")
