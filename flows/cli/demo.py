"""``reach demo`` and ``reach demo experiment``: the closed loop on one machine, and REACH's experiments.

Thin typer commands around :mod:`flows.loop.experiments`; heavy imports happen inside the commands so
that ``reach --help`` stays instant. Everything they start keeps running until ``reach down``.
Every latency they print is measured on the local loop: the world's emulated requests (default) or the
CEEnv model on the live placement (``--latency-source twin``), and says which.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from bento import planning_settings as planning

app = typer.Typer(
    help="The closed loop on a local cluster: exporter, Prometheus, served policy, migrator.",
    invoke_without_command=True,
)

Scenario = Annotated[str, typer.Option(help="scenario directory or name (7-21, 13-29)")]
Policy = Annotated[str, typer.Option(help="auto | greedy-standin (not the learned policy) | a bento tag")]
Duration = Annotated[float, typer.Option(help="seconds the migrator runs")]
Out = Annotated[Path | None, typer.Option(help="output folder (default out/demo)")]
Seed = Annotated[int, typer.Option(help="seed of the start placement and of the world (or the exporter's noise)")]
Qos = Annotated[float, typer.Option(help="monitoring mode acts only above this latency (ms)")]
GATE_REFUSED_EXIT = 3  # as `reach pipeline run`: the gate refused the freshly trained policy


def parse_seeds(runs: int, seeds: str, first: int) -> list[int]:
    """``--seeds 0,1,2`` wins; else ``--runs N`` seeds from ``--seed`` on."""
    if seeds:
        try:
            parsed = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            raise typer.BadParameter(f"--seeds {seeds!r}: give comma-separated integers, e.g. 0,1,2") from None
        if parsed:
            return parsed
        raise typer.BadParameter("--seeds is empty: give comma-separated integers, e.g. 0,1,2")
    if runs < 1:
        raise typer.BadParameter(f"--runs {runs}: give at least 1")
    return list(range(first, first + runs))


def _settings(**values: Any) -> Any:
    from pydantic import ValidationError

    from flows.loop.settings import DemoSettings

    given = {k: v for k, v in values.items() if v is not None}
    try:
        return DemoSettings(**given)
    except ValidationError as exc:
        raise typer.BadParameter(str(exc)) from exc


@app.callback()
def demo(
    ctx: typer.Context,
    scenario: Scenario = "13-29",
    workload: Annotated[str, typer.Option(help="workload the app runs")] = "aggregator_sequential",
    policy: Annotated[
        str,
        typer.Option(
            help="pipeline (REACH's three stages: profile the world's traces, fine-tune + default gate + package, "
            "deploy and act) | auto (a gated bento, no training) | greedy-standin (not the learned policy) | a bento tag"
        ),
    ] = "pipeline",
    duration: Duration = 90.0,
    qos: Qos = 100.0,
    noise: Annotated[float, typer.Option(help="twin: exporter noise, standard deviation in % of the latency")] = 2.0,
    seed: Seed = 0,
    out: Out = None,
    latency_source: Annotated[
        str, typer.Option(help="world (requests emulated on the live placement, Istio's PromQL) | twin (the formula)")
    ] = "world",
    world_rps: Annotated[float, typer.Option(help="world: multiplies every endpoint's rps")] = 2.0,
    trace_window_s: Annotated[float, typer.Option(help="stage 1: seconds of the world's traces ingested")] = 20.0,
    finetune_s: Annotated[float, typer.Option(help="stage 2: wall-clock budget of the fine-tune, s")] = 45.0,
    gate_rules: Annotated[str, typer.Option(help="stage 2: gate rules (data/gate name or JSON path)")] = "default",
    plan_k: Annotated[
        int,
        typer.Option(
            help="stage 2: the bento plans its decisions from the policy's top K moves, and the gate judges that "
            "planner (docs/service.md); 0: the raw policy",
            min=planning.bounds("plan_k")[0],
            max=planning.bounds("plan_k")[1],
        ),
    ] = planning.CHOSEN_PLAN_K,
    record: Annotated[
        Path | None,
        typer.Option(help="also copy the summary here (FILE.md and FILE.json), e.g. for benchmarks/bench_demo.py"),
    ] = None,
    prefect: Annotated[bool, typer.Option("--prefect/--no-prefect", help="start the Prefect dashboard")] = True,
    keep_migrating: Annotated[
        bool,
        typer.Option(
            "--keep-migrating/--stop-migrating",
            help="after the bounded run, keep a migrator running until `reach down` (--stop-migrating: stop it)",
        ),
    ] = True,
) -> None:
    """REACH's three stages on the world (profile, train + gate, act); print the summary; leave it running."""
    if ctx.invoked_subcommand is not None:
        return
    from flows.loop.policy import GateRefused
    from flows.loop.report import latency_note
    from flows.loop.stages import StageOptions, check_settings, summary_table
    from flows.loop.stages import demo as run_demo

    settings = _settings(scenario=scenario, workload=workload, policy=policy, duration_s=duration,
                         qos_threshold_ms=qos, noise_pct=noise, seed=seed, out=out, prefect=prefect,
                         keep_migrating=keep_migrating, latency_source=latency_source,
                         world_rps=world_rps)  # fmt: skip
    try:
        check_settings(settings)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    options = _stage_options(
        StageOptions, trace_window_s=trace_window_s, finetune_s=finetune_s, gate_rules=gate_rules, plan_k=plan_k
    )
    check_cluster(settings.scenario, [settings.workload])
    try:
        result = run_demo(settings, options, say=lambda line: typer.echo(f"reach demo {line}"))
    except GateRefused as refused:
        typer.echo(f"reach demo: {refused}", err=True)
        typer.echo("the cluster, Prometheus and the dashboard keep running until `reach down`", err=True)
        raise typer.Exit(GATE_REFUSED_EXIT) from None
    except (ValueError, RuntimeError, OSError) as err:  # OSError: a missing cluster build, a timeout
        raise _stopped("reach demo", err) from None
    typer.echo(summary_table(result, f"({latency_note(settings.latency_source)}, read from Prometheus)"))
    typer.echo(f"summary: {result.report_md} and {result.report_json}")
    typer.echo(f"time series: {result.csv}\nplot: {result.plot}\nPrometheus: {result.prometheus_url}")
    if record is not None and result.report_md is not None and result.report_json is not None:
        from flows.local.paths import write_text_atomic

        write_text_atomic(record, result.report_md.read_text())
        write_text_atomic(record.with_suffix(".json"), result.report_json.read_text())
        typer.echo(f"recorded: {record} and {record.with_suffix('.json')}")
    if result.dashboard_url:
        typer.echo(f"Prefect dashboard: {result.dashboard_url}")
    typer.echo("everything keeps running until `reach down`")


