"""What the world emulates: the cluster, the pods of a placement, and the knobs of its physics.

:class:`Cluster` is the scenario's nodes reduced to what a request meets (layer, CPU type, NIC
bandwidth) plus the ranges that the dynamic conditions drift in. :class:`PodSpec` is one pod of
the application (name, service, node); :func:`pods_from_assignment` turns a ``placement.json``
mapping (``{"service": ["node", ...]}``, as ``reach sim latency`` takes it) into pods, and
:func:`pod_concurrency` gives a pod's CPU queue its number of servers from its CPU request.
:class:`WorldOptions` holds every distributional choice with its default; ``ideal`` switches them
all to the twin's limit (fixed service times, no jitter, no drift). Used by
:mod:`flows.loop.world.emulator`, :mod:`flows.loop.world.measure` and the live adapter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from ceenv.latency import Conditions, nominal_conditions
from ceenv.scenario import Scenario
from ceenv.workload import Workload

ISTIO_DEFAULT_RETRIES = 2  # Istio's default retry policy: 2 attempts after the first (connect failures, 503)


class WorldError(ValueError):
    """The world cannot run this input (unknown names, a called service without a pod, bad options)."""


@dataclass(frozen=True)
class WorldOptions:
    """The world's physics. Defaults are the non-ideal world; :meth:`WorldOptions.idealised` is the twin's limit.

    Times are milliseconds unless the name says otherwise; ``*_cv`` are coefficients of variation.
    """

    rps_multiplier: float = 1.0  # multiplies every endpoint's rps
    service_cv: float = 0.5  # service time ~ Gamma(mean = exec_time · slowdown, CV = service_cv)
    jitter_cv: float = 0.2  # link delay per request ~ Gamma(mean = current delay, CV = jitter_cv)
    cpu_slowdown: float = 1.0  # service time × (1 + cpu_slowdown · background CPU load fraction of the node)
    drift_period_s: float = 10.0  # every period, delays, NIC and CPU background load take a random step
    drift_step: float = 0.02  # step size as a fraction of the value's range; 0 = no drift
    drift_reversion: float = 0.2  # each step pulls a drifting value this fraction back towards its start
    connect_timeout_ms: float = 1000.0  # what a call to a pod on a failed node costs before the retry
    retries: int = ISTIO_DEFAULT_RETRIES  # retries on another replica after a connect failure
    endpoint_grace_s: float = 40.0  # after a node failure, its pods stay in the endpoints this long
    ping_period_s: float = 5.0  # ping-mesh: every node probes every other node this often (Goldpinger's default)

    def idealised(self) -> WorldOptions:
        """Fixed service times, no jitter, no drift, no slowdown: the twin's limit (queues remain)."""
        return replace(self, service_cv=0.0, jitter_cv=0.0, cpu_slowdown=0.0, drift_step=0.0)

    def check(self) -> None:
        """Raise :class:`WorldError` naming the first option out of range."""
        if not self.rps_multiplier > 0:
            raise WorldError(f"rps multiplier must be > 0, got {self.rps_multiplier}; pass e.g. --rps 1")
        for name in ("service_cv", "jitter_cv", "cpu_slowdown", "drift_step", "drift_reversion", "connect_timeout_ms"):
            if getattr(self, name) < 0:
                raise WorldError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("drift_period_s", "ping_period_s"):
            if not getattr(self, name) > 0:
                raise WorldError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.retries < 0:
            raise WorldError(f"retries must be >= 0, got {self.retries}")


@dataclass(frozen=True)
class Cluster:
    """The scenario's nodes as a request meets them, and the ranges their conditions drift in."""

    scenario: Scenario
    node_names: tuple[str, ...]
    node_layer: np.ndarray  # (N,) index into scenario.layers
    node_cpu_type: np.ndarray  # (N,)
    nic_bits_per_ms: np.ndarray  # (N,) NIC bandwidth before background traffic, bits per ms
    cpu_free_range: np.ndarray  # (N, 2) free CPU (cores), lowest and largest listed value
    utilization_range: np.ndarray  # (N, 2) fraction of the NIC used by background traffic
    delay_range_ms: np.ndarray  # (L, L, 2) one-way delay between layers

    @classmethod
    def from_scenario(cls, scenario: Scenario) -> Cluster:
        layers = {layer: i for i, layer in enumerate(scenario.layers)}
        nodes = scenario.nodes
        return cls(
            scenario=scenario,
            node_names=tuple(n.name for n in nodes),
            node_layer=np.array([layers[n.layer] for n in nodes]),
            node_cpu_type=np.array([n.cpu_type for n in nodes]),
            nic_bits_per_ms=np.array([n.bandwidth_mbps * 1e3 for n in nodes]),
            cpu_free_range=np.array([(min(n.cpu_choices_cores), max(n.cpu_choices_cores)) for n in nodes]),
            utilization_range=np.array([n.utilization_range for n in nodes], dtype=np.float64),
            delay_range_ms=np.array(
                [[scenario.delay_range_ms[(a, b)] for b in scenario.layers] for a in scenario.layers]
            ),
        )

    def node_index(self, name: str, where: str) -> int:
        if name not in self.node_names:
            raise WorldError(f"{where}: unknown node {name!r}; the scenario has {list(self.node_names)}")
        return self.node_names.index(name)


@dataclass(frozen=True)
class State:
    """The dynamic conditions the world is in now: what drifts."""

    cpu_free_cores: np.ndarray  # (N,)
    utilization: np.ndarray  # (N,)
    delay_ms: np.ndarray  # (L, L)

    @classmethod
    def from_conditions(cls, conditions: Conditions) -> State:
        return cls(conditions.cpu_millicores / 1000.0, conditions.utilization.copy(), conditions.delay_ms.copy())

    @classmethod
    def nominal(cls, scenario: Scenario) -> State:
        return cls.from_conditions(nominal_conditions(scenario))


@dataclass(frozen=True)
class PodSpec:
    """One pod of the application: its name, its service and the index of its node."""

    name: str
    service: str
    node: int


def pod_concurrency(cpu_request_cores: float) -> int:
    """Servers of a pod's CPU queue: its CPU request rounded up, at least one (700m → 1, 1500m → 2)."""
    return max(1, math.ceil(cpu_request_cores - 1e-9))


def pods_from_assignment(cluster: Cluster, assignment: Mapping[str, Sequence[str]]) -> list[PodSpec]:
    """``{"service": ["node", ...]}`` → pods named ``<service>-<i>``; unknown names are a :class:`WorldError`."""
    services = cluster.scenario.service_names
    pods = []
    for service, nodes in assignment.items():
        if service not in services:
            raise WorldError(f"placement: unknown service {service!r}; the scenario has {list(services)}")
        for i, node in enumerate(nodes):
            pods.append(PodSpec(f"{service}-{i}", service, cluster.node_index(node, f"placement: {service}[{i}]")))
    return pods


def check_pods(workload: Workload, pods: Sequence[PodSpec]) -> None:
    """Every service the workload calls (clients included) needs a pod."""
    placed = {p.service for p in pods}
    missing = sorted(workload.services() - placed)
    if missing:
        raise WorldError(
            f"services called by workload {workload.name!r} have no pod: {missing}; place at least one pod of each"
        )


def placement_counts(cluster: Cluster, pods: Sequence[PodSpec]) -> np.ndarray:
    """Pods per (service, node), scenario order: the twin's ``counts``."""
    services = cluster.scenario.service_names
    counts = np.zeros((len(services), len(cluster.node_names)))
    for pod in pods:
        counts[services.index(pod.service), pod.node] += 1
    return counts
