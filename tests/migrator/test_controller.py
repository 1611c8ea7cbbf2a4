"""Controller: one cycle end to end on the in-memory cluster with a scripted policy; modes and records."""

from __future__ import annotations

import csv
from pathlib import Path

from ceenv.schema import ActionRequest
from migrator.controller import Controller
from migrator.guards import Move
from migrator.policy import Advice, NoAdvice, Stop
from migrator.settings import MigratorSettings
from migrator.snapshot import LatencyReading

from .builders import node
from .fake_cluster import FakeClock, FakeCluster


class ScriptedPolicy:
    def __init__(self, *answers: Advice):
        self.answers = list(answers)
        self.requests: list[ActionRequest] = []

    def ask(self, request: ActionRequest) -> Advice:
        self.requests.append(request)
        return self.answers.pop(0) if self.answers else Stop()


def make(tmp_path: Path, *answers: Advice, **settings: object) -> tuple[Controller, FakeCluster, ScriptedPolicy]:
    nodes = {n.name: n for n in (node("cloud-1", "cloud"), node("edge-1", "edge"), node("client-1", "client"))}
    cluster = FakeCluster(nodes)
    cluster.add_deployment("agg", ["cloud-1", "cloud-1"])
    defaults: dict[str, object] = {
        "migration_deadline_s": 5.0, "episode_csv": str(tmp_path / "episode.csv"),
        "distribution_csv": str(tmp_path / "dist.csv"), "pod_cooldown_s": 0.0,
    }  # fmt: skip
    defaults.update(settings)
    policy = ScriptedPolicy(*answers)
    controller = Controller(MigratorSettings(_env_file=None, **defaults), cluster, policy, FakeClock(cluster))  # type: ignore[call-arg]
    return controller, cluster, policy


def first_agg(cluster: FakeCluster) -> str:
    return sorted(cluster.pods)[0]


def test_a_cycle_sends_the_live_state_and_migrates_the_advised_pod(tmp_path: Path) -> None:
    controller, cluster, policy = make(tmp_path)
    pod = first_agg(cluster)
    policy.answers = [Move(pod, "edge-1")]
    [outcome] = controller.run_cycle()
    assert outcome.kind == "migrated", outcome.detail
    assert set(policy.requests[0].cluster_state.nodes) == {"cloud-1", "edge-1", "client-1"}
    assert policy.requests[0].pod_deployable[pod] == ["edge-1"]
    assert (pod, "Migrated") in cluster.events
    assert [r["event"] for r in controller.journal.records] == ["migrating", "migrated"]


def test_no_advice_means_no_action_and_a_logged_reason(tmp_path: Path) -> None:
    controller, cluster, _ = make(tmp_path, NoAdvice("cannot reach http://127.0.0.1:9: refused", temporary=True))
    before = dict(cluster.pods)
    [outcome] = controller.run_cycle()
    assert outcome.kind == "no-advice" and cluster.pods == before
    assert controller.journal.records[-1]["reason"] == "cannot reach http://127.0.0.1:9: refused"


def test_dry_run_changes_nothing_but_records_the_would_be_move(tmp_path: Path) -> None:
    controller, cluster, policy = make(tmp_path, dry_run=True)
    pod = first_agg(cluster)
    policy.answers = [Move(pod, "edge-1")]
    before = dict(cluster.pods)
    [outcome] = controller.run_cycle()
    assert outcome.kind == "refused" and outcome.verdict and outcome.verdict.reason.value == "dry-run"  # type: ignore[union-attr]
    assert cluster.pods == before and (pod, "MigrationRefused") in cluster.events


def test_an_unknown_pod_is_refused_without_an_event(tmp_path: Path) -> None:
    controller, cluster, _ = make(tmp_path, Move("ghost-pod", "edge-1"))
    [outcome] = controller.run_cycle()
    assert outcome.kind == "refused" and outcome.blind and cluster.events == []
    assert [(r["event"], r["reason"]) for r in controller.journal.records] == [
        ("refused", "unknown-pod"), ("blind", "policy-answer-unchecked"),
    ]  # fmt: skip


def test_episode_mode_stops_on_stop_and_writes_a_csv_row_per_step(tmp_path: Path) -> None:
    controller, cluster, policy = make(tmp_path, episode_max_steps=5)
    policy.answers = [Move(first_agg(cluster), "edge-1"), Stop()]
    latencies = iter([120.0, 110.0, 110.0, 110.0])
    controller.latency = lambda: LatencyReading(next(latencies))
    outcomes = controller.run_episode()
    assert [o.kind for o in outcomes] == ["migrated", "stop"]
    rows = list(csv.DictReader((tmp_path / "episode.csv").open()))
    assert [r["outcome"] for r in rows] == ["migrated", "stop"]
    assert rows[0]["latency_before_ms"] == "120.000" and rows[0]["latency_after_ms"] == "110.000"


