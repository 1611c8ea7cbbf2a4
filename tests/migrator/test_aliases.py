"""Node aliases: a cluster whose node names differ from the scenario's talks to the policy in the scenario's names."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from migrator.aliases import AliasError, from_policy_name, node_aliases, to_policy_names
from migrator.controller import Controller
from migrator.guards import Move
from migrator.observe import FitRules, build_request
from migrator.settings import MigratorSettings
from migrator.snapshot import ClusterSnapshot

from .builders import node, pod
from .fake_cluster import FakeClock, FakeCluster
from .test_controller import ScriptedPolicy

LABEL = "reach.io/node-name"


def labelled(name: str, layer: str, alias: str | None) -> object:
    n = node(name, layer)
    return replace(n, labels={**n.labels, LABEL: alias}) if alias else n


def test_each_node_is_named_by_its_label_and_an_unlabelled_node_keeps_its_name() -> None:
    snapshot = ClusterSnapshot(
        nodes=(labelled("ip-10-0-0-1", "cloud", "tb-cloud-vm-8-1"), labelled("edge-x", "edge", None)),  # type: ignore[arg-type]
        pods=(),
        app_pods=(),
    )
    assert node_aliases(snapshot, LABEL) == {"ip-10-0-0-1": "tb-cloud-vm-8-1", "edge-x": "edge-x"}


def test_two_nodes_with_one_alias_are_an_error_that_says_how_to_relabel() -> None:
    snapshot = ClusterSnapshot(
        nodes=(labelled("a", "edge", "tb-edge-vm-4-1"), labelled("b", "edge", "tb-edge-vm-4-1")),  # type: ignore[arg-type]
        pods=(),
        app_pods=(),
    )
    with pytest.raises(AliasError, match=re.escape("kubectl label node b reach.io/node-name=<name> --overwrite")):
        node_aliases(snapshot, LABEL)


def test_the_request_speaks_the_scenarios_names_everywhere_and_the_answer_maps_back() -> None:
    nodes = (labelled("ip-1", "cloud", "cloud-vm-1"), labelled("ip-2", "edge", "edge-vm-1"))
    agg = pod("agg-1", "aggregator", "ip-1")
    snapshot = ClusterSnapshot(nodes=nodes, pods=(agg,), app_pods=(agg,))  # type: ignore[arg-type]
    aliases = node_aliases(snapshot, LABEL)
    request = to_policy_names(build_request(snapshot, FitRules()), aliases)
    assert set(request.cluster_state.nodes) == {"cloud-vm-1", "edge-vm-1"}
    assert {n.node_name for n in request.cluster_state.nodes.values()} == {"cloud-vm-1", "edge-vm-1"}
    assert request.cluster_state.services["aggregator"].pods[0].node_name == "cloud-vm-1"
    assert request.pod_deployable == {"agg-1": ["edge-vm-1"]}
    assert from_policy_name("edge-vm-1", aliases) == "ip-2"
    assert from_policy_name("nowhere", aliases) is None
    assert from_policy_name("ip-2", aliases) is None, "a node's own name is not a name the policy was sent"


def test_measured_conditions_are_sent_in_the_scenarios_names_too() -> None:
    from ceenv.schema import MeasuredConditions

    nodes = (labelled("ip-1", "cloud", "cloud-vm-1"), labelled("ip-2", "edge", "edge-vm-1"))
    agg = pod("agg-1", "aggregator", "ip-1")
    snapshot = ClusterSnapshot(nodes=nodes, pods=(agg,), app_pods=(agg,))  # type: ignore[arg-type]
    measured = MeasuredConditions(node_delay_ms={"ip-1": {"ip-2": 70.0}}, node_utilization={"ip-2": 0.4})
    request = to_policy_names(build_request(snapshot, FitRules(), measured), node_aliases(snapshot, LABEL))
    assert request.measured is not None
    assert request.measured.node_delay_ms == {"cloud-vm-1": {"edge-vm-1": 70.0}}
    assert request.measured.node_utilization == {"edge-vm-1": 0.4}


def make(tmp_path: Path, label: str | None, aliases: dict[str, str]) -> tuple[Controller, FakeCluster, ScriptedPolicy]:
    nodes = {}
    for name, layer in (("ip-1", "cloud"), ("ip-2", "edge"), ("ip-3", "client")):
        n = node(name, layer)
        nodes[name] = replace(n, labels={**n.labels, LABEL: aliases[name]}) if name in aliases else n
    cluster = FakeCluster(nodes)
    cluster.add_deployment("agg", ["ip-1", "ip-1"])
    settings = MigratorSettings(_env_file=None, node_name_label=label, migration_deadline_s=5.0, pod_cooldown_s=0.0)
    policy = ScriptedPolicy()
    return Controller(settings, cluster, policy, FakeClock(cluster)), cluster, policy


def test_the_controller_asks_in_aliases_and_migrates_to_the_kubernetes_node(tmp_path: Path) -> None:
    controller, cluster, policy = make(tmp_path, LABEL, {"ip-1": "cloud-1", "ip-2": "edge-1", "ip-3": "client-1"})
    pod_name = sorted(cluster.pods)[0]
    policy.answers = [Move(pod_name, "edge-1")]
    [outcome] = controller.run_cycle()
    assert outcome.kind == "migrated", outcome.detail
    assert set(policy.requests[0].cluster_state.nodes) == {"cloud-1", "edge-1", "client-1"}
    moved = controller.journal.records[-1]
    assert moved["event"] == "migrated" and moved["target"] == "ip-2"  # records keep Kubernetes' names


def test_without_the_setting_the_kubernetes_names_are_sent(tmp_path: Path) -> None:
    controller, _, policy = make(tmp_path, None, {"ip-1": "cloud-1"})
    controller.run_cycle()
    assert set(policy.requests[0].cluster_state.nodes) == {"ip-1", "ip-2", "ip-3"}


def test_a_duplicate_alias_means_a_blind_cycle_with_the_reason(tmp_path: Path) -> None:
    controller, cluster, policy = make(tmp_path, LABEL, {"ip-1": "same", "ip-2": "same"})
    before = dict(cluster.pods)
    [outcome] = controller.run_cycle()
    assert outcome.kind == "blind" and cluster.pods == before and not policy.requests
    record = controller.journal.records[-1]
    assert record["event"] == "blind" and record["reason"] == "node-alias-conflict"
    assert "both map to 'same'" in str(record["detail"])


def test_an_answer_naming_a_kubernetes_node_instead_of_its_alias_moves_nothing_and_says_why(tmp_path: Path) -> None:
    """The policy was sent ``edge-1``; ``ip-2`` (that node's own name) is a name it was never given."""
    controller, cluster, policy = make(tmp_path, LABEL, {"ip-1": "cloud-1", "ip-2": "edge-1", "ip-3": "client-1"})
    before = dict(cluster.pods)
    policy.answers = [Move(sorted(cluster.pods)[0], "ip-2")]
    [outcome] = controller.run_cycle()
    assert outcome.kind == "blind" and cluster.pods == before
    record = controller.journal.records[-1]
    assert record["reason"] == "policy-answer-malformed"
    assert "'ip-2', which is none of the names" in str(record["detail"])
