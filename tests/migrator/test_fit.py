"""The scheduler's filters on plain snapshots: each constraint removes exactly the nodes kube-scheduler would refuse.

Every test checks both sides: ``pod_deployable`` leaves the node out, and a policy move to it is
refused by the guard with the constraint's own ``Refusal`` reason.
"""

from __future__ import annotations

from dataclasses import replace

from migrator.fit import Unfit, unfit
from migrator.guards import GuardLimits, MigrationLedger, Move, Refusal, check_move
from migrator.observe import FitRules, build_request, pod_deployable
from migrator.snapshot import (
    ClusterSnapshot,
    HostPort,
    LabelSelector,
    NodeSelectorTerm,
    PodAffinityTerm,
    SelectorRequirement,
    SpreadConstraint,
)

from .builders import cluster, node, pod

RULES = FitRules()


def edge(name: str, zone: str, **kw: object):  # type: ignore[no-untyped-def]
    n = node(name, "edge", **kw)
    return replace(n, labels={**n.labels, "kubernetes.io/hostname": name, "zone": zone})


NODES = (edge("edge-1", "a"), edge("edge-2", "a"), edge("edge-3", "b"), edge("edge-4", "c"))


def refusal(snap: ClusterSnapshot, move: Move) -> Refusal | None:
    request = build_request(snap, RULES)
    return check_move(move, snap, request, MigrationLedger(), GuardLimits(), RULES, 0.0).reason


def test_required_node_affinity_expressions_and_fields() -> None:
    terms = (
        NodeSelectorTerm(match_expressions=(SelectorRequirement("zone", "In", ("b",)),)),
        NodeSelectorTerm(match_fields=(SelectorRequirement("metadata.name", "In", ("edge-4",)),)),
    )
    snap = cluster(pod("a", "agg", "edge-1", required_node_affinity=terms), nodes=NODES)
    assert pod_deployable(snap, RULES)["a"] == ["edge-3", "edge-4"]
    assert refusal(snap, Move("a", "edge-2")) is Refusal.TARGET_NODE_AFFINITY
    assert refusal(snap, Move("a", "edge-3")) is None


def test_node_affinity_gt_lt_and_empty_terms() -> None:
    numbered = tuple(replace(n, labels={**n.labels, "rank": str(i)}) for i, n in enumerate(NODES))
    gt = (NodeSelectorTerm(match_expressions=(SelectorRequirement("rank", "Gt", ("1",)),)),)
    snap = cluster(pod("a", "agg", "edge-1", required_node_affinity=gt), nodes=numbered)
    assert pod_deployable(snap, RULES)["a"] == ["edge-3", "edge-4"]
    empty = cluster(pod("a", "agg", "edge-1", required_node_affinity=(NodeSelectorTerm(),)), nodes=NODES)
    assert pod_deployable(empty, RULES)["a"] == []


def anti(key: str) -> tuple[PodAffinityTerm, ...]:
    return (PodAffinityTerm(LabelSelector({"app": "db"}), key),)


def test_pod_anti_affinity_on_hostname() -> None:
    snap = cluster(
        pod("db-1", "db", "edge-1", required_anti_affinity=anti("kubernetes.io/hostname")),
        pod("db-2", "db", "edge-3", required_anti_affinity=anti("kubernetes.io/hostname")),
        nodes=NODES,
    )
    assert pod_deployable(snap, RULES)["db-1"] == ["edge-2", "edge-4"]
    assert refusal(snap, Move("db-1", "edge-3")) is Refusal.TARGET_ANTI_AFFINITY


def test_pod_anti_affinity_on_a_zone_label_counts_the_original_and_works_both_ways() -> None:
    snap = cluster(
        pod("db-1", "db", "edge-1", required_anti_affinity=anti("zone")),
        pod("web", "web", "edge-4"),
        nodes=NODES,
    )
    # make-before-break: the copy and the original would share zone a while both run
    assert pod_deployable(snap, RULES)["db-1"] == ["edge-3", "edge-4"]
    # web has no anti-affinity, but db-1's term keeps db pods off zone a: web may go anywhere
    assert pod_deployable(snap, RULES)["web"] == ["edge-1", "edge-2", "edge-3"]
    guarded = cluster(
        pod("db-1", "db", "edge-1"), pod("web", "web", "edge-4", required_anti_affinity=anti("zone")), nodes=NODES
    )
    # the existing web pod's anti-affinity excludes db pods from zone c (the symmetric rule)
    assert pod_deployable(guarded, RULES)["db-1"] == ["edge-2", "edge-3"]
    assert unfit(guarded.app_pod("db-1"), NODES[3], guarded) is not None  # type: ignore[arg-type]


