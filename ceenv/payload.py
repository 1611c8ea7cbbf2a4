"""REACH requests ↔ simulator state on a layout: the wire payload of MODEL.md §4 in array form.

:func:`state_from_request` maps a request onto a :class:`ceenv.layout.Layout` (free resources,
the slot placement, ``pod_deployable`` as a ``(P, N)`` target matrix) or raises
:class:`PayloadError` naming the offending item, and its optional ``measured`` block onto a
:class:`ceenv.latency.Network` (nominal values where the block is silent); :func:`request_from_state`
builds the request a cluster in a given state would send. Used by the policy service, the greedy stand-in, the canary
of the redeploy flow, the benchmarks and the golden env-vs-service test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ceenv.latency import (
    Conditions,
    Network,
    available_bits_per_s,
    build_network,
    network_from_parts,
    nominal_conditions,
)
from ceenv.layout import BoolArray, FloatArray, IntArray, Layout
from ceenv.scenario import Scenario
from ceenv.schema import (
    BYTES_PER_GIB,
    MAX_MEASURED_UTILIZATION,
    MEASURED_SCHEMA_VERSION,
    ActionRequest,
    MeasuredConditions,
)


class PayloadError(ValueError):
    """A request does not fit the model's layout; the message names the offending item."""


MAX_LISTED_NAMES = 10  # names an error quotes of a known list (a 40-node cluster's names would crowd out the fix)


def _known(names: tuple[str, ...] | list[str]) -> str:
    """The names a model knows, for an error message: all of them, or the first :data:`MAX_LISTED_NAMES` of many."""
    listed = list(names)
    if len(listed) <= MAX_LISTED_NAMES:
        return str(listed)
    return f"{len(listed)} names, first {MAX_LISTED_NAMES}: {listed[:MAX_LISTED_NAMES]}"


@dataclass(frozen=True)
class DecodedState:
    """A REACH request mapped onto a layout: what :func:`ceenv.observation.observe` and :func:`ceenv.observation.move_mask` need."""

    free_cpu_millicores: FloatArray
    free_memory_bytes: FloatArray
    slot_node: IntArray
    target_ok: BoolArray
    slot_pod: tuple[str, ...]  # pod name per slot, "" for an empty slot
    # The request's ``measured`` block as a network (None: absent, or no scenario to complete it;
    # the policy then uses the nominal network of the scenario saved with the model).
    measured_network: Network | None = None
    node_available: BoolArray | None = None  # (N,): False for a node listed with ``available: false``

    def evacuation_slots(self) -> list[int]:
        """Slots whose pod runs on a node the request marks unavailable (``available: false``)."""
        if self.node_available is None:
            return []
        on_node = self.slot_node >= 0
        return [int(s) for s in np.flatnonzero(on_node) if not self.node_available[self.slot_node[s]]]


def state_from_request(layout: Layout, request: ActionRequest, scenario: Scenario | None = None) -> DecodedState:
    """Map a request onto the layout, or raise :class:`PayloadError` naming the offending item.

    Nodes of the layout that the request omits are treated as unavailable (no free capacity, no
    target). A node listed with ``available: false`` (a failed node, MODEL.md §4) is unavailable
    too, but its pods are placed on it, so that the decision can move them off. Pods fill their
    service's slots in the order the request lists them, or, for a padded (version-4) layout, by node
    index, so that the observation does not depend on that order. With the ``scenario`` saved with the
    model, a ``measured`` block becomes :attr:`DecodedState.measured_network`
    (:func:`network_from_measured`).
    """
    node_index = {name: i for i, name in enumerate(layout.node_names)}
    service_index = {name: i for i, name in enumerate(layout.service_names)}
    n, slots = layout.node_count, layout.slot_count
    cpu = np.zeros(n)
    memory = np.zeros(n)
    present = np.zeros(n, dtype=bool)
    available = np.ones(n, dtype=bool)
    for key, node in request.cluster_state.nodes.items():
        if key not in node_index:
            raise PayloadError(
                f"cluster_state.nodes: unknown node {key!r}; the model knows {_known(layout.node_names)}"
            )
        if node.node_name != key:
            raise PayloadError(f"cluster_state.nodes.{key}.node_name is {node.node_name!r}, expected {key!r}")
        i = node_index[key]
        cpu[i], memory[i], present[i] = node.cpu_availability, node.memory_availability * BYTES_PER_GIB, True
        if not node.available:  # a failed node: no free capacity, never a target
            cpu[i] = memory[i] = 0.0
            available[i] = False
    slot_node = np.full(slots, -1, dtype=np.int64)
    slot_pod = [""] * slots
    first_slot = np.concatenate([[0], np.cumsum(layout.service_slots)[:-1]]).astype(int)
    pod_slot: dict[str, int] = {}
    pod_service: dict[str, str] = {}
    for key, service in request.cluster_state.services.items():
        if key not in service_index:
            raise PayloadError(
                f"cluster_state.services: unknown service {key!r}; the model knows {_known(layout.service_names)}"
            )
        if service.service_name != key:
            raise PayloadError(
                f"cluster_state.services.{key}.service_name is {service.service_name!r}, expected {key!r}"
            )
        s = service_index[key]
        if len(service.pods) > layout.service_slots[s]:
            raise PayloadError(
                f"cluster_state.services.{key}: {len(service.pods)} pods but the model has "
                f"{layout.service_slots[s]} slots for this service"
            )
        pods = list(service.pods)
        if layout.padded:
            pods.sort(key=lambda p: node_index.get(p.node_name, -1))
        for r, pod in enumerate(pods):
            if pod.node_name not in node_index:
                raise PayloadError(
                    f"pod {pod.pod_name!r} of service {key!r} runs on unknown node {pod.node_name!r}; "
                    f"the model knows {_known(layout.node_names)}"
                )
            if not present[node_index[pod.node_name]]:
                raise PayloadError(
                    f"pod {pod.pod_name!r} of service {key!r} runs on node {pod.node_name!r}, which is missing from "
                    f'cluster_state.nodes; list that node (with "available": false if it failed)'
                )
            if pod.pod_name in pod_slot:
                where = (
                    f"twice by service {key!r}"
                    if pod_service[pod.pod_name] == key
                    else f"by services {pod_service[pod.pod_name]!r} and {key!r}"
                )
                raise PayloadError(
                    f"pod {pod.pod_name!r} is listed {where}; list each pod once, under the service it belongs to"
                )
            slot = int(first_slot[s]) + r
            slot_node[slot], slot_pod[slot] = node_index[pod.node_name], pod.pod_name
            pod_slot[pod.pod_name] = slot
            pod_service[pod.pod_name] = key
    target_ok = np.zeros((slots, n), dtype=bool)
    for pod_name, targets in request.pod_deployable.items():
        if pod_name not in pod_slot:
            raise PayloadError(f"pod_deployable: unknown pod {pod_name!r} (not in cluster_state.services)")
        slot = pod_slot[pod_name]
        for target in targets:
            if target not in node_index:
                raise PayloadError(f"pod_deployable.{pod_name}: unknown node {target!r}")
            i = node_index[target]
            target_ok[slot, i] = present[i] and available[i]
    target_ok &= layout.allowed[layout.slot_service]
    measured = None
    if request.measured is not None and scenario is not None:
        measured = network_from_measured(scenario, request.measured)
    return DecodedState(cpu, memory, slot_node, target_ok, tuple(slot_pod), measured, available)


