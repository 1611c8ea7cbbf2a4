"""Local operations: start and stop the Prefect server and the deployment runner, and report status.

``up`` starts a Prefect server on 127.0.0.1 (SQLite under ``$REACH_HOME/prefect``), waits until it
is healthy, then starts a runner process (``python -m flows.release.deployments``) that registers and
serves the deployments. ``down`` stops everything reach started, by PID. ``restart`` starts one
recorded process again as it was (a local cluster component through the cluster's own process
table), leaving everything else — the cluster's application included — as it is. Used by ``reach
up``, ``reach down``, ``reach status`` and ``reach restart``.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.local import processes

PREFECT_SERVER = "prefect-server"
PREFECT_RUNNER = "prefect-runner"
DEFAULT_PREFECT_PORT = 4200


def prefect_env(port: int) -> dict[str, str]:
    """Environment for processes that talk to reach's local Prefect server."""
    home = processes.reach_home() / "prefect"
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "BENTOML_DO_NOT_TRACK": "true",
        "GX_ANALYTICS_ENABLED": "false",
    }


@dataclass(frozen=True)
class Up:
    dashboard_url: str
    server_pid: int
    runner_pid: int


def up(port: int = DEFAULT_PREFECT_PORT, timeout_s: float = 90.0) -> Up:
    """Start the Prefect server and the deployment runner (idempotent: reuses running ones, also when two
    ``reach up`` run at once: the registry starts each name once and the other finds it running)."""
    env = prefect_env(port)
    prefect = os.path.join(os.path.dirname(sys.executable), "prefect")
    server = processes.start(
        PREFECT_SERVER,
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--analytics-off"],
        port,
        env,
        reuse_running=True,
    )
    processes.wait_http(f"{server.url}/api/health", timeout_s, server.pid)
    if processes.find(PREFECT_RUNNER) is None:
        from flows.release.deployments import retrain_cron

        retrain_cron()  # a broken schedule file would kill the runner at its start: say so here instead
    runner = processes.start(
        PREFECT_RUNNER,
        [sys.executable, "-m", "flows.release.deployments"],
        port,
        {**env, "PREFECT_API_URL": f"{server.url}/api"},
        reuse_running=True,
    )
    return Up(f"{server.url}/dashboard", server.pid, runner.pid)


# `reach down` stops the clients first (the deployment runner; the demo's background migrator, which would
# otherwise act on a cluster that is going away), then the other servers, the local cluster, and Prefect last.
FIRST = (PREFECT_RUNNER, "reach-migrator")
CLUSTER_PREFIX = "cluster-"


def stop_order(name: str) -> tuple[int, int]:
    """Clients first, then the rest, the cluster late (its nodes and schedulers before the API server, etcd
    last: the cluster's own stop order), Prefect's server last."""
    from flows.local.cluster.supervisor import _STOP_RANK

    if name in FIRST:
        return 0, 0
    if name == PREFECT_SERVER:
        return 3, 0
    if name.startswith(CLUSTER_PREFIX):
        return 2, _STOP_RANK.get(name.removeprefix(CLUSTER_PREFIX), 0)
    return 1, 0


