"""End to end: the experiments' node-failure event on the real control plane, measured by the world.

One short arm of ``reach demo experiment node-failure`` (:func:`flows.loop.run.run_loop`) on the
local Kubernetes 1.20 cluster of the 7-21 scenario, with the world (``python -m
flows.loop.world_live``) and a real Prometheus on 127.0.0.1 and the greedy stand-in as the policy.
At the event the busiest cloud/edge node's hollow kubelet is killed by its recorded PID and the
world fails the node at the same moment. Checked: the recorded process is gone after the event,
the world reports the node failed (its own gauge), the mesh's histogram was read at the event and
at the end and counts requests after it, no migrator cycle went without an answer or blind,
and after the arm the node's kubelet runs again under a new PID and the node is Ready.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .e2e_support import SCENARIO

pytestmark = pytest.mark.e2e
WORKLOAD = "aggregator_sequential"


@dataclass
class Arm:
    session: Any
    standin_url: str


@pytest.fixture
def failure_session(local_cluster: Any, admin: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Arm]:
    """A demo session on the e2e cluster (its own ports, REACH_HOME in tmp): Prometheus, the world's port, a stand-in."""
    from flows.local import processes
    from flows.loop import app
    from flows.loop.demo import Session, start_prometheus
    from flows.loop.settings import EXPORTER, PROMETHEUS, DemoSettings
    from flows.loop.standin import GreedyStandIn, greedy_advisor
    from migrator.telemetry import MigratorTelemetry

    monkeypatch.setenv("REACH_HOME", str(tmp_path / "reach-home"))
    settings = DemoSettings(
        scenario=str(SCENARIO), workload=WORKLOAD, experiment="node-failure", event_at_s=6.0, duration_s=24.0,
        interval_s=1.0, start="scheduler", cluster_state=local_cluster.state_dir, out=tmp_path / "out",
        prometheus_port=processes.free_port(), exporter_port=processes.free_port(),
        migrator_metrics_port=processes.free_port(), prefect=False, keep_migrating=False,
    )  # fmt: skip
    prometheus = start_prometheus(settings)
    telemetry = MigratorTelemetry()
    server = telemetry.serve(settings.migrator_metrics_port)
    session = Session(settings, local_cluster.kubeconfig_path, admin, SCENARIO, telemetry, server, prometheus.url)
    standin = GreedyStandIn(
        greedy_advisor(SCENARIO, SCENARIO.parents[1] / "workloads" / f"{WORKLOAD}_call_patterns.json")
    ).start()
    try:
        yield Arm(session, standin.url)
    finally:
        standin.close()
        server.shutdown()
        server.server_close()
        processes.stop(EXPORTER)
        processes.stop(PROMETHEUS)
        app.delete(admin)


def test_the_node_failure_kills_the_kubelet_fails_the_node_in_the_world_and_brings_it_back(
    failure_session: Arm, local_cluster: Any
) -> None:
    from flows.local.cluster.supervisor import pid_alive
    from flows.loop.run import failed_nodes, prepare_run, run_loop
    from flows.loop.stats import window_numbers

    session = failure_session.session
    prepare_run(session, WORKLOAD)
    pids_before = local_cluster.recorded_pids()
    run = run_loop(session, "node-failure e2e", failure_session.standin_url, "greedy-standin")

    nodes = failed_nodes(run)
    assert len(nodes) == 1 and "client" not in nodes[0], run.events
    victim = nodes[0]
    old_pid = pids_before[f"node-{victim}"]
    assert not pid_alive(old_pid), f"the hollow kubelet of {victim} (PID {old_pid}) still runs"
    # the node came back: a new kubelet process, Ready (restore_nodes waited for it)
    assert local_cluster.recorded_pids()[f"node-{victim}"] != old_pid
    assert local_cluster.processes.is_alive(f"node-{victim}")
    assert victim in local_cluster.ready_node_names()
    # the world failed the node at the event (it still runs until the next arm restarts it)
    port = session.settings.exporter_port
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert f'reach_world_node_failed{{node="{victim}"}} 1.0' in metrics
    # measured by the world after the event; every migrator cycle had an answer and saw the latency
    numbers = window_numbers(run.counters["event"], run.counters["end"], session.settings.qos_threshold_ms)
    assert numbers.requests > 0 and numbers.mean_ms is not None
    assert run.cycles, "the migrator ran no cycle"
    assert [c for c in run.cycles if c[1] in ("no-advice", "blind")] == []