def spread(skew: int, key: str = "zone", when: str = "DoNotSchedule") -> tuple[SpreadConstraint, ...]:
    return (SpreadConstraint(skew, key, when, LabelSelector({"app": "agg"})),)


def test_topology_spread_do_not_schedule_max_skew() -> None:
    c = spread(1)
    snap = cluster(
        pod("agg-1", "agg", "edge-1", topology_spread=c),
        pod("agg-2", "agg", "edge-3", topology_spread=c),
        pod("agg-3", "agg", "edge-4", topology_spread=c),
        nodes=NODES,
    )
    # counts a=1 b=1 c=1: a copy anywhere makes that zone 2 against a minimum of 1, skew 1 — allowed
    assert pod_deployable(snap, RULES)["agg-1"] == ["edge-2", "edge-3", "edge-4"]
    crowded = cluster(*snap.app_pods, pod("agg-4", "agg", "edge-3", topology_spread=c), nodes=NODES)
    # counts a=1 b=2 c=1: a copy in b makes 3 - 1 = 2 > 1
    assert "edge-3" not in pod_deployable(crowded, RULES)["agg-1"]
    assert refusal(crowded, Move("agg-1", "edge-3")) is Refusal.TARGET_TOPOLOGY_SPREAD


def test_schedule_anyway_does_not_bind_and_a_node_without_the_key_is_unfit() -> None:
    keyless = (*NODES, node("edge-5", "edge"))
    soft = cluster(pod("agg-1", "agg", "edge-1", topology_spread=spread(1, when="ScheduleAnyway")), nodes=keyless)
    assert "edge-5" in pod_deployable(soft, RULES)["agg-1"]
    hard = cluster(pod("agg-1", "agg", "edge-1", topology_spread=spread(1)), nodes=keyless)
    assert "edge-5" not in pod_deployable(hard, RULES)["agg-1"]


def test_host_port_conflicts() -> None:
    port = (HostPort(8080),)
    snap = cluster(
        pod("a", "agg", "edge-1", host_ports=port),
        pod("b", "web", "edge-2", host_ports=(HostPort(8080, host_ip="10.0.0.2"),)),
        pod("c", "cache", "edge-3", host_ports=(HostPort(8080, protocol="UDP"),)),
        nodes=NODES,
    )
    assert pod_deployable(snap, RULES)["a"] == ["edge-3", "edge-4"]
    assert refusal(snap, Move("a", "edge-2")) is Refusal.TARGET_HOST_PORT


def test_the_nodes_pod_limit() -> None:
    small = tuple(replace(n, allocatable_pods=2) for n in NODES)
    snap = cluster(pod("a", "agg", "edge-1"), pod("b", "web", "edge-2"), pod("c", "web", "edge-2"), nodes=small)
    assert pod_deployable(snap, RULES)["a"] == ["edge-3", "edge-4"]
    assert refusal(snap, Move("a", "edge-2")) is Refusal.TARGET_POD_LIMIT
    finished = cluster(pod("a", "agg", "edge-1"), pod("b", "web", "edge-2", phase="Succeeded"), nodes=small)
    assert "edge-2" in pod_deployable(finished, RULES)["a"]


def test_terminating_pods_are_neither_services_nor_deployable() -> None:
    snap = cluster(pod("a", "agg", "edge-1"), pod("b", "agg", "edge-2", terminating=True), nodes=NODES)
    request = build_request(snap, RULES)
    assert [p.pod_name for p in request.cluster_state.services["agg"].pods] == ["a"]
    assert set(request.pod_deployable) == {"a"}


def test_every_unfit_reason_is_a_refusal_reason() -> None:
    assert {u.value for u in Unfit} <= {r.value for r in Refusal}
