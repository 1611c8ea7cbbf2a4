"""REACH requests ↔ simulator state on a layout: the wire payload of MODEL.md §4 in array form.

:func:`state_from_request` maps a request onto a :class:`ceenv.layout.Layout` (free resources,
the slot placement, ``pod_deployable`` as a ``(P, N)`` target matrix) or raises
:class:`PayloadError` naming the offending item; :func:`request_from_state` builds the request a
cluster in a given state would send. Used by the policy service, the greedy stand-in, the canary
of the redeploy flow, the benchmarks and the golden env-vs-service test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ceenv.layout import BoolArray, FloatArray, IntArray, Layout
from ceenv.schema import BYTES_PER_GIB, ActionRequest


class PayloadError(ValueError):
    """A request does not fit the model's layout; the message names the offending item."""


@dataclass(frozen=True)
class DecodedState:
    """A REACH request mapped onto a layout: what :func:`ceenv.observation.observe` and :func:`ceenv.observation.move_mask` need."""

    free_cpu_millicores: FloatArray
    free_memory_bytes: FloatArray
    slot_node: IntArray
    target_ok: BoolArray
    slot_pod: tuple[str, ...]  # pod name per slot, "" for an empty slot


def state_from_request(layout: Layout, request: ActionRequest) -> DecodedState:
    """Map a request onto the layout, or raise :class:`PayloadError` naming the offending item.

    Nodes of the layout that the request omits are treated as unavailable (no free capacity, no
    target). Pods fill their service's slots in the order the request lists them.
    """
    node_index = {name: i for i, name in enumerate(layout.node_names)}
    service_index = {name: i for i, name in enumerate(layout.service_names)}
    n, slots = layout.node_count, layout.slot_count
    cpu = np.zeros(n)
    memory = np.zeros(n)
    present = np.zeros(n, dtype=bool)
    for key, node in request.cluster_state.nodes.items():
        if key not in node_index:
            raise PayloadError(f"cluster_state.nodes: unknown node {key!r}; the model knows {list(layout.node_names)}")
        if node.node_name != key:
            raise PayloadError(f"cluster_state.nodes.{key}.node_name is {node.node_name!r}, expected {key!r}")
        i = node_index[key]
        cpu[i], memory[i], present[i] = node.cpu_availability, node.memory_availability * BYTES_PER_GIB, True
    slot_node = np.full(slots, -1, dtype=np.int64)
    slot_pod = [""] * slots
    first_slot = np.concatenate([[0], np.cumsum(layout.service_slots)[:-1]]).astype(int)
    pod_slot: dict[str, int] = {}
    for key, service in request.cluster_state.services.items():
        if key not in service_index:
            raise PayloadError(
                f"cluster_state.services: unknown service {key!r}; the model knows {list(layout.service_names)}"
            )
        s = service_index[key]
        if len(service.pods) > layout.service_slots[s]:
            raise PayloadError(
                f"cluster_state.services.{key}: {len(service.pods)} pods but the model has "
                f"{layout.service_slots[s]} slots for this service"
            )
        for r, pod in enumerate(service.pods):
            if pod.node_name not in node_index:
                raise PayloadError(f"pod {pod.pod_name!r} of service {key!r} runs on unknown node {pod.node_name!r}")
            if not present[node_index[pod.node_name]]:
                raise PayloadError(
                    f"pod {pod.pod_name!r} runs on node {pod.node_name!r}, which is missing from cluster_state.nodes"
                )
            if pod.pod_name in pod_slot:
                raise PayloadError(f"pod {pod.pod_name!r} is listed twice")
            slot = int(first_slot[s]) + r
            slot_node[slot], slot_pod[slot] = node_index[pod.node_name], pod.pod_name
            pod_slot[pod.pod_name] = slot
    target_ok = np.zeros((slots, n), dtype=bool)
    for pod_name, targets in request.pod_deployable.items():
        if pod_name not in pod_slot:
            raise PayloadError(f"pod_deployable: unknown pod {pod_name!r} (not in cluster_state.services)")
        slot = pod_slot[pod_name]
        for target in targets:
            if target not in node_index:
                raise PayloadError(f"pod_deployable.{pod_name}: unknown node {target!r}")
            i = node_index[target]
            target_ok[slot, i] = present[i]
    target_ok &= layout.allowed[layout.slot_service]
    return DecodedState(cpu, memory, slot_node, target_ok, tuple(slot_pod))


def request_from_state(
    layout: Layout,
    free_cpu_millicores: FloatArray,
    free_memory_bytes: FloatArray,
    slot_node: IntArray,
    target_ok: BoolArray,
) -> dict[str, Any]:
    """The REACH request a cluster in this state would send (pods named by :meth:`Layout.slot_name`)."""
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
    return {"cluster_state": {"nodes": nodes, "services": services}, "pod_deployable": deployable}
