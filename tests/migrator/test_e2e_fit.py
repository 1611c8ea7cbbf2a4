"""Fit as the scheduler fits, on the real local Kubernetes 1.20 control plane: one test per constraint.

Each test creates a small Deployment (label ``reach.io/app=fit``, pinned to the four edge hollow
nodes of the 7-21 cluster: two ``tb-edge-vm-4`` and two ``tb-edge-vm-2``, told apart by the node
label ``reach.io/node-type``) with one scheduling constraint, reads it back through ``KubeOps``
and checks three things: ``pod_deployable`` lists exactly the nodes the constraint allows, the
guard refuses a move to a forbidden node with the constraint's own reason, and the real
kube-scheduler agrees: a probe copy of the pod (same labels, but not adopted by the ReplicaSet),
offered with every other node cordoned (as the actuator aims a replacement), is Unschedulable on a
forbidden node with the scheduler's own words, and is bound on an allowed one. Everything created is deleted.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.e2e
NS = "default"
SELECTOR = "reach.io/app=fit"
NODE_TYPE = "reach.io/node-type"
_probe_ids = itertools.count(1)


UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"


@pytest.fixture
def fit(api_client: Any, core: Any) -> Iterator[Any]:
    from kubernetes import client

    apps = client.AppsV1Api(api_client)
    yield apps
    apps.delete_collection_namespaced_deployment(NS, label_selector=SELECTOR, propagation_policy="Foreground")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        left = apps.list_namespaced_deployment(NS, label_selector=SELECTOR).items
        left += apps.list_namespaced_replica_set(NS, label_selector=SELECTOR).items
        pods = core.list_namespaced_pod(NS, label_selector=SELECTOR).items
        if not left and not pods:
            return
        if not left and pods:
            core.delete_collection_namespaced_pod(NS, label_selector=SELECTOR, grace_period_seconds=0)
        time.sleep(0.5)
    raise TimeoutError("the fit tests' Deployments and pods were not gone within 90 s")


def deploy(apps: Any, core: Any, name: str, replicas: int, requests: bool = True, **spec: Any) -> dict[str, str]:
    """A pause Deployment on the edge layer with extra pod spec fields; waits Ready; pod → node."""
    labels = {"app": name, "reach.io/app": "fit"}
    container: dict[str, Any] = {"name": "c", "image": "registry.k8s.io/pause:3.2"}
    if requests:
        container["resources"] = {"requests": {"cpu": "10m", "memory": "16Mi"}}
    if "ports" in spec:
        container["ports"] = spec.pop("ports")
    pod_spec = {"containers": [container], "terminationGracePeriodSeconds": 0,
                "nodeSelector": {"reach.io/layer": "edge"}, **spec}  # fmt: skip
    body = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": pod_spec}},
    }  # fmt: skip
    apps.create_namespaced_deployment(NS, body)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        pods = [p for p in core.list_namespaced_pod(NS, label_selector=f"app={name}").items
                if not p.metadata.deletion_timestamp]  # fmt: skip
        ready = [p for p in pods if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]
        if len(ready) == replicas == len(pods):
            return {p.metadata.name: p.spec.node_name for p in pods}
        time.sleep(0.5)
    raise TimeoutError(f"Deployment {name} not Ready within 180 s")


def edge_nodes(core: Any) -> dict[str, str]:
    """Edge node → its node type."""
    return {
        n.metadata.name: n.metadata.labels[NODE_TYPE]
        for n in core.list_node().items
        if n.metadata.labels.get("reach.io/layer") == "edge"
    }


def observe(api_client: Any) -> tuple[Any, Any]:
    from migrator.kube import KubeOps
    from migrator.observe import FitRules, build_request

    snapshot = KubeOps(api_client, NS, SELECTOR, "reach-fit-test").snapshot()
    return snapshot, build_request(snapshot, FitRules())


def guard_reason(api_client: Any, pod: str, target: str) -> str:
    from migrator.guards import GuardLimits, MigrationLedger, Move, check_move
    from migrator.observe import FitRules

    snapshot, request = observe(api_client)
    verdict = check_move(Move(pod, target), snapshot, request, MigrationLedger(), GuardLimits(), FitRules(), 0.0)
    return verdict.reason.value if verdict.reason else "allowed"


def wait_taint(core: Any, nodes: list[str], present: bool, timeout_s: float = 30.0) -> None:
    """Wait until the node lifecycle controller has put its ``unschedulable`` taint on ``nodes`` after a
    cordon (``present``), or taken it off after an uncordon. It does so asynchronously, from its own
    watch of the nodes: the scheduler refuses a tainted node, and a taint that is there shows that the
    cordon has gone out to the control plane's watchers."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        wrong = [
            n.metadata.name
            for n in core.list_node().items
            if n.metadata.name in nodes and any(t.key == UNSCHEDULABLE_TAINT for t in n.spec.taints or []) != present
        ]
        if not wrong:
            return
        time.sleep(0.2)
    state = "not yet tainted" if present else "still tainted"
    raise TimeoutError(f"nodes {state} {UNSCHEDULABLE_TAINT} {timeout_s} s after the (un)cordon: {wrong}")