def test_monitoring_acts_only_above_the_qos_threshold(tmp_path: Path) -> None:
    controller, _, policy = make(tmp_path, qos_threshold_ms=250.0)
    controller.latency = lambda: LatencyReading(120.0)
    assert controller.monitoring_step()[0].detail == "QoS met" and policy.requests == []
    controller.latency = lambda: LatencyReading(300.0)
    assert controller.monitoring_step()[0].kind == "stop" and len(policy.requests) == 1


def test_pod_distribution_counts_pods_per_node_per_service(tmp_path: Path) -> None:
    controller, _, _ = make(tmp_path)
    assert controller.record_distribution() == {"agg": {"cloud-1": 2}}
    rows = list(csv.DictReader((tmp_path / "dist.csv").open()))
    assert rows[0]["service"] == "agg" and rows[0]["pods"] == "2"


def test_a_failed_nodes_pods_are_all_evacuated_in_one_cycle_but_a_regular_move_ends_it(tmp_path: Path) -> None:
    from dataclasses import replace

    controller, cluster, policy = make(tmp_path, max_migrations_per_cycle=1)
    cluster.add_deployment("db", ["edge-1"])
    cluster.nodes["cloud-1"] = replace(cluster.nodes["cloud-1"], ready=False)
    on_failed = sorted(p for p in cluster.pods if cluster.pods[p].node_name == "cloud-1")
    db = next(p for p in cluster.pods if cluster.pods[p].node_name == "edge-1")
    policy.answers = [Move(on_failed[0], "edge-1"), Move(on_failed[1], "edge-1"), Move(db, "cloud-1"), Stop()]
    kinds = [o.kind for o in controller.run_cycle()]
    assert kinds == ["migrated", "migrated", "refused"]  # a move onto the NotReady node is refused
    assert not [p for p in cluster.pods.values() if p.node_name == "cloud-1" and not p.terminating]
    cluster.nodes["cloud-1"] = replace(cluster.nodes["cloud-1"], ready=True)
    policy.answers = [Move(db, "cloud-1"), Move(on_failed[0], "cloud-1")]
    assert [o.kind for o in controller.run_cycle()] == ["migrated"]  # one regular move per cycle, as set
    assert len(policy.answers) == 1


def test_a_failed_node_with_pods_is_acted_on_whatever_the_latency(tmp_path: Path) -> None:
    from dataclasses import replace

    controller, cluster, policy = make(tmp_path, qos_threshold_ms=250.0)
    controller.latency = lambda: LatencyReading(120.0)
    cluster.nodes["cloud-1"] = replace(cluster.nodes["cloud-1"], ready=False)
    policy.answers = [Move(first_agg(cluster), "edge-1")]
    outcome, after = controller.monitoring_step()  # an evacuation leaves the cycle open: the policy is asked again
    assert outcome.kind == "migrated" and outcome.result is not None and outcome.result.forced_removal
    assert after.kind == "stop" and len(policy.requests) == 2
    request = policy.requests[0]
    assert request.cluster_state.nodes["cloud-1"].available is False
    controller.latency = lambda: LatencyReading(None, "latency-unknown", "Prometheus down")
    policy.answers = [Move(sorted(p for p in cluster.pods if cluster.pods[p].node_name == "cloud-1")[0], "edge-1")]
    assert controller.monitoring_step()[0].kind == "migrated"
    assert controller.failed_nodes_with_pods() == []
    assert controller.monitoring_step()[0].kind == "blind"


def _failed_node_and_a_healthy_pod(tmp_path: Path) -> tuple[Controller, FakeCluster, ScriptedPolicy, str, str]:
    """cloud-1 NotReady with agg's pods on it; db runs on the healthy edge-1, and edge-2 has room."""
    from dataclasses import replace

    controller, cluster, policy = make(tmp_path, qos_threshold_ms=250.0)
    cluster.nodes["edge-2"] = node("edge-2", "edge")
    cluster.add_deployment("db", ["edge-1"])
    cluster.nodes["cloud-1"] = replace(cluster.nodes["cloud-1"], ready=False)
    stranded = sorted(p for p in cluster.pods if cluster.pods[p].node_name == "cloud-1")[0]
    healthy = next(p for p in cluster.pods if cluster.pods[p].node_name == "edge-1")
    return controller, cluster, policy, stranded, healthy


