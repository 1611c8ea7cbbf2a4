"""Random clusters and applications in REACH's file format, for training and testing across clusters.

:func:`generate_scenario` draws, from a seeded generator, a cluster (``nodes.json``: node types in
a cloud and an edge layer plus one client node, CPU types, free-capacity choices, bandwidths and
utilisation ranges, layer-to-layer delay ranges), its services (``services.json``: requests and
``max-replica``; the client pinned to its layer) and a workload (``<name>_call_patterns.json``:
endpoints with rps, random call trees whose groups run in parallel and whose calls inside a group
run in sequence, execution times per CPU type, data sizes). The documents load unchanged through
:func:`ceenv.scenario.scenario_from_documents` and :func:`ceenv.workload.parse_workload`.

Every generated scenario is feasible by construction: each non-client node can hold ``k_n`` pods
of the largest request at its smallest free capacity, and ``sum k_n`` is at least the number of
pods at ``max-replica``, so the random first-fit of :func:`ceenv.placement.draw_start` finds room
for every pod in every draw. Pure (numpy only); used by ``reach sim generate``, training across
clusters and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np

from ceenv.scenario import Scenario, scenario_from_documents
from ceenv.units import format_ms
from ceenv.workload import Workload, check_workload, parse_workload

CLIENT_SERVICE = "client"
CLOUD, EDGE, CLIENT = "cloud", "edge", "client"
MAX_NODES = 256
MAX_SERVICES = 64
MAX_CPU_TYPES = 8
MAX_ENDPOINTS = 16
MAX_CALL_DEPTH = 6
# CPU and memory requests are drawn in these steps (millicores, megabytes).
_CPU_STEP_M = 100
_MEMORY_STEP_MB = 100


@dataclass(frozen=True)
class GeneratorLimits:
    """What :func:`generate_scenario` draws when a size is not given: inclusive ``(low, high)`` ranges."""

    nodes: tuple[int, int] = (5, 20)  # including the client node
    services: tuple[int, int] = (3, 8)  # excluding the client
    cpu_types: tuple[int, int] = (1, 3)
    endpoints: tuple[int, int] = (1, 3)
    max_replica: tuple[int, int] = (1, 5)


@dataclass(frozen=True)
class GeneratedScenario:
    """The three documents of one generated scenario and their names."""

    name: str
    workload_name: str
    nodes_doc: dict[str, Any]
    services_doc: dict[str, Any]
    workload_doc: dict[str, Any]

    @property
    def workload_file(self) -> str:
        return f"{self.workload_name}_call_patterns.json"

    def documents(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """``(nodes_doc, services_doc, workload_doc)``."""
        return self.nodes_doc, self.services_doc, self.workload_doc

    def parse(self) -> tuple[Scenario, Workload]:
        """The validated :class:`Scenario` and :class:`Workload`, as if loaded from the written files."""
        scenario = scenario_from_documents(self.name, self.nodes_doc, self.services_doc)
        workload = parse_workload(self.workload_doc, self.workload_file, self.workload_name)
        check_workload(workload, scenario, self.workload_file)
        return scenario, workload


def _pick(rng: np.random.Generator, given: int | None, bounds: tuple[int, int], what: str, low: int, high: int) -> int:
    if given is None:
        lo, hi = bounds
        if not low <= lo <= hi <= high:
            raise ValueError(f"{what} range {bounds} must satisfy {low} <= low <= high <= {high}")
        return int(rng.integers(lo, hi + 1))
    if not low <= given <= high:
        raise ValueError(f"{what} must be between {low} and {high}, got {given}")
    return given


def _split_count(rng: np.random.Generator, total: int, parts: int) -> list[int]:
    """``total`` into ``parts`` positive integers (``total >= parts``)."""
    cuts = np.sort(rng.choice(np.arange(1, total), size=parts - 1, replace=False)) if parts > 1 else np.array([])
    bounds = [0, *cuts.tolist(), total]
    return [int(b - a) for a, b in pairwise(bounds)]


def _delay_ranges(rng: np.random.Generator) -> dict[str, dict[str, list[str]]]:
    """Symmetric ranges: tight within a layer and edge↔client, wide across to the cloud."""

    def near() -> list[str]:
        low = float(rng.uniform(0.05, 2.0))
        return [format_ms(round(low, 3)), format_ms(round(low * rng.uniform(1.0, 3.0), 3))]

    def far() -> list[str]:
        low = float(rng.uniform(10.0, 100.0))
        return [format_ms(round(low, 3)), format_ms(round(low * rng.uniform(1.0, 10.0), 3))]

    layers = (CLOUD, EDGE, CLIENT)
    ranges: dict[tuple[str, str], list[str]] = {}
    for i, a in enumerate(layers):
        for b in layers[i:]:
            crossing_to_cloud = (a == CLOUD) != (b == CLOUD)
            ranges[(a, b)] = ranges[(b, a)] = far() if crossing_to_cloud else near()
    return {a: {b: list(ranges[(a, b)]) for b in layers} for a in layers}


def _requests(rng: np.random.Generator, services: int) -> list[tuple[int, int]]:
    """(CPU millicores, memory MB) per non-client service."""
    cpu = rng.integers(1, 16, size=services) * _CPU_STEP_M  # 100m .. 1500m
    memory = rng.integers(1, 21, size=services) * _MEMORY_STEP_MB  # 100M .. 2000M
    return [(int(c), int(m)) for c, m in zip(cpu, memory, strict=True)]


@dataclass
class _NodeType:
    name: str
    layer: str
    cpu_type: int
    bandwidth_mbps: int
    count: int
    cpu_choices_m: list[int]
    memory_choices_mb: list[int]
    utilization: tuple[float, float]

    def spec(self) -> dict[str, Any]:
        low, high = self.utilization
        return {
            "count": self.count,
            "cpu_availability": [f"{c}m" for c in self.cpu_choices_m],
            "memory_availability": [f"{m}M" for m in self.memory_choices_mb],
            "bandwidth_utilization": [f"{low:.3f}", f"{high:.3f}"],
        }


def _capacity_choices(rng: np.random.Generator, pods: int, largest: tuple[int, int]) -> tuple[list[int], list[int]]:
    """CPU and memory choices whose smallest value holds ``pods`` pods of the ``largest`` request."""
    cpu_min, memory_min = pods * largest[0], pods * largest[1]
    choices = int(rng.integers(1, 4))
    cpu = sorted({cpu_min + int(x) * _CPU_STEP_M for x in rng.integers(0, 30, size=choices)} | {cpu_min})
    memory = sorted({memory_min + int(x) * _MEMORY_STEP_MB for x in rng.integers(0, 80, size=choices)} | {memory_min})
    return cpu, memory


def _node_types(
    rng: np.random.Generator, nodes: int, cpu_types: int, largest: tuple[int, int], pods_needed: int
) -> list[_NodeType]:
    """Cloud and edge node types covering ``nodes - 1`` nodes, and the client type."""
    compute = nodes - 1
    # CPU type 0 is the fastest; the cloud gets the fast half, the edge the slow half (overlapping).
    cloud_cpu = list(range(max(1, (cpu_types + 1) // 2)))
    edge_cpu = list(range(cpu_types // 2, cpu_types))
    if compute == 1:
        cloud = 1
    else:  # both layers get at least one node, and enough for their CPU types when there is room
        need_edge = min(len(edge_cpu), compute - 1)
        need_cloud = min(len(cloud_cpu), compute - need_edge)
        cloud = int(rng.integers(need_cloud, compute - need_edge + 1))
    per_node_pods = max(1, -(-pods_needed // compute))  # ceil: the nodes together hold every pod
    types: list[_NodeType] = []
    layers = ((CLOUD, cloud, cloud_cpu, (500, 10000)), (EDGE, compute - cloud, edge_cpu, (50, 1000)))
    for layer, count, cpu_pool, bandwidth in layers:
        if count == 0:
            continue
        fewest = min(count, len(cpu_pool))
        kinds = int(rng.integers(fewest, max(fewest, min(count, 3)) + 1))
        pool = [int(t) for t in rng.permutation(cpu_pool)]
        for k, share in enumerate(_split_count(rng, count, kinds)):
            cpu_type = pool[k] if k < len(pool) else int(rng.choice(pool))
            pods = per_node_pods + int(rng.integers(0, 3))
            cpu_m, memory_mb = _capacity_choices(rng, pods, largest)
            low = float(rng.uniform(0.0, 0.3))
            high = low + float(rng.uniform(0.0, 0.4))
            mbps = int(rng.integers(bandwidth[0] // 10, bandwidth[1] // 10 + 1)) * 10
            types.append(_NodeType(f"gen-{layer}-{k + 1}", layer, cpu_type, mbps, share, cpu_m, memory_mb, (low, high)))
    client_cpu = int(rng.integers(0, cpu_types))
    types.append(_NodeType("gen-client", CLIENT, client_cpu, 100, 1, [2000], [4000], (0.0, 0.0)))
    return types


def _services_doc(
    rng: np.random.Generator, requests: list[tuple[int, int]], max_replica: tuple[int, int], room: int
) -> dict[str, Any]:
    """Services with ``max-replica`` drawn in range, lowered until their pods fit ``room`` large pods."""
    replicas = [int(rng.integers(max_replica[0], max_replica[1] + 1)) for _ in requests]
    while sum(replicas) > room and max(replicas) > 1:
        replicas[int(np.argmax(replicas))] -= 1
    doc: dict[str, Any] = {
        CLIENT_SERVICE: {
            "cpu-requests": "500m",
            "memory-requests": "500M",
            "max-replica": 1,
            "type": "service",
            "layer": CLIENT,
        }
    }
    for i, ((cpu_m, memory_mb), count) in enumerate(zip(requests, replicas, strict=True)):
        doc[f"svc-{i + 1}"] = {
            "cpu-requests": f"{cpu_m}m",
            "memory-requests": f"{memory_mb}M",
            "max-replica": count,
            "type": "service",
        }
    return doc


def _call(rng: np.random.Generator, base_ms: float, speed: list[float]) -> dict[str, Any]:
    data_kb = int(rng.integers(1, 1001))
    return {
        "data-size": f"{data_kb}K",
        "execution-time": {str(t): format_ms(round(base_ms * f, 3)) for t, f in enumerate(speed)},
    }


def _call_tree(
    rng: np.random.Generator, services: list[str], base_ms: dict[str, float], speed: list[float]
) -> list[Any]:
    """A random call tree over ``services`` (in order; the first is the entry), as a REACH call path."""
    calls = [_call(rng, base_ms[s], speed) for s in services]
    depth = [0]
    children: list[list[int]] = [[]]
    for i in range(1, len(services)):
        parents = [p for p in range(i) if depth[p] < MAX_CALL_DEPTH]
        parent = int(rng.choice(parents))
        children[parent].append(i)
        children.append([])
        depth.append(depth[parent] + 1)
    for i in reversed(range(len(services))):
        kids = children[i]
        if not kids:
            continue
        style = int(rng.integers(3))  # 0 sequential, 1 parallel, 2 mixed
        groups: list[list[int]] = (
            [kids] if style == 0 else [[k] for k in kids] if style == 1 else _random_groups(rng, kids)
        )
        # A service appears at most once per group (a group is a JSON object keyed by service).
        calls[i]["call-path"] = [{services[k]: calls[k] for k in group} for group in groups]
    return [{services[0]: calls[0]}]


def _random_groups(rng: np.random.Generator, items: list[int]) -> list[list[int]]:
    groups: list[list[int]] = []
    for item in items:
        if groups and rng.random() < 0.5:
            groups[int(rng.integers(len(groups)))].append(item)
        else:
            groups.append([item])
    return groups


def _workload_doc(rng: np.random.Generator, services: list[str], endpoints: int, cpu_types: int) -> dict[str, Any]:
    """Endpoints whose call trees together call every service at least once."""
    speed = [1.0]
    for _ in range(1, cpu_types):
        speed.append(round(speed[-1] * float(rng.uniform(1.1, 2.0)), 3))
    base_ms = {s: float(np.exp(rng.uniform(np.log(0.5), np.log(60.0)))) for s in services}
    order = list(rng.permutation(services))
    owners = [int(i) for i in rng.integers(0, endpoints, size=len(order))]
    doc: dict[str, Any] = {}
    for e in range(endpoints):
        own = [s for s, o in zip(order, owners, strict=True) if o == e]
        extra = [s for s in services if s not in own and rng.random() < 0.3]
        members = [str(s) for s in (own + extra)] or [str(rng.choice(services))]
        members = [members[int(i)] for i in rng.permutation(len(members))]
        doc[f"endpoint-{e + 1}"] = {
            "client": CLIENT_SERVICE,
            "rps": int(rng.integers(1, 21)),
            "qos": format_ms(float(rng.integers(50, 500))),
            "call-path": _call_tree(rng, members, base_ms, speed),
        }
    return doc


def generate_scenario(
    rng: np.random.Generator,
    *,
    nodes: int | None = None,
    services: int | None = None,
    cpu_types: int | None = None,
    endpoints: int | None = None,
    limits: GeneratorLimits | None = None,
    name: str = "generated",
) -> GeneratedScenario:
    """Draw a feasible cluster, its services and a workload (see the module docstring).

    ``nodes`` counts the client node (at least 2: a client and one compute node); ``services``
    excludes the client service. Sizes not given are drawn from ``limits``. Execution times cover
    CPU types ``0 .. cpu_types - 1``; the cluster's nodes use them all when it has at least
    ``cpu_types + 1`` compute nodes (a smaller cluster uses fewer).
    """
    limits = limits or GeneratorLimits()
    node_count = _pick(rng, nodes, limits.nodes, "nodes", 2, MAX_NODES)
    service_count = _pick(rng, services, limits.services, "services", 1, MAX_SERVICES)
    cpu_type_count = _pick(rng, cpu_types, limits.cpu_types, "cpu_types", 1, MAX_CPU_TYPES)
    endpoint_count = _pick(rng, endpoints, limits.endpoints, "endpoints", 1, MAX_ENDPOINTS)
    if not 1 <= limits.max_replica[0] <= limits.max_replica[1]:
        raise ValueError(f"max_replica range {limits.max_replica} must satisfy 1 <= low <= high")
    requests = _requests(rng, service_count)
    largest = (max(c for c, _ in requests), max(m for _, m in requests))
    # Room for every service at one replica and, on average, half the upper replica bound.
    pods_needed = service_count * max(1, (limits.max_replica[0] + limits.max_replica[1]) // 2)
    types = _node_types(rng, node_count, cpu_type_count, largest, pods_needed)
    room = sum(
        t.count * min(min(t.cpu_choices_m) // largest[0], min(t.memory_choices_mb) // largest[1])
        for t in types
        if t.layer != CLIENT
    )
    services_doc = _services_doc(rng, requests, limits.max_replica, room)
    nodes_doc = {
        "node_type": {t.name: {"cpu_type": t.cpu_type, "bandwidth": f"{t.bandwidth_mbps}m"} for t in types},
        "latency": _delay_ranges(rng),
        "cluster_setup": {
            layer: {t.name: t.spec() for t in types if t.layer == layer}
            for layer in (CLOUD, EDGE, CLIENT)
            if any(t.layer == layer for t in types)
        },
    }
    names = [s for s in services_doc if s != CLIENT_SERVICE]
    workload_doc = _workload_doc(rng, names, endpoint_count, cpu_type_count)
    return GeneratedScenario(name, f"{name}-app", nodes_doc, services_doc, workload_doc)
