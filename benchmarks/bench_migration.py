"""Migration speed on the local Kubernetes 1.20 cluster: replacement Ready, old pod gone, and the cordon window.

Protocol: start a private local cluster for the 7-21 scenario (own state directory and ports, or
``--kubeconfig`` to reuse a running one), deploy its services (aggregator ×3, db ×2, others ×1),
then run ``--migrations`` controller cycles whose policy (in-process, no HTTP) always advises moving
the first movable aggregator pod to the last node of its ``pod_deployable``. For every migration the
actuator measures, from the moment the guarded decision is handed to it, (a) the replacement Ready
on the target and (b) the old pod deleted from the API, and (c) the cordon window: how long every
other node stayed temporarily cordoned (first cordon to last lift). Reports median and p95 of each,
in seconds, as JSON on stdout and as a Markdown table in ``--out`` (default
``benchmarks/results/migration/``: ``report.md``, ``report.json``). Targets: cordon window p95 ≤ 2 s,
old pod gone p50 ≤ 2 s without force deletion (hollow kubelets with
deploy/local/patches/hollow-node-timing.patch and hollow-node-pleg.patch: 0.2 s status batch and PLEG relist).

    flock /tmp/reach-heavy.lock .venv/bin/python benchmarks/bench_migration.py [--migrations 20] [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from ceenv.schema import ActionRequest
from flows.local.cluster import LocalCluster, Ports
from flows.loop import app
from migrator.app import build_controller
from migrator.guards import Move
from migrator.kube import ClusterAdmin, make_api_client
from migrator.policy import Advice, Stop
from migrator.settings import MigratorSettings

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "data" / "scenarios" / "7-21"
BENCH_PORTS = {
    "etcd_client": 33790, "etcd_peer": 33800, "apiserver": 26443,
    "controller_manager": 30257, "scheduler": 30259, "kubelet_base": 30300,
}  # fmt: skip


class MoveFirstAggregator:
    """An in-process policy: the first aggregator pod that can move goes to its last deployable node."""

    def ask(self, request: ActionRequest) -> Advice:
        for pod in request.cluster_state.services["aggregator"].pods:
            targets = request.pod_deployable.get(pod.pod_name)
            if targets:
                return Move(pod.pod_name, targets[-1])
        return Stop()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summarize(values: list[float]) -> dict[str, float]:
    return {"median_s": round(statistics.median(values), 3), "p95_s": round(percentile(values, 0.95), 3)}


def run(kubeconfig: str, migrations: int) -> dict[str, Any]:
    settings = MigratorSettings(  # type: ignore[call-arg]
        _env_file=None,
        kubeconfig=kubeconfig,
        pod_cooldown_s=0.0,
        return_hold_down_s=0.0,
        max_migrations_per_window=10_000,
    )
    controller = build_controller(settings)
    controller.policy = MoveFirstAggregator()
    admin = ClusterAdmin(make_api_client(kubeconfig))
    app.deploy(admin, SCENARIO, replicas={"aggregator": 3, "db": 2})
    app.wait_ready(admin)
    ready_s, gone_s, window_s, failures = [], [], [], []
    for _ in range(migrations):
        outcome = controller.run_cycle()[0]
        if outcome.result is not None:
            window_s.append(outcome.result.cordon_window_s)
        if outcome.result is not None and outcome.result.migrated:
            ready_s.append(outcome.result.replacement_ready_s)
            gone_s.append(outcome.result.old_pod_gone_s)
        else:
            failures.append(f"{outcome.kind}: {outcome.detail}")
    app.delete(admin)
    return {
        "scenario": "7-21",
        "server": controller.ops.server_version(),  # type: ignore[attr-defined]
        "migrations": migrations,
        "succeeded": len(gone_s),
        "decision_to_replacement_ready": summarize(ready_s) if ready_s else None,
        "decision_to_old_pod_gone": summarize(gone_s) if gone_s else None,
        "cordon_window": summarize(window_s) if window_s else None,
        "cordon_cap_s": settings.cordon_cap_s,
        "failures": failures,
    }


def markdown(report: dict[str, Any]) -> str:
    """The report as the Markdown table the README points to."""
    rows = [
        ("decision → replacement Ready", report["decision_to_replacement_ready"]),
        ("decision → old pod gone", report["decision_to_old_pod_gone"]),
        ("cordon window (other nodes cordoned)", report["cordon_window"]),
    ]
    lines = [
        "# Migration speed on the local cluster",
        "",
        f"Measured {report['measured_utc']} by `benchmarks/bench_migration.py --migrations {report['migrations']}`: "
        f"scenario {report['scenario']}, Kubernetes {report['server']} with kubemark hollow nodes, "
        f"{report['succeeded']}/{report['migrations']} migrations succeeded, cordon cap {report['cordon_cap_s']:g} s.",
        "",
        "| interval | median (s) | p95 (s) |",
        "|---|---|---|",
    ]
    for name, values in rows:
        median, p95 = (f"{values['median_s']:.3f}", f"{values['p95_s']:.3f}") if values else ("–", "–")
        lines.append(f"| {name} | {median} | {p95} |")
    if report["failures"]:
        lines += ["", "Failures:", *[f"- {f}" for f in report["failures"]]]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--migrations", type=int, default=20)
    parser.add_argument("--kubeconfig", default=None, help="use this running cluster instead of starting one")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "migration",
        help="folder for report.md and report.json",
    )  # fmt: skip
    args = parser.parse_args()
    if args.kubeconfig:
        report = run(args.kubeconfig, args.migrations)
    else:
        with tempfile.TemporaryDirectory(prefix="reach-bench-cluster-") as state:
            cluster = LocalCluster(Path(state), ports=Ports(**BENCH_PORTS))
            try:
                report = run(str(cluster.up(SCENARIO)), args.migrations)
            finally:
                cluster.down()
    report["measured_utc"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = json.dumps(report, indent=2)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(text + "\n")
    (args.out / "report.md").write_text(markdown(report))
    return 0 if report["succeeded"] == args.migrations else 1


if __name__ == "__main__":
    sys.exit(main())
