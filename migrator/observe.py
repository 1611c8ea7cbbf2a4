"""Turn a cluster snapshot into the REACH request (MODEL.md §4): free resources, services, real fit.

Pure functions on :mod:`migrator.snapshot` data, used by the controller every cycle and by the
guards. Free CPU/memory of a node = allocatable − the requests of every pod bound to it that still
holds resources. ``pod_deployable`` lists, for each application pod, the *other* nodes where a copy
of it would be scheduled now: node Ready and not cordoned, taints tolerated, the pod's node
selector satisfied (that is how a service is pinned to a layer), an unpinned service kept off the
client layer (MODEL.md §1), the pod's requests within the node's free capacity, and the
scheduler's other filters of :mod:`migrator.fit` (node affinity, pod anti-affinity, topology spread,
host ports, the node's pod limit). Terminating pods are in neither ``services`` nor ``pod_deployable``.
A node that is not Ready (failed or unreachable) is listed with ``available: false`` and no free
capacity, with its pods, so that the policy service moves them off first (MODEL.md §4) instead of
answering 422.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ceenv.schema import (
    BYTES_PER_GIB,
    ActionRequest,
    ClusterState,
    MeasuredConditions,
    NodeState,
    PodRef,
    ServiceState,
)
from migrator.fit import FitIndex, unfit
from migrator.snapshot import ClusterSnapshot, MeasurementUnavailable, NodeInfo, PodInfo

_SCHEDULING_EFFECTS = ("NoSchedule", "NoExecute")


@dataclass(frozen=True)
class FreeResources:
    cpu_millicores: float
    memory_bytes: float


@dataclass(frozen=True)
class FitRules:
    """Which labels express layers and which layer unpinned services must avoid."""

    layer_label: str = "reach.io/layer"
    client_layer: str = "client"
    service_label: str = "app"


def free_resources(snapshot: ClusterSnapshot) -> dict[str, FreeResources]:
    """Allocatable minus the requests of the pods bound to each node (all namespaces)."""
    used_cpu = {n.name: 0.0 for n in snapshot.nodes}
    used_memory = {n.name: 0.0 for n in snapshot.nodes}
    for pod in snapshot.pods:
        if pod.node_name in used_cpu and pod.holds_resources:
            used_cpu[pod.node_name] += pod.cpu_request_millicores
            used_memory[pod.node_name] += pod.memory_request_bytes
    return {
        n.name: FreeResources(
            max(0.0, n.allocatable_cpu_millicores - used_cpu[n.name]),
            max(0.0, n.allocatable_memory_bytes - used_memory[n.name]),
        )
        for n in snapshot.nodes
    }


def node_accepts_pods(node: NodeInfo) -> bool:
    """A node is a possible target only when it is Ready and not cordoned."""
    return node.ready and not node.unschedulable


def tolerates_taints(pod: PodInfo, node: NodeInfo) -> bool:
    scheduling_taints = [t for t in node.taints if t.effect in _SCHEDULING_EFFECTS]
    return all(any(tol.tolerates(t) for tol in pod.tolerations) for t in scheduling_taints)


def satisfies_layer_rule(pod: PodInfo, node: NodeInfo, rules: FitRules) -> bool:
    """Node selector must match; a pod not pinned to a layer stays off the client layer."""
    if any(node.labels.get(k) != v for k, v in pod.node_selector.items()):
        return False
    pinned = rules.layer_label in pod.node_selector
    return pinned or node.labels.get(rules.layer_label) != rules.client_layer


def has_room(pod: PodInfo, free: FreeResources) -> bool:
    return pod.cpu_request_millicores <= free.cpu_millicores and pod.memory_request_bytes <= free.memory_bytes


def fits(pod: PodInfo, node: NodeInfo, free: FreeResources, rules: FitRules) -> bool:
    """Would a copy of ``pod`` be scheduled on ``node`` now (the node the pod is on excluded)?"""
    return (
        node.name != pod.node_name
        and node_accepts_pods(node)
        and tolerates_taints(pod, node)
        and satisfies_layer_rule(pod, node, rules)
        and has_room(pod, free)
    )


def pod_deployable(snapshot: ClusterSnapshot, rules: FitRules) -> dict[str, list[str]]:
    """Per running pod, the nodes a copy fits on; terminating pods are left out, as in ``services``."""
    free = free_resources(snapshot)
    index = FitIndex.of(snapshot)
    return {
        pod.name: [
            n.name
            for n in snapshot.nodes
            if fits(pod, n, free[n.name], rules) and unfit(pod, n, snapshot, index) is None
        ]
        for pod in snapshot.app_pods
        if pod.node_name and not pod.terminating
    }


def service_of(pod: PodInfo, rules: FitRules) -> str:
    return pod.labels.get(rules.service_label, "")


def group_by_service(pods: tuple[PodInfo, ...], rules: FitRules) -> dict[str, list[PodInfo]]:
    services: dict[str, list[PodInfo]] = {}
    for pod in pods:
        if pod.node_name and service_of(pod, rules) and not pod.terminating:
            services.setdefault(service_of(pod, rules), []).append(pod)
    return services


def node_state(node: NodeInfo, free: FreeResources) -> NodeState:
    """A Ready node with its free resources, or a failed one: ``available: false``, nothing free."""
    if not node.ready:
        return NodeState(node_name=node.name, cpu_availability=0.0, memory_availability=0.0, available=False)
    return NodeState(
        node_name=node.name,
        cpu_availability=free.cpu_millicores,
        memory_availability=free.memory_bytes / BYTES_PER_GIB,
    )


def build_request(
    snapshot: ClusterSnapshot, rules: FitRules, measured: MeasuredConditions | None = None
) -> ActionRequest:
    """The REACH ``/get_action`` request for the live placement; a node that is not Ready is listed
    with ``available: false`` when an application pod is bound to it, and left out otherwise.

    ``measured`` (from Prometheus, :meth:`migrator.metrics.PrometheusMetrics.measured_conditions`)
    becomes the optional ``measured`` block, restricted to the nodes the request lists; a block of it
    that matches none of them raises :class:`MeasurementUnavailable`.
    """
    free = free_resources(snapshot)
    hosting = {p.node_name for p in snapshot.app_pods if p.node_name and not p.terminating}
    nodes = {n.name: node_state(n, free[n.name]) for n in snapshot.nodes if n.ready or n.name in hosting}
    services = {
        name: ServiceState(service_name=name, pods=[PodRef(pod_name=p.name, node_name=p.node_name) for p in pods])
        for name, pods in group_by_service(snapshot.app_pods, rules).items()
    }
    return ActionRequest(
        cluster_state=ClusterState(nodes=nodes, services=services),
        pod_deployable=pod_deployable(snapshot, rules),
        measured=None if measured is None else _on_nodes(measured, set(nodes)),
    )


def _on_nodes(measured: MeasuredConditions, nodes: set[str]) -> MeasuredConditions | None:
    """The measurements between listed nodes only (a node left out is unavailable to the policy anyway).

    A block that carried values and keeps none (its node labels match no listed node: other names, IPs,
    a relabelled cluster) raises :class:`MeasurementUnavailable` naming the query and the labels (the
    first :data:`UNMATCHED_SHOWN`): the migrator was told to decide on it and cannot, so it must not
    quietly decide on the nominal values instead.
    """
    delays = {
        a: {b: ms for b, ms in row.items() if b in nodes} for a, row in measured.node_delay_ms.items() if a in nodes
    }
    delays = {a: row for a, row in delays.items() if row}
    utilization = {n: u for n, u in measured.node_utilization.items() if n in nodes}
    bandwidth = {n: b for n, b in measured.bandwidth_mbps.items() if n in nodes}
    delay_labels = {*measured.node_delay_ms, *(b for row in measured.node_delay_ms.values() for b in row)}
    _require_matched("measured_delay_query", bool(measured.node_delay_ms), bool(delays), delay_labels, nodes)
    utilization_labels = set(measured.node_utilization)
    _require_matched("node_utilization_query", bool(utilization_labels), bool(utilization), utilization_labels, nodes)
    _require_matched(
        "bandwidth_mbps", bool(measured.bandwidth_mbps), bool(bandwidth), set(measured.bandwidth_mbps), nodes
    )
    if not (delays or utilization or bandwidth):
        return None
    return measured.model_copy(
        update={"node_delay_ms": delays, "node_utilization": utilization, "bandwidth_mbps": bandwidth}
    )


UNMATCHED_SHOWN = 10  # node labels named in a MeasurementUnavailable message at most


def _require_matched(source: str, given: bool, kept: bool, labels: set[str], nodes: set[str]) -> None:
    """Raise :class:`MeasurementUnavailable` when ``source`` gave values and none of them is on (between) listed nodes."""
    if not given or kept:
        return
    unmatched = sorted(labels - nodes) or sorted(labels)
    shown = ", ".join(unmatched[:UNMATCHED_SHOWN]) + (
        f" and {len(unmatched) - UNMATCHED_SHOWN} more" if len(unmatched) > UNMATCHED_SHOWN else ""
    )
    raise MeasurementUnavailable(
        f"the samples of {source} match no node the request lists (node labels {shown}; listed: "
        f"{', '.join(sorted(nodes)[:UNMATCHED_SHOWN])}{' …' if len(nodes) > UNMATCHED_SHOWN else ''}): label the "
        "samples with the Kubernetes node names"
    )


def pods_per_node(snapshot: ClusterSnapshot, rules: FitRules) -> dict[str, Mapping[str, int]]:
    """Pod-distribution mode: service → node → number of pods."""
    table: dict[str, dict[str, int]] = {}
    for service, pods in group_by_service(snapshot.app_pods, rules).items():
        for pod in pods:
            table.setdefault(service, {}).setdefault(pod.node_name, 0)
            table[service][pod.node_name] += 1
    return dict(table)
