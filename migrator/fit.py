"""The scheduler's harder filters, as pure functions: node affinity, pod anti-affinity, topology spread, host ports, pod limit.

``migrator.observe`` offers a node in ``pod_deployable`` only when ``unfit`` finds nothing, and
``migrator.guards`` refuses a move with the ``Unfit`` reason it returns, so that the migrator never
proposes or starts a move that kube-scheduler (1.20 and later) would refuse. The copy of a pod is
judged **while the original still runs** (make-before-break: the replacement is scheduled before
the old pod is deleted), so the original counts in anti-affinity and spread, exactly as the
scheduler counts it. Pods in a terminal phase count nowhere; terminating pods count, as in 1.20.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from migrator.snapshot import (
    ClusterSnapshot,
    HostPort,
    NodeInfo,
    NodeSelectorTerm,
    PodAffinityTerm,
    PodInfo,
    SelectorRequirement,
    SpreadConstraint,
)

_ALL_ADDRESSES = ("", "0.0.0.0", "::")


class Unfit(StrEnum):
    """Why kube-scheduler would not place a copy of the pod on the node (also ``Refusal`` values)."""

    NODE_AFFINITY = "target-node-affinity"
    ANTI_AFFINITY = "target-anti-affinity"
    TOPOLOGY_SPREAD = "target-topology-spread"
    HOST_PORT = "target-host-port"
    POD_LIMIT = "target-pod-limit"


def _node_requirement_holds(req: SelectorRequirement, value: str | None) -> bool:
    """Node selector operators (Gt/Lt compare integers, as the scheduler does)."""
    if req.operator == "In":
        return value is not None and value in req.values
    if req.operator == "NotIn":
        return value is None or value not in req.values
    if req.operator == "Exists":
        return value is not None
    if req.operator == "DoesNotExist":
        return value is None
    if req.operator in ("Gt", "Lt") and value is not None and len(req.values) == 1:
        try:
            left, right = int(value), int(req.values[0])
        except ValueError:
            return False
        return left > right if req.operator == "Gt" else left < right
    return False


def term_matches(term: NodeSelectorTerm, node: NodeInfo) -> bool:
    """An empty term matches no node (Kubernetes' rule); expressions read labels, fields read metadata.name."""
    if not term.match_expressions and not term.match_fields:
        return False
    fields = {"metadata.name": node.name}
    return all(_node_requirement_holds(r, node.labels.get(r.key)) for r in term.match_expressions) and all(
        _node_requirement_holds(r, fields.get(r.key)) for r in term.match_fields
    )


def node_affinity_ok(pod: PodInfo, node: NodeInfo) -> bool:
    """requiredDuringSchedulingIgnoredDuringExecution: one of the terms must match (none given: any node)."""
    return not pod.required_node_affinity or any(term_matches(t, node) for t in pod.required_node_affinity)


@dataclass(frozen=True)
class FitIndex:
    """What every filter reads from one snapshot, computed once (``pod_deployable`` asks pods × nodes times)."""

    nodes: Mapping[str, NodeInfo]
    counted: tuple[PodInfo, ...]
    pods_per_node: Mapping[str, int]
    anti_affinity_holders: tuple[PodInfo, ...]

    @classmethod
    def of(cls, snapshot: ClusterSnapshot) -> FitIndex:
        counted = tuple(p for p in snapshot.pods if p.node_name and p.holds_resources)
        per_node: dict[str, int] = {}
        for p in counted:
            per_node[p.node_name] = per_node.get(p.node_name, 0) + 1
        holders = tuple(p for p in counted if p.required_anti_affinity)
        return cls({n.name: n for n in snapshot.nodes}, counted, per_node, holders)


def _term_selects(term: PodAffinityTerm, owner: PodInfo, other: PodInfo) -> bool:
    namespaces = term.namespaces or (owner.namespace,)
    return other.namespace in namespaces and term.selector.matches(other.labels)


def _same_domain(nodes: Mapping[str, NodeInfo], a: str, b: NodeInfo, key: str) -> bool:
    node_a = nodes.get(a)
    return node_a is not None and key in b.labels and node_a.labels.get(key) == b.labels[key]


def anti_affinity_conflict(pod: PodInfo, node: NodeInfo, index: FitIndex) -> str:
    """The pod that forbids the node (either side's required anti-affinity), or ''."""
    nodes = index.nodes
    for term in pod.required_anti_affinity:
        for other in index.counted:
            if _term_selects(term, pod, other) and _same_domain(nodes, other.node_name, node, term.topology_key):
                return f"pod {other.name} on {other.node_name} matches {pod.name}'s anti-affinity ({term.topology_key})"
    for other in index.anti_affinity_holders:
        for term in other.required_anti_affinity:
            if _term_selects(term, other, pod) and _same_domain(nodes, other.node_name, node, term.topology_key):
                return f"pod {other.name}'s anti-affinity ({term.topology_key}) excludes {pod.name}"
    return ""


def _eligible_for_spread(pod: PodInfo, node: NodeInfo, keys: tuple[str, ...]) -> bool:
    """Domains count on nodes that pass the pod's node selector and affinity and carry every key (1.20)."""
    selector_ok = all(node.labels.get(k) == v for k, v in pod.node_selector.items())
    return selector_ok and node_affinity_ok(pod, node) and all(k in node.labels for k in keys)


def spread_violation(pod: PodInfo, node: NodeInfo, index: FitIndex) -> str:
    """The first DoNotSchedule constraint a copy of the pod on ``node`` would break, or ''."""
    hard = [c for c in pod.topology_spread if c.when_unsatisfiable == "DoNotSchedule"]
    if not hard:
        return ""
    keys = tuple(c.topology_key for c in hard)
    eligible = {n.name: n for n in index.nodes.values() if _eligible_for_spread(pod, n, keys)}
    for constraint in hard:
        if constraint.topology_key not in node.labels:
            return f"node {node.name} has no label {constraint.topology_key!r} (spread constraint)"
        skew = _skew_after(pod, node, constraint, eligible, index)
        if skew > constraint.max_skew:
            return f"skew on {constraint.topology_key} would be {skew} > maxSkew {constraint.max_skew}"
    return ""


def _skew_after(
    pod: PodInfo, node: NodeInfo, c: SpreadConstraint, eligible: Mapping[str, NodeInfo], index: FitIndex
) -> int:
    counts = {n.labels[c.topology_key]: 0 for n in eligible.values()}
    for other in index.counted:
        if other.node_name in eligible and other.namespace == pod.namespace and c.selector.matches(other.labels):
            counts[eligible[other.node_name].labels[c.topology_key]] += 1
    domain = node.labels[c.topology_key]
    counts.setdefault(domain, 0)
    self_match = 1 if c.selector.matches(pod.labels) else 0
    return counts[domain] + self_match - min(counts.values())


def _ports_clash(a: HostPort, b: HostPort) -> bool:
    same_address = a.host_ip in _ALL_ADDRESSES or b.host_ip in _ALL_ADDRESSES or a.host_ip == b.host_ip
    return a.port == b.port and a.protocol == b.protocol and same_address


def host_port_conflict(pod: PodInfo, node: NodeInfo, index: FitIndex) -> str:
    for other in index.counted:
        if other.node_name != node.name:
            continue
        for mine in pod.host_ports:
            if any(_ports_clash(mine, theirs) for theirs in other.host_ports):
                return f"host port {mine.port}/{mine.protocol} is taken on {node.name} by pod {other.name}"
    return ""


def unfit(
    pod: PodInfo, node: NodeInfo, snapshot: ClusterSnapshot, index: FitIndex | None = None
) -> tuple[Unfit, str] | None:
    """The first of these scheduler filters that refuses a copy of ``pod`` on ``node``, with the detail;
    ``index`` is ``FitIndex.of(snapshot)``, passed in when many pairs are judged on one snapshot."""
    index = index or FitIndex.of(snapshot)
    if not node_affinity_ok(pod, node):
        return Unfit.NODE_AFFINITY, f"node {node.name} matches none of {pod.name}'s required node affinity terms"
    if node.allocatable_pods is not None and index.pods_per_node.get(node.name, 0) >= node.allocatable_pods:
        return Unfit.POD_LIMIT, f"node {node.name} already runs its {node.allocatable_pods} allocatable pods"
    if pod.host_ports and (detail := host_port_conflict(pod, node, index)):
        return Unfit.HOST_PORT, detail
    if detail := anti_affinity_conflict(pod, node, index):
        return Unfit.ANTI_AFFINITY, detail
    if detail := spread_violation(pod, node, index):
        return Unfit.TOPOLOGY_SPREAD, detail
    return None
