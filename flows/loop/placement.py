"""What ``reach demo`` and its experiments do to the live cluster: a poor start placement, drains, a surge.

:func:`poor_start` asks the simulator for a deliberately poor but feasible placement (the worst of
many seeded random draws under nominal conditions); :func:`place_app` makes the cluster run exactly
that placement by scaling each Deployment up while every other node is cordoned (cordons marked
``reach.io/demo-placement`` and always lifted); :func:`drain_nodes` cordons nodes and evicts the
app's pods from them, like a node failure; :func:`scale_service` changes a Deployment's replicas,
like an autoscaler. Used by :mod:`flows.loop.demo` and the closed-loop e2e test.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ceenv.latency import LatencyModel, nominal_conditions
from ceenv.layout import Layout, placement_counts
from ceenv.placement import slots_from_assignment
from ceenv.validation import ScenarioError
from flows.loop import app
from flows.loop.app import APP_SELECTOR

if TYPE_CHECKING:
    from migrator.kube import ClusterAdmin
    from migrator.snapshot import PodInfo

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
    costs = model.nominal_costs()
    worst: StartPlacement | None = None
    for _ in range(draws):
        assignment = _random_assignment(layout, replicas, rng)
        try:
            slot_node = slots_from_assignment(model, layout, conditions, assignment, "start placement")
        except ScenarioError:
            continue
        latency = model.latency(placement_counts(layout, slot_node), costs)
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


# ---- the live cluster (every API call through the migrator's adapter) ------------------------
def live_pods(admin: ClusterAdmin, namespace: str) -> list[PodInfo]:
    """The app's bound pods that are not terminating."""
    return [p for p in admin.pods(namespace, APP_SELECTOR) if p.node_name and not p.terminating]


def live_assignment(admin: ClusterAdmin, namespace: str, service_label: str = "app") -> dict[str, list[str]]:
    """Service → nodes of its bound, non-terminating pods (what the API server says now)."""
    result: dict[str, list[str]] = {}
    for pod in live_pods(admin, namespace):
        result.setdefault(pod.labels.get(service_label, ""), []).append(pod.node_name)
    return {k: sorted(v) for k, v in sorted(result.items())}


def scale_service(admin: ClusterAdmin, namespace: str, service: str, replicas: int) -> None:
    admin.scale_deployment(namespace, service, replicas)


@contextmanager
def only_schedulable(admin: ClusterAdmin, node: str, nodes: list[str]) -> Iterator[None]:
    """Cordon every node but ``node`` for the duration (marked, and lifted even on errors)."""
    others = [n for n in nodes if n != node]
    try:
        for other in others:
            admin.set_cordon(other, True, PLACEMENT_CORDON)
        yield
    finally:
        for other in others:
            admin.set_cordon(other, False, PLACEMENT_CORDON)


def wait_bound(admin: ClusterAdmin, namespace: str, expected: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pods = [p for p in admin.pods(namespace, APP_SELECTOR) if not p.terminating]
        if len(pods) == expected and all(p.node_name for p in pods):
            return
        time.sleep(0.2)
    raise TimeoutError(f"the app's {expected} pods were not all scheduled within {timeout_s:.0f} s")


def place_app(admin: ClusterAdmin, namespace: str, scenario_dir: Path, assignment: dict[str, list[str]]) -> None:
    """Deploy the app with zero replicas, then grow it node by node so that it runs ``assignment`` exactly."""
    app.deploy(admin, scenario_dir, namespace, replicas=dict.fromkeys(assignment, 0))
    nodes = [n.name for n in admin.nodes()]
    per_node: dict[str, Counter[str]] = {}
    for service, targets in assignment.items():
        for node in targets:
            per_node.setdefault(node, Counter())[service] += 1
    replicas: Counter[str] = Counter()
    for node, services in per_node.items():
        with only_schedulable(admin, node, nodes):
            for service, count in services.items():
                replicas[service] += count
                scale_service(admin, namespace, service, replicas[service])
            wait_bound(admin, namespace, sum(replicas.values()))
    app.wait_ready(admin, namespace)


def busiest_nodes(admin: ClusterAdmin, namespace: str, count: int, client_layer_nodes: set[str]) -> list[str]:
    """The ``count`` nodes outside the client layer running the most app pods now (nodes without
    pods fill up the list when the app sits on fewer nodes); ties by name."""
    load: Counter[str] = Counter({n.name: 0 for n in admin.nodes()})
    load.update(p.node_name for p in live_pods(admin, namespace))
    ranked = sorted((kv for kv in load.items() if kv[0] not in client_layer_nodes), key=lambda kv: (-kv[1], kv[0]))
    return [node for node, _ in ranked[:count]]


def drain_nodes(admin: ClusterAdmin, namespace: str, nodes: list[str]) -> list[tuple[str, str]]:
    """Cordon ``nodes`` and evict the app's pods from them (their ReplicaSets recreate them elsewhere).

    Returns (pod, node) of every eviction.
    """
    evicted = []
    for node in nodes:
        admin.set_cordon(node, True)
    for pod in live_pods(admin, namespace):
        if pod.node_name in nodes:
            admin.evict(pod.name, namespace)
            evicted.append((pod.name, pod.node_name))
    return evicted


def uncordon_all(admin: ClusterAdmin) -> None:
    """Lift every cordon: ours (placement), and a migrator's temporary ones that a killed run left."""
    admin.lift_migrator_cordons()
    for node in admin.nodes():
        if node.unschedulable:
            admin.set_cordon(node.name, False, PLACEMENT_CORDON)
