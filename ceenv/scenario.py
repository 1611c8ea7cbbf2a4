"""The cluster and its services, read from REACH's ``nodes.json`` and ``services.json``.

A :class:`Scenario` is the static half of a simulation: the nodes (in the one node order used
everywhere: layers in file order, node types in file order, ``<node_type>-<i>``), the layer-to-layer
delay ranges, and the services with their requests and placement rules. The workload (call
patterns) is loaded by :mod:`ceenv.workload`. Used by the simulator, the encoder, the CLI and the
profile importers. Unknown keys are ignored so that REACH's files load unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ceenv.units import (
    cpu_millicores,
    parse_bandwidth_mbps,
    parse_cpu_cores,
    parse_fraction,
    parse_memory_bytes,
    parse_time_ms,
)
from ceenv.validation import Reader, ScenarioError, child, read_json

CLIENT_LAYER = "client"


@dataclass(frozen=True)
class Node:
    """One machine. Choices are the values its free capacity can take; nominal = the largest."""

    name: str
    layer: str
    node_type: str
    cpu_type: int
    bandwidth_mbps: float
    cpu_choices_cores: tuple[float, ...]
    memory_choices_bytes: tuple[float, ...]
    utilization_range: tuple[float, float]

    @property
    def nominal_cpu_cores(self) -> float:
        return max(self.cpu_choices_cores)

    @property
    def nominal_memory_bytes(self) -> float:
        return max(self.memory_choices_bytes)

    @property
    def nominal_cpu_millicores(self) -> float:
        """The largest free CPU in whole millicores (the unit of the wire payload and the simulator)."""
        return float(cpu_millicores(self.nominal_cpu_cores))


@dataclass(frozen=True)
class Service:
    """A microservice: per-pod requests, pod slots, and an optional layer it is pinned to."""

    name: str
    cpu_cores: float
    memory_bytes: float
    max_replica: int
    layer: str | None

    @property
    def cpu_millicores(self) -> float:
        """The pod's CPU request in whole millicores."""
        return float(cpu_millicores(self.cpu_cores))

    @property
    def movable(self) -> bool:
        """Pinned services (those with a ``layer``, such as the client) never move."""
        return self.layer is None

    def allowed_on(self, node: Node) -> bool:
        """The layer rule of MODEL.md §1: pinned → that layer; otherwise any layer but ``client``."""
        return node.layer == self.layer if self.layer is not None else node.layer != CLIENT_LAYER


@dataclass(frozen=True)
class Scenario:
    """A cluster and its services: what ``nodes.json`` + ``services.json`` describe."""

    name: str
    nodes: tuple[Node, ...]
    layers: tuple[str, ...]
    delay_range_ms: dict[tuple[str, str], tuple[float, float]]
    services: tuple[Service, ...]

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes)

    @property
    def service_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.services)

    @property
    def cpu_types(self) -> tuple[int, ...]:
        return tuple(sorted({n.cpu_type for n in self.nodes}))

    @property
    def slot_count(self) -> int:
        return sum(s.max_replica for s in self.services)

    def service(self, name: str) -> Service:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)


def _range(reader: Reader, value: object, path: str, parse: Any, what: str) -> tuple[float, float]:
    items = reader.sequence(value, path, f"[low, high] {what}")
    if len(items) != 2:
        raise reader.fail(path, "wrong length", value, f"exactly two values [low, high] ({what})")
    low, high = (reader.unit(parse, item, child(path, i)) for i, item in enumerate(items))
    if low > high:
        raise reader.fail(path, "range is reversed", value, "low <= high")
    return low, high


def _choices(reader: Reader, value: object, path: str, parse: Any, what: str) -> tuple[float, ...]:
    items = reader.sequence(value, path, f"a non-empty list of {what}")
    if not items:
        raise reader.fail(path, "empty list", value, f"at least one {what}")
    return tuple(reader.unit(parse, item, child(path, i)) for i, item in enumerate(items))


NodeTypes = dict[str, tuple[int, float]]  # node type → (cpu_type, bandwidth_mbps)
DelayRanges = dict[tuple[str, str], tuple[float, float]]


