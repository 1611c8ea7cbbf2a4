"""Recovery from a node failure on the local Kubernetes 1.20 cluster: time to detect, time to re-place the pods.

Protocol: start a private local cluster for the 7-21 scenario (own state directory and ports),
deploy its services (aggregator ×3, db ×2, others ×1), then ``--failures`` times: pick the cloud or
edge node hosting the most application pods (all of them movable), kill its hollow kubelet by PID
(SIGKILL, not a drain) and run a migrator cycle every second whose policy (in-process) is the
greedy stand-in's decision restricted to its evacuations (``available: false`` nodes, MODEL.md §4).
Measured from the kill: the node NotReady in the API (detection) and every pod of the node
re-placed and the application's Ready count back (recovery); the cycles that did not end in a
migration or a stop are counted as failed cycles, and requests the stand-in refused as blind ones.
The killed node's process is then restarted (``LocalCluster.restart``) and waited for until Ready.
Writes ``report.md`` and ``report.json`` to ``--out`` (default ``benchmarks/results/failure/``).

    flock /tmp/reach-heavy.lock .venv/bin/python benchmarks/bench_failure.py [--failures 3] [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ceenv.schema import ActionRequest
from flows.local.cluster import LocalCluster, Ports
from flows.loop import app
from flows.loop.standin import greedy_advisor
from migrator.app import build_controller
from migrator.guards import Move
from migrator.kube import ClusterAdmin, make_api_client
from migrator.observe import build_request
from migrator.policy import Advice, Stop
from migrator.settings import MigratorSettings

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "data" / "scenarios" / "7-21"
WORKLOAD = ROOT / "data" / "workloads" / "aggregator_sequential_call_patterns.json"
REPLICAS = {"aggregator": 3, "db": 2}
BENCH_PORTS = {
    "etcd_client": 43790, "etcd_peer": 43800, "apiserver": 36443,
    "controller_manager": 40257, "scheduler": 40259, "kubelet_base": 40300,
}  # fmt: skip
GIVE_UP_S = 240.0


class EvacuationsOnly:
    """The greedy stand-in's answer when it is an evacuation, STOP otherwise; counts refused requests."""

    def __init__(self) -> None:
        self.advisor = greedy_advisor(SCENARIO, WORKLOAD)
        self.refused: list[str] = []

    def ask(self, request: ActionRequest) -> Advice:
        try:
            answer = self.advisor.answer(request)
        except ValueError as exc:  # what the service would answer 422
            self.refused.append(str(exc))
            return Stop()
        return Move(answer["pod_name"], answer["target_node"]) if answer.get("decision_rule") else Stop()


def victim(controller: Any) -> tuple[str, list[str]]:
    request = build_request(controller.ops.snapshot(), controller.rules)
    hosted: dict[str, list[str]] = {}
    for service in request.cluster_state.services.values():
        for pod in service.pods:
            hosted.setdefault(pod.node_name, []).append(pod.pod_name)
    movable = [
        (len(p), n, p) for n, p in hosted.items() if "client" not in n and all(request.pod_deployable.get(x) for x in p)
    ]
    _, node, pods = max(movable)
    return node, pods


def one_failure(cluster: LocalCluster, admin: ClusterAdmin, controller: Any) -> dict[str, Any]:
    node, pods = victim(controller)
    wanted = len([p for p in admin.pods("default", app.APP_SELECTOR) if not p.terminating])
    os.kill(cluster.recorded_pids()[f"node-{node}"], signal.SIGKILL)
    killed_s = time.monotonic()
    detected_s = recovered_s = None
    kinds: list[str] = []
    while time.monotonic() - killed_s < GIVE_UP_S:
        kinds += [o.kind for o in controller.run_cycle()]
        if detected_s is None and node not in admin.ready_node_names():
            detected_s = time.monotonic() - killed_s
        live = [p for p in admin.pods("default", app.APP_SELECTOR) if not p.terminating]
        off_node = not [p for p in live if p.node_name == node]
        if detected_s is not None and off_node and len([p for p in live if p.ready]) == wanted:
            recovered_s = time.monotonic() - killed_s
            break
        time.sleep(1.0)
    cluster.restart(f"node-{node}")
    return {
        "node": node,
        "pods": len(pods),
        "detected_s": round(detected_s, 1) if detected_s is not None else None,
        "recovered_s": round(recovered_s, 1) if recovered_s is not None else None,
        "migrations": kinds.count("migrated"),
        "failed_cycles": len([k for k in kinds if k not in ("migrated", "stop")]),
    }


def run(cluster: LocalCluster, failures: int) -> dict[str, Any]:
    kubeconfig = str(cluster.kubeconfig_path)
    settings = MigratorSettings(
        _env_file=None, kubeconfig=kubeconfig, pod_cooldown_s=0.0, max_migrations_per_window=10_000
    )
    controller = build_controller(settings)
    policy = EvacuationsOnly()
    controller.policy = policy
    admin = ClusterAdmin(make_api_client(kubeconfig))
    app.deploy(admin, SCENARIO, replicas=REPLICAS)
    app.wait_ready(admin)
    runs = [one_failure(cluster, admin, controller) for _ in range(failures)]
    app.delete(admin)
    recovered = [r["recovered_s"] for r in runs if r["recovered_s"] is not None]
    return {
        "scenario": "7-21",
        "server": controller.ops.server_version(),  # type: ignore[attr-defined]
        "failures": runs,
        "median_detected_s": statistics.median([r["detected_s"] for r in runs if r["detected_s"] is not None] or [0]),
        "median_recovered_s": statistics.median(recovered) if recovered else None,
        "refused_requests": len(policy.refused),
        "measured_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Recovery from a node failure on the local cluster",
        "",
        f"Measured {report['measured_utc']} by `benchmarks/bench_failure.py --failures {len(report['failures'])}`: "
        f"scenario {report['scenario']}, Kubernetes {report['server']} with kubemark hollow nodes; a node's kubelet "
        "is killed by PID, the migrator (greedy stand-in's evacuations) runs a cycle every second. Requests the "
        f"policy could not read (blind cycles): {report['refused_requests']}.",
        "",
        "| node | pods on it | NotReady after (s) | pods re-placed after (s) | migrations | failed cycles |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["failures"]:
        lines.append(
            f"| {r['node']} | {r['pods']} | {r['detected_s']} | {r['recovered_s']} | {r['migrations']} "
            f"| {r['failed_cycles']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--failures", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "failure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="reach-bench-failure-") as state:
        cluster = LocalCluster(Path(state), ports=Ports(**BENCH_PORTS))
        try:
            cluster.up(SCENARIO)
            report = run(cluster, args.failures)
        finally:
            cluster.down()
    text = json.dumps(report, indent=2)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(text + "\n")
    (args.out / "report.md").write_text(markdown(report))
    ok = all(r["recovered_s"] is not None and r["failed_cycles"] == 0 for r in report["failures"])
    return 0 if ok and report["refused_requests"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