def _delete_probe(core: Any, name: str) -> None:
    core.delete_namespaced_pod(name, NS, grace_period_seconds=0)
    while any(p.metadata.name == name for p in core.list_namespaced_pod(NS, label_selector=SELECTOR).items):
        time.sleep(0.3)


def scheduler_says(api_client: Any, core: Any, pod_name: str, node: str, attempts: int = 3) -> str:
    """Offer a probe copy of the pod to kube-scheduler with every other node cordoned (the actuator's
    own way to aim a replacement; cordons change no filter's counting): '' when bound to ``node``,
    else the scheduler's message.

    kube-scheduler decides from its informer cache, which can lag the API by the last cordon or two on
    a loaded machine (CI once saw a probe bound to the node cordoned last). So the probe is created
    only once every cordon shows the lifecycle controller's taint, and a probe bound to a node this
    helper cordoned (possible only from a stale cache) is deleted and offered again; a probe bound to
    any other node still fails the test."""
    from kubernetes import client

    source = core.read_namespaced_pod(pod_name, NS)
    spec = client.ApiClient().sanitize_for_serialization(source.spec)
    for computed in ("nodeName", "priority", "preemptionPolicy"):
        spec.pop(computed, None)
    labels = {**copy.deepcopy(source.metadata.labels), "pod-template-hash": "probe"}
    cordoned = [n.metadata.name for n in core.list_node().items if n.metadata.name != node and not n.spec.unschedulable]
    for other in cordoned:
        core.patch_node(other, {"spec": {"unschedulable": True}})
    try:
        wait_taint(core, cordoned, present=True)
        for _ in range(attempts):
            name = f"probe-{next(_probe_ids)}"
            core.create_namespaced_pod(NS, {"metadata": {"name": name, "labels": labels}, "spec": spec})
            try:
                bound, refusal = _probe_outcome(core, name)
            finally:
                _delete_probe(core, name)
            if not bound:
                return refusal
            if bound == node:
                return ""
            assert bound in cordoned, f"probe {name} bound to {bound}, which was neither {node} nor cordoned"
        raise AssertionError(f"the scheduler bound {attempts} probes to cordoned nodes: its cache never caught up")
    finally:
        for other in cordoned:
            core.patch_node(other, {"spec": {"unschedulable": None}})
        wait_taint(core, cordoned, present=False)


