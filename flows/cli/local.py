"""``reach up|down|status|restart``: the local Prefect server and deployment runner, what runs, what died.

Thin typer commands over :mod:`flows.local.ops` and :mod:`flows.local.processes`; Prefect and
BentoML are imported inside the commands only.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console

console = Console()
errors = Console(stderr=True)


def up(port: Annotated[int, typer.Option(help="Port of the Prefect server on 127.0.0.1.")] = 4200) -> None:
    """Start the local Prefect server (SQLite under $REACH_HOME) and serve the deployments."""
    from flows.local import ops

    try:
        result = ops.up(port)
    except (TimeoutError, RuntimeError, ValueError) as err:  # ValueError: a broken schedule file, named
        errors.print(f"[bold red]error:[/] {err}", highlight=False)
        raise typer.Exit(1) from None
    console.print(
        f"Prefect dashboard: {result.dashboard_url}  (server pid {result.server_pid}, runner pid {result.runner_pid})"
    )


def down() -> None:
    """Stop everything reach started, by PID: the migrator and the deployment runner first, then the bento
    policy servers, the world (or the twin's exporter), Prometheus and the greedy stand-in, then the local
    Kubernetes cluster (hollow nodes, scheduler, controllers, API server, etcd), the Prefect server last."""
    from flows.local import ops

    try:
        stopped = ops.down()
    except RuntimeError as err:
        errors.print(f"[bold red]error:[/] {err}", highlight=False)
        raise typer.Exit(1) from None
    console.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


def status() -> None:
    """What is serving, which model, which processes run, and the last flow runs."""
    from flows.local import ops, processes
    from flows.release.serving import EndpointFileError, current_endpoint

    try:
        endpoint = current_endpoint()
    except EndpointFileError as err:
        errors.print(f"[bold red]error:[/] {err}", highlight=False)
        endpoint = None
    console.print(f"serving: {endpoint.bento} at {endpoint.url} ({endpoint.slot})" if endpoint else "serving: nothing")
    if endpoint is not None:
        print_served(endpoint.url, endpoint.bento)
    for record, alive in processes.records():
        if alive:
            console.print(f"process {record.name}: pid {record.pid}, {record.url}, log {record.log}")
        else:
            console.print(
                f"process {record.name}: [bold red]dead[/] (pid {record.pid} exited), log {record.log}; "
                f"`reach restart {record.name}` starts it again",
                highlight=False,
            )
    for unreadable in processes.unreadable_records():
        errors.print(f"[bold red]error:[/] {unreadable}", highlight=False)
    server = processes.find(ops.PREFECT_SERVER)
    if server is None:
        console.print("prefect: not running (`reach up` starts it)")
        return
    for run in ops.recent_runs(f"{server.url}/api"):
        console.print(f"run {run['name']}: {run['state']} since {run['start_time']}")


def print_served(url: str, bento: str, to_stderr: bool = False) -> None:
    """What the serving bento says it serves (its ``GET /metadata``), else what its labels say.

    Used by ``reach status`` and, after a switch, ``reach deploy`` (``to_stderr``: its stdout is one JSON
    document)."""
    from flows.release.serving import fetch_metadata

    out = errors if to_stderr else console

    try:
        metadata = fetch_metadata(url)
    except (OSError, ValueError) as err:
        import bentoml

        labels = bentoml.bentos.get(bento).info.labels
        out.print(
            f"model: {labels.get('model')} (scenario {labels.get('scenario')}, workload {labels.get('workload')}; "
            f"{url}/metadata did not answer: {err})",
            highlight=False,
        )
        return
    say_served("model: ", metadata, out)


def say_served(prefix: str, metadata: dict[str, Any], out: Console) -> None:
    """The one line of :func:`bento.served.describe` after ``prefix`` on ``out``, each warning on stderr."""
    from bento.served import describe

    out.print(f"{prefix}{describe(metadata, warnings=False)}", highlight=False, soft_wrap=True)
    for warning in (metadata.get("served") or {}).get("warnings") or []:
        errors.print(f"[bold yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)


def restart(
    name: Annotated[str, typer.Argument(help="A process name as `reach status` lists it (dead or alive).")],
) -> None:
    """Start one recorded process again with its recorded command, port and environment; nothing else changes.

    The local cluster's application keeps running: a cluster component (cluster-node-<node>,
    cluster-kube-scheduler…) is restarted in place and a hollow node is waited for until Ready.
    """
    from flows.local import ops

    try:
        record = ops.restart(name)
    except (KeyError, TimeoutError, RuntimeError, ValueError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        errors.print(f"[bold red]error:[/] {message}", highlight=False)
        raise typer.Exit(1) from None
    console.print(f"restarted {record.name}: pid {record.pid}, log {record.log}")