def _parse_node_types(r: Reader, doc: Any) -> NodeTypes:
    types = r.mapping(r.field(doc, "node_type", "$", "an object of node types"), "$.node_type")
    info: NodeTypes = {}
    for type_name, spec in types.items():
        path = child("$.node_type", type_name)
        spec = r.mapping(spec, path)
        cpu_type = r.integer(r.field(spec, "cpu_type", path, "an integer CPU type"), child(path, "cpu_type"), 0)
        raw_bandwidth = r.field(spec, "bandwidth", path, "a bandwidth such as '500m'")
        bandwidth = r.unit(parse_bandwidth_mbps, raw_bandwidth, child(path, "bandwidth"))
        if bandwidth <= 0:
            raise r.fail(child(path, "bandwidth"), "wrong value", raw_bandwidth, "a positive bandwidth")
        info[type_name] = (cpu_type, bandwidth)
    return info


def _parse_group(
    r: Reader, spec: Any, path: str
) -> tuple[int, tuple[float, ...], tuple[float, ...], tuple[float, float]]:
    """One ``cluster_setup.<layer>.<type>`` entry: count, CPU and memory choices, utilisation range."""
    spec = r.mapping(spec, path)
    count = r.integer(r.field(spec, "count", path, "an integer node count"), child(path, "count"), 0)
    cpus_raw = r.field(spec, "cpu_availability", path, "a list of CPU quantities")
    cpus = _choices(r, cpus_raw, child(path, "cpu_availability"), parse_cpu_cores, "CPU quantity")
    mems_raw = r.field(spec, "memory_availability", path, "a list of memory quantities")
    mems = _choices(r, mems_raw, child(path, "memory_availability"), parse_memory_bytes, "memory quantity")
    for key, raw, choices in (("cpu_availability", cpus_raw, cpus), ("memory_availability", mems_raw, mems)):
        if max(choices) <= 0:  # no pod could ever run there, and the observation's scale would be 0
            raise r.fail(
                child(path, key),
                "wrong value",
                raw,
                "at least one positive quantity (leave out a node type that has nothing to offer)",
            )
    util = (0.0, 0.0)
    if "bandwidth_utilization" in spec:
        util_path = child(path, "bandwidth_utilization")
        util = _range(r, spec["bandwidth_utilization"], util_path, parse_fraction, "fractions of NIC bandwidth")
        if util[1] >= 1.0:
            raise r.fail(
                util_path,
                "wrong value",
                spec["bandwidth_utilization"],
                "a utilisation below 1 (a fully used NIC carries nothing)",
            )
    return count, cpus, mems, util


def _parse_setup(r: Reader, doc: Any, types: NodeTypes) -> tuple[list[Node], tuple[str, ...]]:
    setup = r.mapping(r.field(doc, "cluster_setup", "$", "an object of layers"), "$.cluster_setup")
    if not setup:
        raise r.fail("$.cluster_setup", "no layers", dict(setup), "at least one layer with nodes")
    nodes: list[Node] = []
    seen: dict[str, str] = {}
    for layer, layer_types in setup.items():
        layer_path = child("$.cluster_setup", layer)
        for type_name, spec in r.mapping(layer_types, layer_path).items():
            path = child(layer_path, type_name)
            if type_name not in types:
                raise r.fail(path, "unknown node type", type_name, f"one of $.node_type: {sorted(types)}")
            count, cpus, mems, util = _parse_group(r, spec, path)
            cpu_type, bandwidth = types[type_name]
            for i in range(1, count + 1):
                name = f"{type_name}-{i}"
                if name in seen:
                    raise r.fail(
                        child(path, "count"),
                        f"duplicate node name {name!r} (also made by {seen[name]})",
                        expected="node types that appear once across layers",
                    )
                seen[name] = path
                nodes.append(Node(name, layer, type_name, cpu_type, bandwidth, cpus, mems, util))
    if not nodes:
        raise r.fail("$.cluster_setup", "the cluster has no nodes", expected="at least one node with count >= 1")
    return nodes, tuple(setup)


