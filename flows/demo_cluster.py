"""What ``reach demo`` and its experiments do to the live cluster: a poor start placement, drains, a surge.

:func:`poor_start` asks the simulator for a deliberately poor but feasible placement (the worst of
many seeded random draws under nominal conditions); :func:`place_app` makes the cluster run exactly
that placement by scaling each Deployment up while every other node is cordoned (cordons marked
``reach.io/demo-placement`` and always lifted); :func:`drain_nodes` cordons nodes and evicts the
app's pods from them, like a node failure; :func:`scale_service` changes a Deployment's replicas,
like an autoscaler. Used by :mod:`flows.demo` and the closed-loop e2e test.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from ceenv.latency import LatencyModel, build_network, nominal_conditions
from ceenv.layout import Layout
from ceenv.placement import slots_from_assignment
from ceenv.validation import ScenarioError

APP_SELECTOR = "reach.io/app=demo"
PLACEMENT_CORDON = "reach.io/demo-placement"
DEFAULT_REPLICAS = {"client": 1, "aggregator": 2, "machine-learning": 1, "detection": 1, "db": 1}


@dataclass(frozen=True)
class StartPlacement:
    """A placement (service → node per pod) and its simulated latency under nominal conditions."""

    assignment: dict[str, list[str]]
    latency_ms: float


def poor_start(
    model: LatencyModel, layout: Layout, replicas: Mapping[str, int], seed: int, draws: int = 300
) -> StartPlacement:
    """The worst feasible placement among ``draws`` seeded random ones with these replica counts."""
    rng = np.random.default_rng(seed)
    conditions = nominal_conditions(model.scenario)
    costs = model.prepare(build_network(model.scenario, conditions))
    worst: StartPlacement | None = None
    for _ in range(draws):
        assignment = _random_assignment(layout, replicas, rng)
        try:
            slot_node = slots_from_assignment(model, layout, conditions, assignment, "start placement")
        except ScenarioError:
            continue
        counts = np.zeros((len(layout.service_names), layout.node_count))
        occupied = slot_node >= 0
        np.add.at(counts, (layout.slot_service[occupied], slot_node[occupied]), 1.0)
        latency = model.latency(counts, costs)
        if worst is None or latency > worst.latency_ms:
            worst = StartPlacement(assignment, latency)
    if worst is None:
        raise ValueError(f"no feasible placement with replicas {dict(replicas)} in {draws} draws: use fewer replicas")
    return worst


def _random_assignment(layout: Layout, replicas: Mapping[str, int], rng: np.random.Generator) -> dict[str, list[str]]:
    assignment: dict[str, list[str]] = {}
    for s, service in enumerate(layout.service_names):
        allowed = np.flatnonzero(layout.allowed[s])
        count = replicas.get(service, 1)
        # Replicas of one service on distinct nodes where possible, as a spreading scheduler would.
        picks = rng.choice(allowed, size=count, replace=count > allowed.size)
        assignment[service] = [layout.node_names[int(n)] for n in picks]
    return assignment


# ---- the live cluster ------------------------------------------------------------------------
def _apis(api_client: Any) -> tuple[Any, Any]:
    from kubernetes import client

    return client.CoreV1Api(api_client), client.AppsV1Api(api_client)


def app_pods(api_client: Any, namespace: str) -> list[Any]:
    core, _ = _apis(api_client)
    return list(core.list_namespaced_pod(namespace, label_selector=APP_SELECTOR).items)


def live_assignment(api_client: Any, namespace: str, service_label: str = "app") -> dict[str, list[str]]:
    """Service → nodes of its bound, non-terminating pods (what the API server says now)."""
    result: dict[str, list[str]] = {}
    for pod in app_pods(api_client, namespace):
        if pod.spec.node_name and pod.metadata.deletion_timestamp is None:
            result.setdefault(pod.metadata.labels.get(service_label, ""), []).append(pod.spec.node_name)
    return {k: sorted(v) for k, v in sorted(result.items())}


def scale_service(api_client: Any, namespace: str, service: str, replicas: int) -> None:
    _, apps = _apis(api_client)
    apps.patch_namespaced_deployment_scale(service, namespace, {"spec": {"replicas": replicas}})


def set_cordon(api_client: Any, node: str, cordoned: bool, mark: str | None = None) -> None:
    core, _ = _apis(api_client)
    annotations = {mark: "true" if cordoned else None} if mark else {}
    core.patch_node(
        node, {"metadata": {"annotations": annotations}, "spec": {"unschedulable": True if cordoned else None}}
    )


@contextmanager
def only_schedulable(api_client: Any, node: str, nodes: list[str]) -> Iterator[None]:
    """Cordon every node but ``node`` for the duration (marked, and lifted even on errors)."""
    others = [n for n in nodes if n != node]
    try:
        for other in others:
            set_cordon(api_client, other, True, PLACEMENT_CORDON)
        yield
    finally:
        for other in others:
            set_cordon(api_client, other, False, PLACEMENT_CORDON)


def wait_bound(api_client: Any, namespace: str, expected: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pods = [p for p in app_pods(api_client, namespace) if p.metadata.deletion_timestamp is None]
        if len(pods) == expected and all(p.spec.node_name for p in pods):
            return
        time.sleep(0.2)
    raise TimeoutError(f"the app's {expected} pods were not all scheduled within {timeout_s:.0f} s")


def place_app(
    api_client: Any, namespace: str, demo_app: Any, scenario_dir: Any, assignment: dict[str, list[str]]
) -> None:
    """Deploy the app with zero replicas, then grow it node by node so that it runs ``assignment`` exactly."""
    demo_app.deploy(api_client, scenario_dir, namespace, replicas=dict.fromkeys(assignment, 0))
    core, _ = _apis(api_client)
    nodes = [n.metadata.name for n in core.list_node().items]
    per_node: dict[str, Counter[str]] = {}
    for service, targets in assignment.items():
        for node in targets:
            per_node.setdefault(node, Counter())[service] += 1
    replicas: Counter[str] = Counter()
    for node, services in per_node.items():
        with only_schedulable(api_client, node, nodes):
            for service, count in services.items():
                replicas[service] += count
                scale_service(api_client, namespace, service, replicas[service])
            wait_bound(api_client, namespace, sum(replicas.values()))
    demo_app.wait_ready(api_client, namespace)


def busiest_nodes(api_client: Any, namespace: str, count: int, client_layer_nodes: set[str]) -> list[str]:
    """The ``count`` nodes outside the client layer running the most app pods now (nodes without
    pods fill up the list when the app sits on fewer nodes); ties by name."""
    core, _ = _apis(api_client)
    load: Counter[str] = Counter({n.metadata.name: 0 for n in core.list_node().items})
    load.update(
        p.spec.node_name for p in app_pods(api_client, namespace) if p.spec.node_name and p.metadata.deletion_timestamp is None
    )  # fmt: skip
    ranked = sorted((kv for kv in load.items() if kv[0] not in client_layer_nodes), key=lambda kv: (-kv[1], kv[0]))
    return [node for node, _ in ranked[:count]]


def drain_nodes(api_client: Any, namespace: str, nodes: list[str]) -> list[tuple[str, str]]:
    """Cordon ``nodes`` and evict the app's pods from them (their ReplicaSets recreate them elsewhere).

    Returns (pod, node) of every eviction. The Eviction body is ``policy/v1beta1`` (Kubernetes 1.20).
    """
    core, _ = _apis(api_client)
    evicted = []
    for node in nodes:
        set_cordon(api_client, node, True)
    for pod in app_pods(api_client, namespace):
        if pod.spec.node_name in nodes and pod.metadata.deletion_timestamp is None:
            body = {"apiVersion": "policy/v1beta1", "kind": "Eviction",
                    "metadata": {"name": pod.metadata.name, "namespace": namespace}}  # fmt: skip
            core.create_namespaced_pod_eviction(pod.metadata.name, namespace, body)
            evicted.append((pod.metadata.name, pod.spec.node_name))
    return evicted


def uncordon_all(api_client: Any) -> None:
    core, _ = _apis(api_client)
    for node in core.list_node().items:
        if node.spec.unschedulable:
            set_cordon(api_client, node.metadata.name, False, PLACEMENT_CORDON)
