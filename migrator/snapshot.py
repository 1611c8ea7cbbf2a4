"""Plain-data view of the live cluster that every decision of the migrator is made on.

``migrator.kube`` (the only module that imports the Kubernetes client) converts API objects into
these frozen dataclasses; observing, guarding and planning then work on them without I/O, which is
what the unit tests build by hand. Units are in the names: CPU in millicores, memory in bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# Annotations and labels the migrator writes; a restarted migrator finds leftovers by them.
ANNOTATION_PREFIX = "reach.io/"
LABEL_MIGRATION = "reach.io/migration"
# A temporary cordon is a NoSchedule taint of this key whose value is the migration id: it adds to
# whatever else keeps a node unschedulable, so lifting it never lifts an admin's cordon.
TAINT_TEMPORARY_CORDON = "reach.io/temporary-cordon"
# What migrators before the taint wrote (spec.unschedulable plus this annotation); still cleaned up.
ANNOTATION_TEMPORARY_CORDON = "reach.io/temporary-cordon"
ANNOTATION_MIGRATION_TARGET = "reach.io/migration-target"
ANNOTATION_ORIGINAL_HASH = "reach.io/original-pod-template-hash"
ANNOTATION_REPLICASET = "reach.io/replicaset"
ANNOTATION_REPLACEMENT = "reach.io/replacement-pod"
ANNOTATION_STARTED_AT = "reach.io/migration-started-at"
POD_TEMPLATE_HASH = "pod-template-hash"
ORPHANED_HASH_VALUE = "reach-migrating"


@dataclass(frozen=True)
class Taint:
    key: str
    value: str = ""
    effect: str = "NoSchedule"


@dataclass(frozen=True)
class Toleration:
    key: str = ""
    operator: str = "Equal"
    value: str = ""
    effect: str = ""

    def tolerates(self, taint: Taint) -> bool:
        """Kubernetes' toleration matching (an empty key with Exists tolerates everything)."""
        if self.effect and self.effect != taint.effect:
            return False
        if not self.key:
            return self.operator == "Exists"
        if self.key != taint.key:
            return False
        return self.operator == "Exists" or self.value == taint.value