def network_from_measured(scenario: Scenario, measured: MeasuredConditions) -> Network:
    """The measured network: the request's values where it gives them, the scenario's nominal ones elsewhere.

    Raises :class:`PayloadError` for a node the scenario does not have.
    """
    index = {name: i for i, name in enumerate(scenario.node_names)}

    def node(name: str, where: str) -> int:
        if name not in index:
            raise PayloadError(
                f"measured.{where}: unknown node {name!r}; the model knows {_known(scenario.node_names)}"
            )
        return index[name]

    nominal = nominal_conditions(scenario)
    delay = build_network(scenario, nominal).delay_ms.copy()
    for source, row in measured.node_delay_ms.items():
        i = node(source, "node_delay_ms")
        for target, value in row.items():
            delay[i, node(target, f"node_delay_ms.{source}")] = value
    utilization = nominal.utilization.copy()
    for name, value in measured.node_utilization.items():
        utilization[node(name, "node_utilization")] = min(value, MAX_MEASURED_UTILIZATION)
    bits = available_bits_per_s(scenario, utilization)
    for name, mbps in measured.bandwidth_mbps.items():
        i = node(name, "bandwidth_mbps")
        bits[i] = mbps * 1e6 * (1.0 - utilization[i])
    with np.errstate(over="ignore", divide="ignore"):  # an overflow is refused just below, by node
        network = network_from_parts(delay, bits)
    if not (np.isfinite(network.delay_ms).all() and np.isfinite(network.ms_per_byte).all()):
        slow = [scenario.node_names[i] for i in np.flatnonzero(~np.isfinite(network.ms_per_byte).all(axis=1))]
        raise PayloadError(
            f"measured: the network costs are not finite (nodes {slow}); send bandwidth_mbps >= 0.001 and "
            "node_utilization in [0, 1]"
        )
    return network


def measured_from_conditions(scenario: Scenario, conditions: Conditions) -> dict[str, Any]:
    """The ``measured`` block a perfect monitor would send for ``conditions`` (every pair and node)."""
    delay = build_network(scenario, conditions).delay_ms
    names = scenario.node_names
    return {
        "schema_version": MEASURED_SCHEMA_VERSION,
        "node_delay_ms": {
            a: {b: float(delay[i, j]) for j, b in enumerate(names) if j != i} for i, a in enumerate(names)
        },
        "node_utilization": {name: float(u) for name, u in zip(names, conditions.utilization, strict=True)},
    }


def request_from_state(
    layout: Layout,
    free_cpu_millicores: FloatArray,
    free_memory_bytes: FloatArray,
    slot_node: IntArray,
    target_ok: BoolArray,
    measured: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The REACH request a cluster in this state would send (pods named by :meth:`Layout.slot_name`).

    ``measured`` (e.g. from :func:`measured_from_conditions`) is added as the optional ``measured`` block.
    """
    nodes = {
        name: {
            "node_name": name,
            "cpu_availability": float(free_cpu_millicores[i]),
            "memory_availability": float(free_memory_bytes[i]) / BYTES_PER_GIB,
        }
        for i, name in enumerate(layout.node_names)
    }
    services: dict[str, Any] = {name: {"service_name": name, "pods": []} for name in layout.service_names}
    deployable: dict[str, list[str]] = {}
    for slot in np.flatnonzero(slot_node >= 0):
        pod = layout.slot_name(int(slot))
        service = layout.service_names[layout.slot_service[slot]]
        services[service]["pods"].append({"pod_name": pod, "node_name": layout.node_names[slot_node[slot]]})
        deployable[pod] = [layout.node_names[i] for i in np.flatnonzero(target_ok[slot])]
    request: dict[str, Any] = {"cluster_state": {"nodes": nodes, "services": services}, "pod_deployable": deployable}
    if measured is not None:
        request["measured"] = measured
    return request
