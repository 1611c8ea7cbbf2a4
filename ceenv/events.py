"""Mid-episode cluster events as pure state functions: node failure and traffic surge.

A node failure sets the free CPU and memory of the failed nodes to zero and evicts their pods; a
traffic surge raises a service's replica count. In both cases the pods that need a node are placed
the way the default Kubernetes scheduler would: filter the nodes allowed by the layer rule with room
for the pod's requests, score them by LeastAllocated (the mean of the free CPU and memory fractions
left after placing the pod) and take the best, the lowest node index on ties. A pod that fits
nowhere stays pending (its slot is emptied). The functions take a
:class:`ceenv.simulator.Simulator` in its pre-event state, never change it, and return the new
``(conditions, slot_node)``, ready for ``Simulator.reset_to`` or
``CloudEdgeEnv.reset(options={"state": ...})``. Used by the evaluation's node-failure and
traffic-surge families and their tests.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ceenv.latency import Conditions
from ceenv.layout import FloatArray, IntArray
from ceenv.simulator import Simulator


class EventError(ValueError):
    """An event cannot be applied to this state (for example a called service would lose every pod)."""


@dataclass(frozen=True)
class EventOutcome:
    """The state after an event and what the scheduler did."""

    conditions: Conditions
    slot_node: IntArray
    rescheduled_slots: tuple[int, ...]  # slots whose pod the scheduler placed (evicted or new)
    pending_slots: tuple[int, ...]  # slots whose pod fitted nowhere (now empty)


def schedule_pod(
    sim: Simulator, conditions: Conditions, service: int, free_cpu_millicores: FloatArray, free_memory_bytes: FloatArray
) -> int | None:
    """The node the default scheduler picks for a pod of ``service`` (LeastAllocated), or ``None``."""
    cpu = sim.request_cpu_millicores[service]
    memory = sim.request_memory_bytes[service]
    room = sim.layout.allowed[service] & (free_cpu_millicores >= cpu) & (free_memory_bytes >= memory)
    candidates = np.flatnonzero(room)
    if candidates.size == 0:
        return None
    total_cpu = np.maximum(conditions.cpu_millicores[candidates], 1.0)
    total_memory = np.maximum(conditions.memory_bytes[candidates], 1.0)
    score = (
        (free_cpu_millicores[candidates] - cpu) / total_cpu + (free_memory_bytes[candidates] - memory) / total_memory
    ) / 2
    return int(candidates[int(np.argmax(score))])


def _place(sim: Simulator, conditions: Conditions, slot_node: IntArray, slots: list[int]) -> EventOutcome:
    """Place the pods of ``slots`` (currently unplaced in ``slot_node``) one by one, in slot order."""
    layout = sim.layout
    occupied = slot_node >= 0
    counts = np.zeros((len(layout.service_names), layout.node_count))
    np.add.at(counts, (layout.slot_service[occupied], slot_node[occupied]), 1.0)
    free_cpu = conditions.cpu_millicores - sim.request_cpu_millicores @ counts
    free_memory = conditions.memory_bytes - sim.request_memory_bytes @ counts
    placed: list[int] = []
    pending: list[int] = []
    for slot in slots:
        service = int(layout.slot_service[slot])
        node = schedule_pod(sim, conditions, service, free_cpu, free_memory)
        if node is None:
            pending.append(slot)
            continue
        slot_node[slot] = node
        free_cpu[node] -= sim.request_cpu_millicores[service]
        free_memory[node] -= sim.request_memory_bytes[service]
        placed.append(slot)
    _check_called_services_placed(sim, slot_node)
    return EventOutcome(conditions, slot_node, tuple(placed), tuple(pending))


def _check_called_services_placed(sim: Simulator, slot_node: IntArray) -> None:
    layout = sim.layout
    for s, called in enumerate(sim.model.called_services):
        slots = np.flatnonzero(layout.slot_service == s)
        if called and not (slot_node[slots] >= 0).any():
            raise EventError(
                f"service {layout.service_names[s]!r} has no pod left after the event and no node has room for one; "
                "fail fewer or other nodes"
            )


def fail_nodes(sim: Simulator, nodes: tuple[int, ...]) -> EventOutcome:
    """Nodes ``nodes`` lose all capacity; their pods are evicted and re-placed by the default scheduler."""
    layout = sim.layout
    for node in nodes:
        if not 0 <= node < layout.node_count:
            raise EventError(f"node index {node} is outside 0..{layout.node_count - 1}")
        if layout.node_layers[node] == "client":
            raise EventError(f"node {layout.node_names[node]!r} is a client node; fail a cloud or edge node")
    failed = np.zeros(layout.node_count, dtype=bool)
    failed[list(nodes)] = True
    conditions = replace(
        sim.conditions,
        cpu_millicores=np.where(failed, 0.0, sim.conditions.cpu_millicores),
        memory_bytes=np.where(failed, 0.0, sim.conditions.memory_bytes),
    )
    slot_node = sim.slot_node.copy()
    evicted = [int(s) for s in np.flatnonzero((slot_node >= 0) & failed[np.maximum(slot_node, 0)])]
    slot_node[evicted] = -1
    return _place(sim, conditions, slot_node, evicted)


def surge_service(sim: Simulator, service: str, extra_replicas: int) -> EventOutcome:
    """``service`` gains up to ``extra_replicas`` pods (bounded by its slots), placed by the default scheduler."""
    layout = sim.layout
    if service not in layout.service_names:
        raise EventError(f"unknown service {service!r}; the scenario has {list(layout.service_names)}")
    if extra_replicas < 1:
        raise EventError(f"extra_replicas must be >= 1, got {extra_replicas}")
    s = layout.service_names.index(service)
    empty = [int(slot) for slot in np.flatnonzero((layout.slot_service == s) & (sim.slot_node < 0))]
    return _place(sim, sim.conditions, sim.slot_node.copy(), empty[:extra_replicas])


def draw_failed_nodes(sim: Simulator, rng: np.random.Generator, count: int) -> tuple[int, ...]:
    """``count`` distinct non-client nodes that host at least one pod, drawn uniformly."""
    layout = sim.layout
    hosting = np.zeros(layout.node_count, dtype=bool)
    hosting[sim.slot_node[sim.slot_node >= 0]] = True
    eligible = np.flatnonzero(hosting & (np.array(layout.node_layers) != "client"))
    if eligible.size < count:
        raise EventError(f"only {eligible.size} non-client nodes host pods, cannot fail {count}")
    return tuple(int(n) for n in np.sort(rng.choice(eligible, size=count, replace=False)))