def _parse_delays(r: Reader, doc: Any, layers: tuple[str, ...]) -> DelayRanges:
    latency = r.mapping(r.field(doc, "latency", "$", "an object of layer-to-layer delay ranges"), "$.latency")
    delays: DelayRanges = {}
    for a in layers:
        row = (
            r.mapping(latency[a], child("$.latency", a), f"an object of delays from layer {a!r}")
            if a in latency
            else None
        )
        for b in layers:
            path = child(child("$.latency", a), b)
            if row is None or b not in row:
                raise r.fail(
                    path,
                    f"missing delay from layer {a!r} to layer {b!r}",
                    expected="[low, high] such as ['50ms', '500ms']",
                )
            delays[(a, b)] = _range(r, row[b], path, parse_time_ms, "delays")
    return delays


def parse_nodes(raw: object, file: str) -> tuple[tuple[Node, ...], tuple[str, ...], DelayRanges]:
    """Validate a ``nodes.json`` document; return nodes in node order, layers, and delay ranges."""
    r = Reader(file)
    doc = r.mapping(raw, "$")
    nodes, layers = _parse_setup(r, doc, _parse_node_types(r, doc))
    return tuple(nodes), layers, _parse_delays(r, doc, layers)


def parse_services(raw: object, file: str, layers: tuple[str, ...] | None = None) -> tuple[Service, ...]:
    """Validate a ``services.json`` document; pinned layers are checked against ``layers``."""
    r = Reader(file)
    doc = r.mapping(raw, "$")
    if not doc:
        raise r.fail("$", "no services", {}, "at least one service")
    services = []
    for name, spec in doc.items():
        path = child("$", name)
        spec = r.mapping(spec, path)
        cpu = r.unit(
            parse_cpu_cores,
            r.field(spec, "cpu-requests", path, "a CPU quantity such as '700m'"),
            child(path, "cpu-requests"),
        )
        mem = r.unit(
            parse_memory_bytes,
            r.field(spec, "memory-requests", path, "a memory quantity such as '700M'"),
            child(path, "memory-requests"),
        )
        if cpu <= 0 and mem <= 0:  # it would fit anywhere, a failed node (no capacity) included
            raise r.fail(
                child(path, "cpu-requests"), "wrong value", spec["cpu-requests"],
                "a positive CPU or memory request (a pod without requests fits even on a failed node); "
                "give it a small one such as '1m'",
            )  # fmt: skip
        replicas = r.integer(r.field(spec, "max-replica", path, "an integer >= 1"), child(path, "max-replica"), 1)
        layer = spec.get("layer")
        if layer is not None:
            if not isinstance(layer, str):
                raise r.fail(child(path, "layer"), "wrong type", layer, "a layer name")
            if layers is not None and layer not in layers:
                raise r.fail(
                    child(path, "layer"), "unknown layer", layer, f"one of the cluster's layers {list(layers)}"
                )
        services.append(Service(name, cpu, mem, replicas, layer))
    return tuple(services)


def scenario_from_documents(
    name: str,
    nodes_doc: object,
    services_doc: object,
    nodes_file: str = "nodes.json",
    services_file: str = "services.json",
) -> Scenario:
    """Validate and cross-check parsed ``nodes.json`` and ``services.json`` documents (files or artefact copies)."""
    nodes, layers, delays = parse_nodes(nodes_doc, nodes_file)
    services = parse_services(services_doc, services_file, layers)
    for service in services:
        if not any(service.allowed_on(node) for node in nodes):
            raise ScenarioError(
                services_file,
                child("$", service.name),
                "no node satisfies the service's layer rule",
                expected="a cluster with at least one node the service may run on",
            )
    return Scenario(name, nodes, layers, delays, services)


def load_scenario(directory: str | Path) -> Scenario:
    """Load and cross-check ``nodes.json`` and ``services.json`` from a scenario directory."""
    root = Path(directory)
    if not root.is_dir():
        raise ScenarioError(
            str(root), "$", "not a directory", expected="a directory holding nodes.json and services.json"
        )
    nodes_file, services_file = root / "nodes.json", root / "services.json"
    return scenario_from_documents(
        root.resolve().name, read_json(nodes_file), read_json(services_file), str(nodes_file), str(services_file)
    )
