"""An in-memory cluster for the actuator's unit tests: a ReplicaSet controller, a scheduler and kubelets in miniature.

Each ``sleep`` of the ``FakeClock`` advances time and runs one reconcile ``tick``: ReplicaSets
create or remove pods (surplus: unscheduled, then not Ready, then newest first), pending pods are
scheduled on the first schedulable node with room, and scheduled pods become Ready one tick later
unless their node is in ``never_ready_nodes``; ``bind_delay_ticks`` holds a pending pod that long
before the scheduler binds it. A node that is not Ready cannot confirm a deletion: its pods stay
Terminating until they are force-deleted (grace period 0). The Ready count of every service is recorded per
tick, so tests can assert that it never dropped.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from migrator.snapshot import (
    ANNOTATION_TEMPORARY_CORDON,
    TAINT_TEMPORARY_CORDON,
    ClusterSnapshot,
    NodeInfo,
    PodInfo,
    Taint,
)

_names = itertools.count(1)


@dataclass
class FakeCluster:
    nodes: dict[str, NodeInfo]
    pods: dict[str, PodInfo] = field(default_factory=dict)
    replicasets: dict[str, tuple[dict[str, str], int]] = field(default_factory=dict)
    never_ready_nodes: set[str] = field(default_factory=set)
    ready_history: list[dict[str, int]] = field(default_factory=list)
    events: list[tuple[str, str]] = field(default_factory=list)
    label_patch_failures: int = 0
    bind_delay_ticks: int = 0
    forced_deletions: list[str] = field(default_factory=list)
    _pending_ticks: dict[str, int] = field(default_factory=dict)

    # ---- ClusterOps --------------------------------------------------------------------------
    def snapshot(self) -> ClusterSnapshot:
        pods = tuple(self.pods.values())
        return ClusterSnapshot(tuple(self.nodes.values()), pods, pods)

    def get_pod(self, name: str) -> PodInfo | None:
        return self.pods.get(name)

    def list_pods(self, match_labels: Mapping[str, str]) -> list[PodInfo]:
        return [p for p in self.pods.values() if all(p.labels.get(k) == v for k, v in match_labels.items())]

    def patch_pod_metadata(
        self, name: str, labels: Mapping[str, str | None], annotations: Mapping[str, str | None]
    ) -> None:
        if self.label_patch_failures and labels:
            self.label_patch_failures -= 1
            raise RuntimeError("API server said 500")
        pod = self.pods[name]
        self.pods[name] = replace(
            pod, labels=_merge(pod.labels, labels), annotations=_merge(pod.annotations, annotations)
        )

    def list_nodes(self) -> list[NodeInfo]:
        return list(self.nodes.values())

    def cordon(self, node_names: Sequence[str], migration_id: str) -> None:
        for name in node_names:
            node = self.nodes[name]
            others = tuple(t for t in node.taints if (t.key, t.effect) != (TAINT_TEMPORARY_CORDON, "NoSchedule"))
            self._set_taints(name, (*others, Taint(TAINT_TEMPORARY_CORDON, migration_id)))

    def lift_cordon(self, node_names: Sequence[str] | None, migration_id: str | None) -> None:
        for name in list(self.nodes) if node_names is None else node_names:
            node = self.nodes[name]
            kept = tuple(
                t for t in node.taints if t.key != TAINT_TEMPORARY_CORDON or migration_id not in (None, t.value)
            )
            if ANNOTATION_TEMPORARY_CORDON in node.annotations:  # a cordon of a migrator before the taint
                annotations = _merge(node.annotations, {ANNOTATION_TEMPORARY_CORDON: None})
                self.nodes[name] = replace(node, unschedulable=False, annotations=annotations)
            self._set_taints(name, kept)

    def _set_taints(self, node_name: str, taints: tuple[Taint, ...]) -> None:
        """As the API server: one taint per key and effect (a second is a 422)."""
        pairs = [(t.key, t.effect) for t in taints]
        if len(pairs) != len(set(pairs)):
            raise ValueError(f"422: node {node_name} would carry two taints with one key and effect: {taints}")
        self.nodes[node_name] = replace(self.nodes[node_name], taints=taints)

    def cordoned_nodes(self) -> list[str]:
        """Nodes the scheduler skips: cordoned (``spec.unschedulable``) or carrying a NoSchedule taint."""
        return [n.name for n in self.nodes.values() if not _schedulable(n)]

    def delete_pod(self, name: str) -> None:
        pod = self.pods.get(name)
        if pod is not None and pod.node_name and not self.nodes[pod.node_name].ready:
            self.pods[name] = replace(pod, terminating=True)  # its kubelet never confirms the removal
            return
        self.pods.pop(name, None)

    def force_delete_pod(self, name: str) -> None:
        self.forced_deletions.append(name)
        self.pods.pop(name, None)

    def replicaset_selector(self, name: str) -> dict[str, str]:
        return dict(self.replicasets[name][0])

    def replicaset_replicas(self, name: str) -> int:
        return self.replicasets[name][1]

    def emit_event(self, pod_name: str, reason: str, message: str, warning: bool = False) -> None:
        self.events.append((pod_name, reason))

    # ---- the miniature controllers -------------------------------------------------------------
    def add_deployment(self, service: str, nodes: list[str], cpu_m: float = 500) -> None:
        rs = f"{service}-abc"
        selector = {"app": service, "pod-template-hash": "abc"}
        self.replicasets[rs] = (selector, len(nodes))
        for node_name in nodes:
            self._create(rs, node_name, ready=True, cpu_m=cpu_m)

    def _create(self, rs: str, node_name: str, ready: bool, cpu_m: float = 500) -> None:
        name = f"{rs}-{next(_names)}"
        labels = {**self.replicasets[rs][0], "reach.io/app": "demo"}
        self.pods[name] = PodInfo(
            name, "default", node_name, labels, cpu_m, 2**29, ready=ready, owner_kind="ReplicaSet", owner_name=rs,
            created_at_s=float(next(_names)),
        )  # fmt: skip

    def tick(self) -> None:
        for rs, (selector, replicas) in self.replicasets.items():
            for pod in list(self.pods.values()):
                matches = all(pod.labels.get(k) == v for k, v in selector.items())
                if pod.owner_name == rs and not matches:  # release
                    self.pods[pod.name] = replace(pod, owner_kind="", owner_name="")
                elif matches and not pod.owner_name:  # adopt
                    self.pods[pod.name] = replace(pod, owner_kind="ReplicaSet", owner_name=rs)
            owned = self.list_pods(selector)
            if len(owned) < replicas:
                self._create(rs, "", ready=False)
            elif len(owned) > replicas:
                surplus = sorted(owned, key=lambda p: (bool(p.node_name), p.ready, -p.created_at_s))[0]
                del self.pods[surplus.name]
        for name, pod in list(self.pods.items()):
            if not pod.node_name:
                self._pending_ticks[name] = self._pending_ticks.get(name, 0) + 1
                node = next((n for n in self.nodes.values() if _schedulable(n)), None)
                if node is not None and self._pending_ticks[name] > self.bind_delay_ticks:
                    self.pods[name] = replace(pod, node_name=node.name)
            elif not pod.ready and pod.node_name not in self.never_ready_nodes:
                self.pods[name] = replace(pod, ready=True)
        self.ready_history.append(self.ready_counts())

    def ready_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for pod in self.pods.values():
            if pod.ready and not pod.terminating:
                counts[pod.labels["app"]] = counts.get(pod.labels["app"], 0) + 1
        return counts


@dataclass
class FakeClock:
    cluster: FakeCluster
    now: float = 0.0

    def now_s(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.cluster.tick()


def _merge(base: Mapping[str, str], changes: Mapping[str, str | None]) -> dict[str, str]:
    merged = dict(base)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _schedulable(node: NodeInfo) -> bool:
    return not node.unschedulable and not any(t.effect == "NoSchedule" for t in node.taints)
