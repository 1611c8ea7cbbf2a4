"""``reach pipeline|retrain|package|deploy|serve``: run the pipeline, package and serve policies.

Thin typer commands over :mod:`flows.pipeline`, :mod:`flows.release.packaging`,
:mod:`flows.release.redeploy` and :mod:`flows.release.serving`. Prefect, BentoML and torch are
imported inside the commands only.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()
errors = Console(stderr=True)

pipeline_app = typer.Typer(
    help="Run the pipeline: ingest → validate → train → evaluate → gate → package.", no_args_is_help=True
)
GATE_REFUSED_EXIT = 3

retrain_app = typer.Typer(help="Schedule retraining (pipeline, then redeploy).", no_args_is_help=True)


def _use_local_server() -> None:
    """Point Prefect at reach's local server when it runs (else Prefect runs an ephemeral one)."""
    from flows.local import ops, processes

    server = processes.find(ops.PREFECT_SERVER)
    if server is not None and "PREFECT_API_URL" not in os.environ:
        os.environ.update(ops.prefect_env(server.port))


@pipeline_app.command("run")
def pipeline_run(
    params: Annotated[
        Path | None, typer.Option(help="JSON file of pipeline parameters (see `reach pipeline params`).")
    ] = None,
) -> None:
    """Run the pipeline now, in this process (on the local Prefect server when `reach up` started one).

    Exit codes: 0 passed (and packaged), 3 refused by the gate, 2 bad parameters, 1 any other failure.
    """
    from pydantic import ValidationError

    from flows.pipeline import PipelineParams

    try:
        parsed = PipelineParams.model_validate_json(params.read_text()) if params else PipelineParams()
    except (OSError, ValidationError) as err:
        errors.print(f"[bold red]error:[/] {params}: {err}", highlight=False)
        raise typer.Exit(2) from None
    _use_local_server()
    from flows.pipeline import reach_pipeline

    result = reach_pipeline(parsed)
    console.print_json(json.dumps(result))
    if not result["passed"]:
        errors.print(
            f"[bold yellow]gate refused the policy[/] ({result['gate']}); nothing was packaged or deployed",
            highlight=False,
        )
        raise typer.Exit(GATE_REFUSED_EXIT)


@pipeline_app.command("params")
def pipeline_params() -> None:
    """Print the default parameters as JSON (a starting point for --params)."""
    from flows.pipeline import PipelineParams

    console.print_json(PipelineParams().model_dump_json())


@retrain_app.command("schedule")
def retrain_schedule(
    cron: Annotated[str, typer.Option(help="5-field cron, e.g. '0 3 * * 0' (Sundays 03:00).")],
) -> None:
    """Set the retraining schedule; a running `reach up` runner picks it up after `reach down && reach up`."""
    from flows.release.deployments import save_retrain_cron

    try:
        save_retrain_cron(cron)
    except ValueError as err:
        errors.print(f"[bold red]error:[/] {err}", highlight=False)
        raise typer.Exit(2) from None
    console.print(f"retraining scheduled: {cron!r} (restart the runner with `reach down && reach up` to apply)")


def deploy(
    bento: Annotated[str | None, typer.Option(help="Bento tag (default: the newest gated bento not serving).")] = None,
) -> None:
    """Blue/green deploy of a gated bento, with a canary check (runs the reach-redeploy flow)."""
    _use_local_server()
    from flows.release.redeploy import reach_redeploy
    from flows.release.serving import RedeployError

    try:
        result = reach_redeploy(bento)
    except RedeployError as err:
        errors.print(f"[bold red]deploy failed, the previous service keeps serving:[/] {err}", highlight=False)
        raise typer.Exit(1) from None
    console.print_json(json.dumps(result))


def package(
    artefact: Annotated[Path, typer.Option(help="Artefact directory from `reach train` (policy.zip + metadata.json).")],
    rules: Annotated[str, typer.Option(help="Gate rules: a name under data/gate or a JSON path.")] = "default",
    report: Annotated[
        Path | None, typer.Option(help="report.json of `reach evaluate` (default: the one stored in the artefact).")
    ] = None,
) -> None:
    """Gate an evaluated artefact (`reach evaluate --model DIR` first) and package it as a bento (`reach deploy`).

    Exit codes: 0 passed and packaged, 3 refused by the gate (nothing packaged), 2 bad input.
    """
    from bento.artefact import PolicyError
    from flows.local.paths import data_dir
    from flows.release.packaging import release_artefact
    from flows.training.config import ConfigError

    rules_file = Path(rules) if rules.endswith(".json") else data_dir() / "gate" / f"{rules}.json"
    try:
        verdict, bento = release_artefact(artefact, rules_file, report)
    except (PolicyError, ConfigError, ValueError) as err:
        errors.print(f"[bold red]error:[/] {err}", highlight=False)
        raise typer.Exit(2) from None
    for line in verdict.reasons:
        console.print(line, highlight=False)
    if bento is None:
        errors.print(f"[bold yellow]gate refused the policy[/] ({verdict.summary()}); nothing was packaged")
        raise typer.Exit(GATE_REFUSED_EXIT)
    console.print(f"packaged {bento} ({verdict.summary()}, rules {rules_file.name})", highlight=False)


def serve(
    bento: Annotated[str | None, typer.Option(help="Bento tag (default: the newest gated bento).")] = None,
    scenario: Annotated[
        Path | None,
        typer.Option(help="Cluster to serve (scenario directory); a general (observation v4) policy only."),
    ] = None,
    workload: Annotated[
        Path | None, typer.Option(help="Application to serve (call-pattern file), with --scenario.")
    ] = None,
) -> None:
    """Serve a bento in the foreground on 127.0.0.1:3000 (development; `reach deploy` for blue/green)."""
    if (scenario is None) != (workload is None):
        errors.print("[bold red]error:[/] give --scenario and --workload together, or neither", highlight=False)
        raise typer.Exit(2)
    from flows.release.packaging import newest_gated_bento

    tag = bento or newest_gated_bento()
    if tag is None:
        errors.print(
            "[bold red]error:[/] no gated bento in the BentoML store; run `reach pipeline run` first", highlight=False
        )
        raise typer.Exit(2)
    bentoml = os.path.join(os.path.dirname(sys.executable), "bentoml")
    cluster = []
    if scenario is not None and workload is not None:
        cluster = ["--arg", f"scenario={scenario.resolve()}", "--arg", f"workload={workload.resolve()}"]
    os.execv(bentoml, [bentoml, "serve", tag, "--host", "127.0.0.1", "--port", "3000", *cluster])
