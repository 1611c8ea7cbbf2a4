"""``reach migrate`` and ``reach cluster up|down``: run the migrator, and the local Kubernetes cluster it is tested on.

Thin typer commands: ``migrate`` turns the flags that were given into ``MigratorSettings``
overrides (everything else comes from ``REACH_MIGRATOR_*`` variables or ``.env``) and calls
``migrator.app.run_migrator``; ``cluster`` calls :mod:`flows.local.cluster` (and, with ``--app``,
:mod:`flows.loop.app`). Heavy imports (kubernetes, pydantic-settings)
happen inside the commands so that ``reach --help`` stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

cluster_app = typer.Typer(
    help="A local Kubernetes 1.20 control plane with hollow nodes, on 127.0.0.1.", no_args_is_help=True
)


def migrate(
    kubeconfig: Annotated[str | None, typer.Option(help="kubeconfig path; default: in-cluster credentials")] = None,
    policy_url: Annotated[str | None, typer.Option(help="policy service base URL (POST <url>/get_action)")] = None,
    policy_endpoint_file: Annotated[
        str | None,
        typer.Option(help="follow reach's blue/green endpoint file, e.g. ~/.local/share/reach/endpoint.json"),
    ] = None,
    mode: Annotated[str | None, typer.Option(help="monitoring | episode | pod-distribution")] = None,
    dry_run: Annotated[bool | None, typer.Option("--dry-run/--no-dry-run", help="decide and guard only")] = None,
    once: Annotated[bool | None, typer.Option("--once/--loop", help="one cycle (or episode) and exit")] = None,
    interval: Annotated[float | None, typer.Option(help="seconds between cycles")] = None,
    namespace: Annotated[str | None, typer.Option(help="namespace of the application's pods")] = None,
    pod_selector: Annotated[str | None, typer.Option(help="label selector of the application's pods")] = None,
    node_name_label: Annotated[
        str | None, typer.Option(help="node label holding the scenario's name of each node, e.g. reach.io/node-name")
    ] = None,
    max_per_cycle: Annotated[int | None, typer.Option(help="most migrations per cycle")] = None,
    max_per_window: Annotated[int | None, typer.Option(help="most migrations per sliding window")] = None,
    deadline: Annotated[float | None, typer.Option(help="seconds for the replacement to become Ready")] = None,
    prometheus_url: Annotated[str | None, typer.Option(help="Prometheus base URL for latency")] = None,
    latency_query: Annotated[
        str | None, typer.Option(help="PromQL giving the application's end-to-end latency in ms (one sample)")
    ] = None,
    qos: Annotated[float | None, typer.Option(help="monitoring mode acts only above this latency (ms)")] = None,
    latency_max_age: Annotated[
        float | None, typer.Option(help="seconds after which a latency sample is stale: no action (blind)")
    ] = None,
    min_gain: Annotated[
        float | None, typer.Option(help="refuse moves the policy predicts to gain less than this (ms)")
    ] = None,
    require_predicted_gain: Annotated[
        bool | None,
        typer.Option("--require-predicted-gain/--no-require-predicted-gain", help="refuse moves without predictions"),
    ] = None,
    return_hold_down: Annotated[
        float | None, typer.Option(help="seconds before a pod may go back to a node it left")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="publish the migrator's own Prometheus metrics on <metrics-host>:<port>")
    ] = None,
    metrics_host: Annotated[
        str | None, typer.Option(help="address of the metrics port (default 127.0.0.1; the pod IP in a cluster)")
    ] = None,
    env_file: Annotated[Path | None, typer.Option(help="settings file (default: .env if present)")] = None,
) -> None:
    """Observe the cluster, ask the policy, guard, and migrate pods make-before-break.

    An option left out takes its value from the REACH_MIGRATOR_<SETTING> environment variable (e.g.
    REACH_MIGRATOR_QOS_THRESHOLD_MS), else from .env, else the default: --qos 250, --interval 30,
    --deadline 60, --min-gain 1, --return-hold-down 600, --latency-max-age 90 (every setting:
    docs/migrator.md).

    One live migrator per cluster: unless --dry-run, it writes only while it holds the Lease
    kube-system/reach-migrator (REACH_MIGRATOR_LEASE_*), and stands by while another migrator holds
    it; --once then waits up to twice the Lease's duration and exits 3 if it never got it.
    """
    from pydantic import ValidationError

    from migrator.app import run_migrator
    from migrator.settings import MigratorSettings

    given = {
        "kubeconfig": kubeconfig, "policy_url": policy_url, "policy_endpoint_file": policy_endpoint_file, "mode": mode, "dry_run": dry_run, "once": once,
        "interval_s": interval, "namespace": namespace, "pod_selector": pod_selector, "node_name_label": node_name_label,
        "max_migrations_per_cycle": max_per_cycle, "max_migrations_per_window": max_per_window,
        "migration_deadline_s": deadline, "prometheus_url": prometheus_url, "latency_query": latency_query,
        "qos_threshold_ms": qos, "metrics_port": metrics_port, "metrics_host": metrics_host,
        "latency_max_age_s": latency_max_age, "min_predicted_gain_ms": min_gain,
        "require_predicted_gain": require_predicted_gain, "return_hold_down_s": return_hold_down,
    }  # fmt: skip
    overrides: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if env_file is not None and not env_file.is_file():  # an explicit settings file is never silently skipped
        raise _fail(f"--env-file {env_file}: no such file; pass an existing settings file or leave --env-file out")
    try:
        settings = MigratorSettings(_env_file=env_file or ".env", **overrides)
    except ValidationError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if settings.kubeconfig and not Path(settings.kubeconfig).expanduser().is_file():
        raise _fail(
            f"kubeconfig {settings.kubeconfig}: no such file; pass --kubeconfig (or REACH_MIGRATOR_KUBECONFIG) with "
            "the cluster's kubeconfig, e.g. ~/.local/state/reach/cluster/kubeconfig after `reach cluster up`"
        )
    try:
        code = run_migrator(settings)
    except Exception as err:
        if not _is_kube_config_error(err):
            raise
        where = f"kubeconfig {settings.kubeconfig}" if settings.kubeconfig else "in-cluster credentials"
        raise _fail(
            f"{where}: {err}; pass --kubeconfig (or REACH_MIGRATOR_KUBECONFIG) with a valid kubeconfig, "
            "or run the migrator in a pod with a service account (deploy/k8s/)"
        ) from None
    raise typer.Exit(code)


def _fail(message: str, code: int = 2) -> typer.Exit:
    """One ``error:`` line on stderr; the exit to raise (2: bad input, 1: the cluster did not come up)."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def _is_kube_config_error(err: Exception) -> bool:
    """The Kubernetes client's ConfigException (a kubeconfig it cannot load, no in-cluster service account),
    told by its module: only the migrator imports the Kubernetes client (import-linter)."""
    return type(err).__module__.startswith("kubernetes.config")