def check_cluster(scenario: str, workloads: list[str]) -> None:
    """Refuse an unknown scenario or workload (a name or a file) before anything starts, naming the known ones."""
    from ceenv.scenario import load_scenario
    from ceenv.workload import load_workload
    from flows.local.paths import resolve_scenario, resolve_workload

    try:
        scenario_dir = resolve_scenario(scenario)
        loaded = load_scenario(scenario_dir)
        for workload in workloads:
            load_workload(resolve_workload(workload, scenario_dir), loaded)
    except ValueError as err:  # ScenarioError: the file, the field and the fix
        raise typer.BadParameter(str(err)) from None


def _stopped(command: str, err: Exception) -> typer.Exit:
    """One line for a run that failed after it started things, and what keeps running until ``reach down``."""
    typer.secho(f"{command}: error: {err}", err=True, fg=typer.colors.RED)
    typer.echo(
        "what it started (Prefect dashboard, local cluster, Prometheus, the world, policy servers) keeps running "
        "until `reach down`; `reach status` lists it, with each log",
        err=True,
    )
    return typer.Exit(1)


def _stage_options(model: Any, **values: Any) -> Any:
    from pydantic import ValidationError

    try:
        return model(**values)
    except ValidationError as exc:
        raise typer.BadParameter(str(exc)) from exc


@app.command("experiment")
def experiment(
    kind: Annotated[str, typer.Argument(help="node-failure (a hollow node's process killed) or surge (more traffic)")],
    workload: Annotated[
        list[str] | None, typer.Option(help="workload(s); default: aggregator_parallel, aggregator_sequential, chain")
    ] = None,
    scenario: Scenario = "7-21",
    policy: Annotated[
        str,
        typer.Option(
            help="the learned arm: auto (the newest gated bento for the scenario and workload, else the shipped "
            "general policy, gated and packaged) | a bento tag"
        ),
    ] = "auto",
    duration: Duration = 60.0,
    event_at: Annotated[float, typer.Option(help="seconds into each run when the event happens")] = 15.0,
    runs: Annotated[
        int,
        typer.Option(
            help="seeds per workload (--seed, --seed+1, …), three arms each; any 6 consecutive seeds run every order "
            "of the arms once (balanced)"
        ),
    ] = 3,
    seeds: Annotated[str, typer.Option(help="comma-separated seeds instead of --runs, e.g. 0,1,2")] = "",
    qos: Annotated[float, typer.Option(help="QoS threshold (ms): a bucket bound of Istio's histogram")] = 100.0,
    fail: Annotated[
        str, typer.Option(help="node-failure: comma-separated nodes to fail (default: the busiest one at the event)")
    ] = "",
    seed: Seed = 0,
    out: Out = None,
) -> None:
    """Per workload and seed, three arms from the default scheduler's placement: default scheduler, learned, greedy."""
    from flows.loop.arms import WORKLOADS, read_trials
    from flows.loop.cells import markdown
    from flows.loop.experiments import experiment as run_experiment

    if kind not in ("node-failure", "surge"):
        raise typer.BadParameter(f"unknown experiment {kind!r}: use node-failure or surge")
    chosen_seeds = parse_seeds(runs, seeds, seed)
    settings = _settings(scenario=scenario, policy=policy, train_missing=False, duration_s=duration, event_at_s=event_at,
                         qos_threshold_ms=qos, seed=seed, out=out, experiment=kind, prefect=False, start="scheduler",
                         fail_nodes=[n for n in fail.split(",") if n], keep_migrating=False)  # fmt: skip
    workloads = workload or list(WORKLOADS)
    check_cluster(settings.scenario, workloads)
    try:
        run_experiment(settings, workloads, chosen_seeds)
    except (ValueError, RuntimeError, OSError) as err:  # OSError: a missing cluster build, a timeout
        raise _stopped("reach demo experiment", err) from None
    try:
        typer.echo(markdown(read_trials(settings.out), settings.qos_threshold_ms))
    except ValueError as err:  # the folder also holds trials the new ones cannot be pooled with
        typer.secho(f"reach demo experiment: the table cannot be drawn: {err}", err=True, fg=typer.colors.RED)
        typer.echo(f"the trials of this run are in {settings.out}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"trials (JSON, one per seed) in {settings.out}; the world's measurements (Istio's histogram)")