@dataclass(frozen=True)
class SelectorRequirement:
    key: str
    operator: str  # In, NotIn, Exists, DoesNotExist
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelSelector:
    """A Kubernetes label selector (matchLabels + matchExpressions)."""

    match_labels: Mapping[str, str] = field(default_factory=dict)
    match_expressions: tuple[SelectorRequirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        return all(_requirement_holds(r, labels) for r in self.match_expressions)

    def is_empty(self) -> bool:
        return not self.match_labels and not self.match_expressions


@dataclass(frozen=True)
class NodeSelectorTerm:
    """One term of required node affinity: all its label and field requirements must hold (In, NotIn,
    Exists, DoesNotExist, Gt, Lt); the terms of a pod are ORed. ``match_fields`` knows ``metadata.name``."""

    match_expressions: tuple[SelectorRequirement, ...] = ()
    match_fields: tuple[SelectorRequirement, ...] = ()


@dataclass(frozen=True)
class PodAffinityTerm:
    """A required pod anti-affinity term: no pod matched by ``selector`` (in ``namespaces``, empty means
    the pod's own) may run in the same ``topology_key`` domain."""

    selector: LabelSelector
    topology_key: str
    namespaces: tuple[str, ...] = ()


@dataclass(frozen=True)
class SpreadConstraint:
    """A topology spread constraint; only ``DoNotSchedule`` ones bind the scheduler."""

    max_skew: int
    topology_key: str
    when_unsatisfiable: str
    selector: LabelSelector


@dataclass(frozen=True)
class HostPort:
    """A container port bound on the node (``hostPort``); an empty or 0.0.0.0 ``host_ip`` means every address."""

    port: int
    protocol: str = "TCP"
    host_ip: str = ""


class ClusterAccessDenied(Exception):
    """The API server refused the migrator's credentials (401) or a permission (403) on a read or a write.

    Unlike an API server that is away, this does not pass by itself: the message names the call and
    the fix (the ServiceAccount's RBAC, ``deploy/k8s/rbac.yaml``, the kubeconfig's credentials, or an
    admission policy that forbids the change).
    Raised by :class:`migrator.kube.KubeOps`; the controller's cycle is blind with
    ``cluster-access-denied``.
    """


class MeasurementUnavailable(Exception):
    """A configured measurement (measured delays, NIC utilisation) could not be read: the cycle is blind.

    Raised by :meth:`migrator.metrics.PrometheusMetrics.measured_conditions`; the message names the
    query and why (unreachable, no sample, nothing usable).
    """


@dataclass(frozen=True)
class LatencyReading:
    """The application latency as the migrator observed it: a value in ms, or ``problem`` saying why it is unknown.

    ``problem`` is one of ``prometheus-unreachable``, ``latency-empty``, ``latency-not-a-number``,
    ``latency-stale`` (the newest sample is older than ``latency_max_age_s``); ``detail`` is for the log.
    ``sampled_at_s`` is the read sample's own timestamp (Unix seconds, Prometheus' clock) when known.
    """

    value_ms: float | None
    problem: str = ""
    detail: str = ""
    sampled_at_s: float | None = None


def _requirement_holds(req: SelectorRequirement, labels: Mapping[str, str]) -> bool:
    if req.operator == "In":
        return labels.get(req.key) in req.values
    if req.operator == "NotIn":
        return labels.get(req.key) not in req.values
    if req.operator == "Exists":
        return req.key in labels
    if req.operator == "DoesNotExist":
        return req.key not in labels
    raise ValueError(f"label selector operator {req.operator!r} on key {req.key!r} is not one of In/NotIn/Exists/...")


@dataclass(frozen=True)
class NodeInfo:
    name: str
    allocatable_cpu_millicores: float
    allocatable_memory_bytes: float
    labels: Mapping[str, str] = field(default_factory=dict)
    unschedulable: bool = False
    ready: bool = True
    taints: tuple[Taint, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)
    allocatable_pods: int | None = None


def temporary_cordons(node: NodeInfo) -> set[str]:
    """The migration ids of the migrator's temporary cordons on ``node`` (a pre-taint annotation included)."""
    ids = {t.value for t in node.taints if t.key == TAINT_TEMPORARY_CORDON}
    if ANNOTATION_TEMPORARY_CORDON in node.annotations:
        ids.add(node.annotations[ANNOTATION_TEMPORARY_CORDON])
    return ids


@dataclass(frozen=True)
class PodInfo:
    name: str
    namespace: str
    node_name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    cpu_request_millicores: float = 0.0
    memory_request_bytes: float = 0.0
    ready: bool = True
    terminating: bool = False
    phase: str = "Running"
    owner_kind: str = ""
    owner_name: str = ""
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)
    created_at_s: float = 0.0
    required_node_affinity: tuple[NodeSelectorTerm, ...] = ()
    required_anti_affinity: tuple[PodAffinityTerm, ...] = ()
    topology_spread: tuple[SpreadConstraint, ...] = ()
    host_ports: tuple[HostPort, ...] = ()

    @property
    def holds_resources(self) -> bool:
        """Pods in a terminal phase no longer count against their node's allocatable."""
        return self.phase not in ("Succeeded", "Failed")


@dataclass(frozen=True)
class PdbInfo:
    """A PodDisruptionBudget reduced to what the guard needs."""

    name: str
    namespace: str
    selector: LabelSelector
    disruptions_allowed: int
    empty_selector_matches_all: bool = False


@dataclass(frozen=True)
class ClusterSnapshot:
    """Nodes, all pods (for resource accounting), the application's pods and PDBs at one instant."""

    nodes: tuple[NodeInfo, ...]
    pods: tuple[PodInfo, ...]
    app_pods: tuple[PodInfo, ...]
    pdbs: tuple[PdbInfo, ...] = ()

    def node(self, name: str) -> NodeInfo | None:
        return next((n for n in self.nodes if n.name == name), None)

    def app_pod(self, name: str) -> PodInfo | None:
        return next((p for p in self.app_pods if p.name == name), None)