@cluster_app.command("up")
def cluster_up(
    scenario: Annotated[str, typer.Option(help="REACH scenario directory or a name under data/scenarios")] = "7-21",
    state_dir: Annotated[Path | None, typer.Option(help="state directory (PIDs, logs, kubeconfig)")] = None,
    app: Annotated[bool, typer.Option("--app/--no-app", help="also deploy the scenario's services")] = False,
) -> None:
    """Start etcd, the control plane and one hollow node per scenario node (needs deploy/local/install.sh).

    Exit codes: 0 up, 2 an unknown or unusable scenario, 1 the cluster did not come up (the message names
    the missing build or the component; when the cluster itself fails to start, what had started is
    stopped again, its logs kept; when only `--app` fails, the cluster keeps running until `reach down`).
    """
    from flows.local.cluster import LocalCluster, read_scenario_nodes
    from flows.local.paths import resolve_scenario

    try:
        scenario_dir = resolve_scenario(scenario)
        read_scenario_nodes(scenario_dir)  # every node a hollow node can be: refused before anything starts
    except (FileNotFoundError, ValueError) as err:  # ScenarioError is a ValueError
        raise _fail(str(err)) from None
    cluster = LocalCluster(state_dir)
    try:
        cluster.up(scenario_dir)
        if app:
            from flows.loop import app as demo_app

            demo_app.deploy(cluster.admin(), scenario_dir)
            demo_app.wait_ready(cluster.admin())
    except (OSError, ValueError, RuntimeError) as err:  # a missing build, a timeout, /etc/hosts not writable
        raise _fail(str(err), code=1) from None
    if app:
        typer.echo("demo app Ready (label reach.io/app=demo)")


@cluster_app.command("down")
def cluster_down(
    state_dir: Annotated[Path | None, typer.Option(help="state directory of the cluster to stop")] = None,
) -> None:
    """Stop the processes recorded by `reach cluster up` (by PID) and remove their state."""
    from flows.local.cluster import LocalCluster

    LocalCluster(state_dir).down()
