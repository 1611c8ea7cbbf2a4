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
from typing import Annotated, Any

import typer
from rich.console import Console

from bento import planning_settings as planning

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
    from flows.pipeline import check_params, reach_pipeline

    try:  # what the flow refuses before any work (ScenarioError, ConfigError, PolicyError are ValueErrors)
        check_params(parsed)
    except ValueError as err:
        errors.print(f"[bold red]error:[/] {params or 'the default parameters'}: {err}", highlight=False)
        raise typer.Exit(2) from None
    runs_before = _run_folders()
    try:
        result = reach_pipeline(parsed)
    except Exception as err:  # a failed step (e.g. profiles refused by Great Expectations); Prefect logged it above
        new = sorted(_run_folders() - runs_before)
        where = parsed.run_dir or (str(new[-1]) if new else None)
        first_line = (str(err).strip().splitlines() or [""])[0]
        errors.print(
            f"[bold red]error:[/] the pipeline run failed: {type(err).__name__}: {first_line}"
            + (f"; what it wrote is in {where}" if where else "")
            + "; the full log is above (and in the Prefect dashboard when `reach up` runs)",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from None
    console.print_json(json.dumps(result))
    if not result["passed"]:
        errors.print(
            f"[bold yellow]gate refused the policy[/] ({result['gate']}); nothing was packaged or deployed",
            highlight=False,
        )
        raise typer.Exit(GATE_REFUSED_EXIT)


def _run_folders() -> set[Path]:
    """The pipeline's default run folders (``out/runs/<time>``) now: the one a failed run created is new."""
    from flows.local.paths import out_dir

    root = out_dir() / "runs"
    return {p for p in root.iterdir() if p.is_dir()} if root.is_dir() else set()


@pipeline_app.command("params")
def pipeline_params() -> None:
    """Print the default parameters as JSON (a starting point for --params)."""
    from flows.pipeline import PipelineParams

    console.print_json(PipelineParams().model_dump_json())


@retrain_app.command("schedule")
def retrain_schedule(
    cron: Annotated[str, typer.Option(help="5-field cron in UTC, e.g. '0 3 * * 0' (Sundays 03:00 UTC).")],
) -> None:
    """Set the retraining schedule (UTC) of `reach up`'s runner; it applies after `reach down && reach up`.

    A retrain retrains the cluster being served, with the planning it serves with (none deployed: the
    pipeline's defaults), and never switches the endpoint to another cluster. Work pools
    (deploy/prefect/*.yaml) keep their own cron and ignore this one.
    """
    from flows.release.deployments import next_fire_time, save_retrain_cron

    try:
        save_retrain_cron(cron)
    except ValueError as err:
        errors.print(f"[bold red]error:[/] {err}", highlight=False)
        raise typer.Exit(2) from None
    fire = next_fire_time(cron)
    next_run = f", next at {fire:%Y-%m-%d %H:%M} UTC" if fire is not None else ""
    console.print(
        f"retraining scheduled: {cron!r} UTC{next_run} (restart the runner with `reach down && reach up` to apply)",
        highlight=False,
    )


def _analysis_params(
    prometheus_url: str | None, latency_query: str | None, period_s: float, tolerance_pct: float
) -> Any:
    """The analysis of ``reach deploy``: :func:`flows.release.redeploy.analysis_from_settings` (the option, the
    migrator's settings or the local stack's Prometheus), shared with the unattended flows."""
    from flows.release.redeploy import analysis_from_settings

    return analysis_from_settings(prometheus_url, latency_query, period_s, tolerance_pct)


def deploy(
    bento: Annotated[
        str | None, typer.Option(help="Bento tag (default: the newest gated bento that can serve the cluster).")
    ] = None,
    scenario: Annotated[
        str | None, typer.Option(help="Scenario served (name or dir; default: the one the serving deployment serves).")
    ] = None,
    workload: Annotated[
        str | None, typer.Option(help="Workload served (name or file; default: the serving deployment's).")
    ] = None,
    analysis: Annotated[
        bool,
        typer.Option(
            "--analysis/--no-analysis",
            help="After the switch, compare the measured latency with the incumbent's and roll back if worse "
            "(needs a Prometheus: --prometheus-url, REACH_MIGRATOR_PROMETHEUS_URL or `reach up`'s).",
        ),
    ] = True,
    prometheus_url: Annotated[str | None, typer.Option(help="Prometheus base URL for the analysis.")] = None,
    latency_query: Annotated[
        str | None, typer.Option(help="PromQL of the latency in ms (default: the migrator's latency_query).")
    ] = None,
    analysis_s: Annotated[float, typer.Option(help="Seconds of each analysed period.", min=1)] = 60.0,
    tolerance_pct: Annotated[float, typer.Option(help="How much worse (%) the new policy may be.", min=0)] = 5.0,
    kubeconfig: Annotated[
        str | None,
        typer.Option(
            help="Live cluster whose own request leads the canary (default: REACH_MIGRATOR_KUBECONFIG, else none)."
        ),
    ] = None,
) -> None:
    """Blue/green deploy of a gated bento for one cluster (scenario, workload), with a canary and an analysis.

    Exit codes: 0 deployed (or nothing to deploy), 1 the switch failed or the analysis rolled back
    (the previous service serves), 2 bad input (unknown cluster, a bento that cannot serve it).
    """
    _use_local_server()  # before Prefect is imported (flows.release.redeploy)
    params = _analysis_params(prometheus_url, latency_query, analysis_s, tolerance_pct) if analysis else None
    if analysis and params is None:
        errors.print("no Prometheus configured: deploying without the analysis period", highlight=False)
    from flows.local.locks import LockTimeout
    from flows.release.redeploy import RollbackFailed, RolledBack, kubeconfig_from_settings, reach_redeploy
    from flows.release.serving import RedeployError

    live = kubeconfig_from_settings(kubeconfig)
    try:
        result = reach_redeploy(bento, scenario, workload, analysis=params, kubeconfig=live)
    except RolledBack as err:
        errors.print(f"[bold red]rolled back:[/] {err}", highlight=False)
        raise typer.Exit(1) from None
    except RollbackFailed as err:
        errors.print(f"[bold red]rollback failed:[/] {err}", highlight=False)  # it says what serves now
        raise typer.Exit(1) from None
    except RedeployError as err:
        errors.print(f"[bold red]deploy failed, the previous service keeps serving:[/] {err}", highlight=False)
        raise typer.Exit(1) from None
    except LockTimeout as err:  # the new service serves; retiring the old one waited too long for another deploy
        errors.print(f"[bold red]deployed, but the previous server was not stopped:[/] {err}", highlight=False)
        raise typer.Exit(1) from None
    except ValueError as err:  # an unknown scenario, workload or bento; a bento that cannot serve the cluster
        errors.print(f"[bold red]error:[/] {err}", highlight=False)
        raise typer.Exit(2) from None
    console.print_json(json.dumps(result))
    from flows.cli.local import print_served
    from flows.release.serving import current_endpoint

    endpoint = current_endpoint()
    if endpoint is not None:  # what now serves, as its /metadata says (cluster, raw or planning, the gate's)
        print_served(endpoint.url, endpoint.bento, to_stderr=True)


def package(
    artefact: Annotated[Path, typer.Option(help="Artefact directory from `reach train` (policy.zip + metadata.json).")],
    rules: Annotated[str, typer.Option(help="Gate rules: a name under data/gate or a JSON path.")] = "default",
    report: Annotated[
        Path | None,
        typer.Option(
            help="report.json of `reach evaluate` (default: the one stored in the artefact). A report of "
            "`reach evaluate --plan-k K` builds a bento that serves with that planning."
        ),
    ] = None,
) -> None:
    """Gate an evaluated artefact (`reach evaluate --model DIR` first) and package it as a bento (`reach deploy`).

    The bento serves what the gate judged: the raw policy, or the planner its report played.

    Exit codes: 0 passed and packaged, 3 refused by the gate (nothing packaged), 2 bad input.
    """
    from bento.artefact import PolicyError
    from flows.local.paths import data_dir
    from flows.release.packaging import release_artefact
    from flows.training.config import ConfigError

    rules_file = Path(rules) if rules.endswith(".json") else data_dir() / "gate" / f"{rules}.json"
    if not rules_file.is_file():
        known = sorted(p.stem for p in (data_dir() / "gate").glob("*.json"))
        errors.print(
            f"[bold red]error:[/] --rules {rules}: no such gate rules file ({rules_file}); pass one of {known} "
            "or the path of a rules JSON file",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(2)
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


def _print_served(tag: str, cluster: Any, arguments: dict[str, str]) -> None:
    """The start-up line of ``reach serve``: what the server will serve (:func:`flows.release.serving.served_summary`)."""
    from flows.cli.local import say_served
    from flows.release.serving import served_summary

    try:
        summary = served_summary(tag, cluster, arguments)
    except (KeyError, ValueError, OSError) as err:  # an unreadable card or file: the server itself will say more
        errors.print(f"serving {tag} for {cluster} on http://127.0.0.1:3000 (what it serves is unknown: {err})")
        return
    say_served(f"serving {tag} on http://127.0.0.1:3000: ", summary, console)


def serve(
    bento: Annotated[
        str | None, typer.Option(help="Bento tag (default: the newest gated bento for the cluster).")
    ] = None,
    scenario: Annotated[str, typer.Option(help="Scenario served (name or dir).")] = "7-21",
    workload: Annotated[str, typer.Option(help="Workload served (name or file).")] = "aggregator_sequential",
    plan_k: Annotated[
        int | None,
        typer.Option(
            help="Decision-time planning (general bentos; bento argument plan_k, docs/service.md): K > 0 plans, "
            "0 plays the raw policy. Default: as the bento was built (what its gate judged); anything else serves "
            "decisions the gate did not judge, and the start-up line and /metadata say so.",
            min=planning.bounds("plan_k")[0],
            max=planning.bounds("plan_k")[1],
        ),
    ] = None,
    plan_slack: Annotated[
        int | None,
        typer.Option(
            help="Fewer migrations when planning (bento argument plan_slack): no planned sequence longer than the "
            "moves greedy would make from here plus this many; "
            f"{planning.NO_MOVE_CAP}: no cap. Default: as the bento was built; anything else serves decisions the "
            "gate did not judge, and the start-up line and /metadata say so.",
            min=planning.bounds("plan_slack")[0],
            max=planning.bounds("plan_slack")[1],
        ),
    ] = None,
) -> None:
    """Serve a bento for a cluster in the foreground on 127.0.0.1:3000 (development; `reach deploy` for blue/green).

    A general bento gets the cluster's files as its serve-time arguments (docs/release.md). Before the server
    starts, one line says what it will serve: the cluster, how it decides (raw or planning) and what it was
    trained on, with a warning when its planning differs from the evaluation its gate judged.
    """
    from flows.release.packaging import bento_labels, gated_bento_for, rejected_for
    from flows.release.selection import check_servable, cluster_of, serve_arguments

    arguments: dict[str, str] = {}
    try:
        cluster = cluster_of(scenario, workload)
        tag = bento or gated_bento_for(cluster)
        if tag is not None:
            labels = bento_labels(tag)
            check_servable(tag, labels, cluster)
            arguments = serve_arguments(tag, labels, cluster)
    except ValueError as err:  # ScenarioError, NotServable, an unknown bento
        errors.print(f"[bold red]error:[/] {err}", highlight=False)
        raise typer.Exit(2) from None
    if tag is None:
        skipped = rejected_for(cluster)
        errors.print(
            f"[bold red]error:[/] no gated bento for {cluster} in the BentoML store; run "
            f"`reach pipeline run` for it first (or pass --scenario/--workload of one you have)"
            + (f"; {skipped}" if skipped else ""),
            highlight=False,
        )
        raise typer.Exit(2)
    bentoml = os.path.join(os.path.dirname(sys.executable), "bentoml")
    if plan_k is not None:
        arguments["plan_k"] = str(plan_k)
    if plan_slack is not None:
        arguments["plan_slack"] = str(plan_slack)
    _print_served(tag, cluster, arguments)
    cluster_args = [part for key, value in arguments.items() for part in ("--arg", f"{key}={value}")]
    from bento.arguments import environment

    os.environ.update(environment(arguments))  # BentoML drops --arg of a built bento (bento/arguments.py)
    os.execv(bentoml, [bentoml, "serve", tag, "--host", "127.0.0.1", "--port", "3000", *cluster_args])