def test_while_the_latency_is_unknown_a_failed_node_s_cycle_makes_evacuations_only(tmp_path: Path) -> None:
    """Evacuating does not need the latency; any other move does: it is a blind cycle, nothing moves."""
    controller, cluster, policy, stranded, healthy = _failed_node_and_a_healthy_pod(tmp_path)
    controller.latency = lambda: LatencyReading(None, "prometheus-unreachable", "Prometheus down")
    policy.answers = [Move(stranded, "edge-2"), Move(healthy, "edge-2")]
    evacuated, regular = controller.monitoring_step()
    assert evacuated.kind == "migrated" and evacuated.result is not None and evacuated.result.forced_removal
    assert regular.kind == "blind" and "is not an evacuation" in regular.detail
    assert cluster.pods[healthy].node_name == "edge-1"
    assert controller.journal.records[-1]["reason"] == "prometheus-unreachable"


def test_while_the_qos_holds_a_failed_node_s_cycle_skips_regular_moves(tmp_path: Path) -> None:
    controller, cluster, policy, _, healthy = _failed_node_and_a_healthy_pod(tmp_path)
    controller.latency = lambda: LatencyReading(120.0)
    policy.answers = [Move(healthy, "edge-2")]
    [outcome] = controller.monitoring_step()
    assert outcome.kind == "skipped" and not outcome.blind and "only evacuations while the QoS holds" in outcome.detail
    assert cluster.pods[healthy].node_name == "edge-1"


def test_a_cluster_that_cannot_be_read_is_blind_even_while_the_qos_holds(tmp_path: Path) -> None:
    """Before, a failed read counted as 'no failed node', and the QoS check then said all was well."""
    from migrator.snapshot import ClusterAccessDenied

    controller, cluster, _ = make(tmp_path)
    controller.latency = lambda: LatencyReading(100.0)

    def denied() -> None:
        raise ClusterAccessDenied("the API server refused to list nodes (cluster-wide) (403 Forbidden): grant it")

    cluster.snapshot = denied  # type: ignore[assignment, method-assign]
    [outcome] = controller.monitoring_step()
    assert outcome.kind == "blind" and controller.journal.records[-1]["reason"] == "cluster-access-denied"
    assert "qos-met" not in [r["event"] for r in controller.journal.records]


def test_a_write_the_cluster_refuses_is_rolled_back_and_makes_the_cycle_blind_with_its_reason(tmp_path: Path) -> None:
    """A 403 on a cordon (RBAC, or a managed cluster that forbids node patches) is not a slow replacement."""
    from migrator.snapshot import ClusterAccessDenied

    controller, cluster, policy = make(tmp_path)
    policy.answers = [Move(first_agg(cluster), "edge-1")]

    def refused(node_name: str, migration_id: str) -> None:
        raise ClusterAccessDenied(f"the API server refused to patch nodes (cluster-wide) (403 Forbidden): {node_name}")

    cluster.cordon = refused  # type: ignore[method-assign]
    [outcome] = controller.run_cycle()
    assert outcome.kind == "rolled-back" and outcome.blind and outcome.result is not None
    assert outcome.result.access_denied
    assert [r["event"] for r in controller.journal.records][-2:] == ["rolled-back", "blind"]
    assert controller.journal.records[-1]["reason"] == "cluster-access-denied"


def test_a_cordon_taint_found_between_cycles_is_lifted_before_anything_else_while_the_qos_holds_too(
    tmp_path: Path,
) -> None:
    """No migration is in flight between cycles, so a cordon of ours then is a leftover: Kubernetes 1.20's
    node lifecycle controller may write a lifted taint back when the node's readiness changes."""
    from migrator.snapshot import LatencyReading

    controller, cluster, policy = make(tmp_path, qos_threshold_ms=250.0)
    controller.latency = lambda: LatencyReading(100.0)
    cluster.cordon(["edge-1"], "written-back")
    controller.monitoring_step()
    events = [r["event"] for r in controller.journal.records]
    assert events == ["cleanup", "qos-met"], events
    assert not cluster.cordoned_nodes() and not policy.requests


def test_a_dry_run_leaves_a_cordon_taint_it_finds_a_live_migrator_may_be_mid_way(tmp_path: Path) -> None:
    controller, cluster, _ = make(tmp_path, dry_run=True)
    cluster.cordon(["edge-1"], "live-one")
    controller.run_cycle()
    assert cluster.cordoned_nodes() == ["edge-1"]
