"""REACH's reference testbed as documents: the three cluster sizes and the three call patterns of MODEL.md §5.

The facts of the paper's testbed (node types, capacities, delays, service requests, profiled
execution times) written once, as the same JSON documents that ``data/scenarios/*`` and
``data/workloads/*`` hold (a test keeps the files and these documents equal). The env uses them as
its embedded default, so ``gym.make("ceenv/CloudEdge-v1")`` works without any file, as registered
Gymnasium environments do. Pure data; used by :mod:`ceenv.env` and the tests.
"""

from __future__ import annotations

from typing import Any

from ceenv.scenario import Scenario, scenario_from_documents
from ceenv.workload import Workload, check_workload, parse_workload

DEFAULT_SCENARIO = "13-29"
DEFAULT_WORKLOAD = "aggregator_sequential"
SIZES = {"7-21": (2, 5), "13-29": (4, 7), "19-37": (6, 9)}  # nodes per non-client type, max-replica
WORKLOADS = ("aggregator_parallel", "aggregator_sequential", "chain")

_NODE_TYPES = {
    "tb-cloud-vm-8": {"cpu_type": 0, "bandwidth": "500m"},
    "tb-edge-vm-4": {"cpu_type": 1, "bandwidth": "200m"},
    "tb-edge-vm-2": {"cpu_type": 2, "bandwidth": "200m"},
    "tb-client-vm-2": {"cpu_type": 1, "bandwidth": "200m"},
}
_CAPACITY = {  # free CPU and memory choices of each node type
    "tb-cloud-vm-8": (["2", "5", "7"], ["2G", "16G", "27.68G"]),
    "tb-edge-vm-4": (["2", "4"], ["2G", "8G", "14G"]),
    "tb-edge-vm-2": (["1", "2"], ["1.3G", "4.3G", "7.65G"]),
    "tb-client-vm-2": (["2"], ["7.65G"]),
}
_LAYERS = {"cloud": ["tb-cloud-vm-8"], "edge": ["tb-edge-vm-4", "tb-edge-vm-2"], "client": ["tb-client-vm-2"]}
_NEAR, _FAR = ["0.1ms", "0.1ms"], ["50ms", "500ms"]
_REQUESTS = {  # service → (cpu, memory); the client is pinned to its layer, one replica
    "client": ("700m", "700M"),
    "aggregator": ("700m", "700M"),
    "machine-learning": ("1500m", "1500M"),
    "detection": ("1000m", "1000M"),
    "db": ("500m", "500M"),
}
_EXEC_MS = {  # profiled execution time by CPU type 0 / 1 / 2
    "aggregator": ("7ms", "10.5ms", "14ms"),
    "machine-learning": ("46ms", "69ms", "92ms"),
    "detection": ("12.5ms", "18.75ms", "25ms"),
    "db": ("2.1ms", "3.15ms", "4.2ms"),
}


def nodes_document(size: str) -> dict[str, Any]:
    """``nodes.json`` of a reference cluster size (``7-21``, ``13-29`` or ``19-37``)."""
    count, _ = _size(size)

    def delays(layer: str) -> dict[str, list[str]]:
        far = {("cloud", "edge"), ("cloud", "client"), ("edge", "cloud"), ("client", "cloud")}
        return {other: list(_FAR if (layer, other) in far else _NEAR) for other in _LAYERS}

    setup = {
        layer: {
            node_type: {
                "count": 1 if layer == "client" else count,
                "cpu_availability": list(_CAPACITY[node_type][0]),
                "memory_availability": list(_CAPACITY[node_type][1]),
                "bandwidth_utilization": ["0", "0"],
            }
            for node_type in types
        }
        for layer, types in _LAYERS.items()
    }
    return {
        "node_type": {k: dict(v) for k, v in _NODE_TYPES.items()},
        "latency": {layer: delays(layer) for layer in _LAYERS},
        "cluster_setup": setup,
    }


def services_document(size: str) -> dict[str, Any]:
    """``services.json`` of a reference cluster size."""
    _, replicas = _size(size)
    services: dict[str, Any] = {}
    for name, (cpu, memory) in _REQUESTS.items():
        spec: dict[str, Any] = {"cpu-requests": cpu, "memory-requests": memory, "type": "service"}
        spec["max-replica"] = 1 if name == "client" else replicas
        if name == "client":
            spec["layer"] = "client"
        services[name] = spec
    return services


def _call(service: str, children: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {"data-size": "0.1M", "execution-time": dict(zip("012", _EXEC_MS[service], strict=True))}
    if children:
        call["call-path"] = children
    return call


def workload_document(pattern: str) -> dict[str, Any]:
    """``<pattern>_call_patterns.json`` of a reference call pattern (MODEL.md §5)."""
    if pattern == "aggregator_parallel":
        groups = [
            {"machine-learning": _call("machine-learning")},
            {"db": _call("db")},
            {"detection": _call("detection")},
        ]
    elif pattern == "aggregator_sequential":
        groups = [{s: _call(s) for s in ("machine-learning", "db", "detection")}]
    elif pattern == "chain":
        groups = [
            {"machine-learning": _call("machine-learning", [{"detection": _call("detection", [{"db": _call("db")}])}])}
        ]
    else:
        raise ValueError(f"unknown reference workload {pattern!r}; one of {list(WORKLOADS)}")
    root = {"aggregator": _call("aggregator", groups)}
    return {pattern: {"client": "client", "rps": 5, "qos": "100ms", "call-path": [root]}}


def reference_scenario(size: str = DEFAULT_SCENARIO) -> Scenario:
    """The parsed reference cluster (the same objects ``load_scenario("data/scenarios/<size>")`` gives)."""
    return scenario_from_documents(size, nodes_document(size), services_document(size))


def reference_workload(scenario: Scenario, pattern: str = DEFAULT_WORKLOAD) -> Workload:
    """The parsed reference call pattern for ``scenario``."""
    file = f"{pattern}_call_patterns.json"
    workload = parse_workload(workload_document(pattern), file, pattern)
    check_workload(workload, scenario, file)
    return workload


def _size(size: str) -> tuple[int, int]:
    if size not in SIZES:
        raise ValueError(f"unknown reference cluster {size!r}; one of {list(SIZES)}")
    return SIZES[size]