def down() -> list[str]:
    """Stop every process reach started (clients first, the cluster late, Prefect last); return their names.
    The records of processes that had died are dropped; one that does not stop raises (after the rest).

    A local cluster's own process table (``pids.json``) is read too: a component restarted without going
    through :func:`restart` (e.g. by an older reach) runs under a PID the registry never saw, and is
    stopped here by that recorded PID rather than left running."""
    stopped: list[str] = []
    survived: list[str] = []
    cluster_states = {cluster_state_dir(r) for r, _ in processes.records() if r.name.startswith(CLUSTER_PREFIX)}
    for record, alive in sorted(processes.records(), key=lambda r: stop_order(r[0].name)):
        # stop() also ends what a dead leader left in its process group, then drops the record
        if processes.stop(record.name) and alive:
            stopped.append(record.name)
        elif processes.recorded(record.name) is not None:  # still running, or not ours to signal: keep it
            survived.append(f"{record.name} (pid {record.pid})")
    for state_dir in sorted(cluster_states):
        stopped_now, still = _stop_cluster_table(state_dir)
        stopped += stopped_now
        survived += still
    unreadable = processes.unreadable_records()
    if survived or unreadable:
        problems = [f"{', '.join(survived)} did not stop; stop it by that PID (`kill <pid>`)"] if survived else []
        problems += [str(err) for err in unreadable]
        raise RuntimeError(
            f"stopped {', '.join(stopped) or 'nothing'}, but {'; '.join(problems)}; then run `reach down` again"
        )
    return stopped


def cluster_state_dir(record: processes.ProcessRecord) -> Path:
    """The state directory of the local cluster whose component ``record`` is (its log lies in ``<state>/logs``)."""
    return Path(record.log).parent.parent


def _stop_cluster_table(state_dir: Path) -> tuple[list[str], list[str]]:
    """Stop what a cluster's own process table still runs (its stop order, its guard against reused PIDs);
    return the names stopped and those that survived, as the registry names them."""
    from flows.local.cluster.supervisor import ProcessTable

    try:
        stopped, survived = ProcessTable(state_dir).stop_running()
    except (OSError, ValueError):  # no table any more, or a torn one: nothing more to find there
        return [], []
    return [f"{CLUSTER_PREFIX}{n}" for n in stopped], [f"{CLUSTER_PREFIX}{n}" for n in survived]


def restart_cluster_component(cluster: Any, component: str) -> int:
    """Start one component of ``cluster`` (a :class:`flows.local.cluster.LocalCluster`) again through its own process
    table (a hollow node is waited for until Ready) and keep the registry's record of it in step, so that ``reach
    down`` stops the new process; returns the new PID."""
    pid = int(cluster.restart(component))
    name = f"{CLUSTER_PREFIX}{component}"
    record = processes.recorded(name)
    if record is not None and cluster_state_dir(record).resolve() == Path(cluster.state_dir).resolve():  # its own
        processes.adopt(name, pid, record.port, record.argv, record.log)
    return pid


def restart(name: str) -> processes.ProcessRecord:
    """Start the recorded process ``name`` again with its recorded command, port and environment.

    A local cluster component (``cluster-<component>``, e.g. ``cluster-node-tb-edge-vm-4-1``) is
    restarted by the cluster's own process table (its state directory holds the component's log),
    and a hollow node is waited for until Ready; the cluster's pods and Deployments are untouched.
    Raises KeyError for a name reach never recorded.
    """
    if name.startswith("bento-"):  # the serving endpoint records which server serves: a restart would orphan it
        raise ValueError(f"{name} is a policy server; `reach deploy` (blue/green, canary) replaces it, not a restart")
    record = processes.recorded(name)
    if record is None or not name.startswith(CLUSTER_PREFIX):
        return processes.restart(name)
    from flows.local.cluster import LocalCluster

    restart_cluster_component(LocalCluster(cluster_state_dir(record)), name.removeprefix(CLUSTER_PREFIX))
    return processes.recorded(name) or record  # re-adopted under the new PID by restart_cluster_component


def recent_runs(api_url: str, limit: int = 5) -> list[dict[str, Any]]:
    """The latest flow runs from the Prefect API (name, flow, state, start time)."""
    body = json.dumps({"limit": limit, "sort": "START_TIME_DESC"}).encode()
    request = urllib.request.Request(
        f"{api_url}/flow_runs/filter", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        runs = json.loads(response.read())
    return [
        {
            "name": r["name"],
            "state": r.get("state_name"),
            "start_time": r.get("start_time"),
            "deployment_id": r.get("deployment_id"),
        }
        for r in runs
    ]