def _probe_outcome(core: Any, name: str) -> tuple[str, str]:
    """(the node the scheduler bound probe ``name`` to, '') or ('', the scheduler's refusal)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        probe = core.read_namespaced_pod(name, NS)
        if probe.spec.node_name:
            return str(probe.spec.node_name), ""
        for c in probe.status.conditions or []:
            if c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable":
                return "", str(c.message)
        time.sleep(0.3)
    raise TimeoutError(f"the scheduler neither bound nor refused probe {name} within 30 s")


def test_required_node_affinity(api_client: Any, core: Any, fit: Any) -> None:
    edges = edge_nodes(core)
    small = sorted(n for n, t in edges.items() if t == "tb-edge-vm-2")
    big = sorted(n for n, t in edges.items() if t == "tb-edge-vm-4")
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": NODE_TYPE, "operator": "In", "values": ["tb-edge-vm-2"]}]},
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [big[0]]}]},
    ]}}}  # fmt: skip
    [(pod, node)] = deploy(fit, core, "fit-affinity", 1, affinity=affinity).items()
    _, request = observe(api_client)
    assert sorted(request.pod_deployable[pod]) == sorted({*small, big[0]} - {node})
    assert guard_reason(api_client, pod, big[1]) == "target-node-affinity"
    assert "node affinity" in scheduler_says(api_client, core, pod, big[1])
    allowed = sorted({*small, big[0]} - {node})[0]
    assert scheduler_says(api_client, core, pod, allowed) == ""


def anti_affinity(name: str, key: str) -> dict[str, Any]:
    term = {"labelSelector": {"matchLabels": {"app": name}}, "topologyKey": key}
    return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}


def test_pod_anti_affinity_on_the_hostname(api_client: Any, core: Any, fit: Any) -> None:
    edges = edge_nodes(core)
    placed = deploy(fit, core, "fit-anti-host", 2, affinity=anti_affinity("fit-anti-host", "kubernetes.io/hostname"))
    (pod, node), (_, other_node) = sorted(placed.items())
    _, request = observe(api_client)
    assert sorted(request.pod_deployable[pod]) == sorted(set(edges) - {node, other_node})
    assert guard_reason(api_client, pod, other_node) == "target-anti-affinity"
    assert "anti-affinity" in scheduler_says(api_client, core, pod, other_node)


def test_pod_anti_affinity_on_a_node_label_counts_the_original_while_it_runs(
    api_client: Any, core: Any, fit: Any
) -> None:
    edges = edge_nodes(core)
    [(pod, node)] = deploy(fit, core, "fit-anti-type", 1, affinity=anti_affinity("fit-anti-type", NODE_TYPE)).items()
    same_type = sorted(n for n, t in edges.items() if t == edges[node] and n != node)
    other_type = sorted(n for n, t in edges.items() if t != edges[node])
    _, request = observe(api_client)
    # make-before-break: the copy would share the node type with the still-running original
    assert sorted(request.pod_deployable[pod]) == other_type
    assert guard_reason(api_client, pod, same_type[0]) == "target-anti-affinity"
    assert "anti-affinity" in scheduler_says(api_client, core, pod, same_type[0])
    assert scheduler_says(api_client, core, pod, other_type[0]) == ""


def test_topology_spread_do_not_schedule(api_client: Any, core: Any, fit: Any) -> None:
    edges = edge_nodes(core)
    spread = [{"maxSkew": 1, "topologyKey": NODE_TYPE, "whenUnsatisfiable": "DoNotSchedule",
               "labelSelector": {"matchLabels": {"app": "fit-spread"}}}]  # fmt: skip
    placed = deploy(fit, core, "fit-spread", 3, topologySpreadConstraints=spread)
    per_type: dict[str, list[str]] = {}
    for pod_name, node in placed.items():
        per_type.setdefault(edges[node], []).append(pod_name)
    crowded = max(per_type, key=lambda t: len(per_type[t]))
    assert sorted(len(v) for v in per_type.values()) == [1, 2]
    pod = sorted(per_type[crowded])[0]
    within = sorted(n for n, t in edges.items() if t == crowded and n != placed[pod])
    across = sorted(n for n, t in edges.items() if t != crowded)
    _, request = observe(api_client)
    # 2 vs 1: a copy within the crowded type makes 3 - 1 = 2 > maxSkew; across makes 2 - 1 = 1
    assert sorted(request.pod_deployable[pod]) == across
    assert guard_reason(api_client, pod, within[0]) == "target-topology-spread"
    assert "topology spread" in scheduler_says(api_client, core, pod, within[0])
    assert scheduler_says(api_client, core, pod, across[0]) == ""


def test_host_ports(api_client: Any, core: Any, fit: Any) -> None:
    edges = edge_nodes(core)
    ports = [{"containerPort": 80, "hostPort": 18080, "protocol": "TCP"}]
    placed = deploy(fit, core, "fit-ports", 2, ports=ports)
    (pod, node), (_, taken) = sorted(placed.items())
    _, request = observe(api_client)
    assert sorted(request.pod_deployable[pod]) == sorted(set(edges) - {node, taken})
    assert guard_reason(api_client, pod, taken) == "target-host-port"
    assert "free ports" in scheduler_says(api_client, core, pod, taken)


def test_the_nodes_pod_limit(api_client: Any, core: Any, fit: Any) -> None:
    edges = edge_nodes(core)
    [(pod, node)] = deploy(fit, core, "fit-limit", 1).items()
    full = sorted(set(edges) - {node})[0]
    allocatable = int(core.read_node(full).status.allocatable["pods"])
    running = [p for p in core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={full}").items
               if p.status.phase not in ("Succeeded", "Failed")]  # fmt: skip
    # requests none, so only the pod count binds; pinned to ``full`` by its hostname label
    deploy(fit, core, "fit-filler", allocatable - len(running), requests=False,
           nodeSelector={"kubernetes.io/hostname": full})  # fmt: skip
    _, request = observe(api_client)
    assert full not in request.pod_deployable[pod]
    assert sorted(request.pod_deployable[pod]) == sorted(set(edges) - {node, full})
    assert guard_reason(api_client, pod, full) == "target-pod-limit"
    assert "Too many pods" in scheduler_says(api_client, core, pod, full)
