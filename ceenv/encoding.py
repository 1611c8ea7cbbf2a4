"""The one encoder: observation, action mask and action index, for the env and the service alike.

The node/slot :class:`Layout` fixes the order of nodes and pod slots a policy was trained on; it is
saved with the model (``Layout.to_dict``) and checked when a service starts. :func:`observe`,
:func:`move_mask` and :func:`decode_action` are the only code that builds observations, masks and
action indices; the env calls them on its state and the policy service calls them on the state
decoded from a REACH request by :func:`state_from_request`, so the two cannot drift apart (a golden
test compares them).

Observation version 1 (all float32 in [0, 1]): free CPU per node / the node's largest CPU
availability; free memory per node / its largest memory availability; then, for every slot, a
one-hot of ``N + 1`` entries (index 0 = empty slot, ``1 + n`` = on node ``n``).

Observation version 2 appends two blocks computed from the same placement: for
every service, the fraction of its pods on each node (``S * N`` entries; the weights ``W`` through
which replicas enter the latency formula, MODEL.md §2), then each service's pod count / its slots
(``S`` entries). A layout carries its version, so a policy trained on version 1 is still served
with version-1 observations.

Observation version 3 (the default) appends, to version 2, one entry per move action (``N * P``, in action
order): the latency the move would save under the scenario's *nominal* network conditions, as a
fraction of the current nominal latency, clipped to [-1, 1]; 0 for an invalid move. It is the
simulator's own one-step look-ahead, computed by :func:`move_gain_features` from the placement and
the scenario and workload saved with the model, so the env and the service compute it alike; the
policy learns when to follow it and when to plan past it. Its entries may be negative.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ceenv.latency import CallCosts, LatencyModel
from ceenv.scenario import Scenario
from ceenv.schema import ActionRequest

OBSERVATION_VERSION = 3
SUPPORTED_OBSERVATION_VERSIONS = (1, 2, 3)
GIB = float(2**30)

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class PayloadError(ValueError):
    """A request does not fit the model's layout; the message names the offending item."""


@dataclass(frozen=True)
class Layout:
    """Node order, slot order and scales a policy is trained for; saved with the model."""

    node_names: tuple[str, ...]
    node_layers: tuple[str, ...]
    node_cpu_scale_millicores: tuple[float, ...]
    node_memory_scale_bytes: tuple[float, ...]
    service_names: tuple[str, ...]
    service_slots: tuple[int, ...]
    service_movable: tuple[bool, ...]
    service_allowed: tuple[tuple[bool, ...], ...]  # (S, N) layer rule
    version: int = OBSERVATION_VERSION
    slot_service: IntArray = field(init=False, repr=False, compare=False)
    slot_replica: IntArray = field(init=False, repr=False, compare=False)
    slot_movable: BoolArray = field(init=False, repr=False, compare=False)
    allowed: BoolArray = field(init=False, repr=False, compare=False)
    _onehot_base: IntArray = field(init=False, repr=False, compare=False)
    _cpu_scale: FloatArray = field(init=False, repr=False, compare=False)
    _memory_scale: FloatArray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.version not in SUPPORTED_OBSERVATION_VERSIONS:
            raise ValueError(
                f"observation version {self.version} is not supported; this reach builds versions "
                f"{list(SUPPORTED_OBSERVATION_VERSIONS)}"
            )
        slot_service = np.repeat(np.arange(len(self.service_names)), self.service_slots).astype(np.int64)
        slot_replica = np.concatenate([np.arange(k) for k in self.service_slots]).astype(np.int64)
        n = len(self.node_names)
        derived = {
            "slot_service": slot_service,
            "slot_replica": slot_replica,
            "slot_movable": np.array(self.service_movable, dtype=bool)[slot_service],
            "allowed": np.array(self.service_allowed, dtype=bool).reshape(len(self.service_names), n),
            "_onehot_base": (2 * n + np.arange(len(slot_service)) * (n + 1) + 1).astype(np.int64),
            "_cpu_scale": np.array(self.node_cpu_scale_millicores, dtype=np.float64),
            "_memory_scale": np.array(self.node_memory_scale_bytes, dtype=np.float64),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)

    @property
    def node_count(self) -> int:
        return len(self.node_names)

    @property
    def slot_count(self) -> int:
        return len(self.slot_service)

    @property
    def action_count(self) -> int:
        """``N * P`` moves plus STOP."""
        return self.node_count * self.slot_count + 1

    @property
    def stop_action(self) -> int:
        return self.node_count * self.slot_count

    @property
    def observation_size(self) -> int:
        size = 2 * self.node_count + self.slot_count * (self.node_count + 1)
        if self.version >= 2:
            size += len(self.service_names) * (self.node_count + 1)
        if self.version >= 3:
            size += self.node_count * self.slot_count
        return size

    @property
    def observation_low(self) -> float:
        """Lower bound of every observation entry (move gains can be negative from version 3)."""
        return -1.0 if self.version >= 3 else 0.0

    @property
    def needs_move_gains(self) -> bool:
        """Whether :func:`observe` needs :func:`move_gain_features` (version 3 and later)."""
        return self.version >= 3

    def slot_name(self, slot: int) -> str:
        """A stable pod name for a slot, used when a payload is built from simulator state."""
        return f"{self.service_names[self.slot_service[slot]]}-{self.slot_replica[slot]}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, stored in the model's metadata."""
        return {
            "version": self.version,
            "node_names": list(self.node_names),
            "node_layers": list(self.node_layers),
            "node_cpu_scale_millicores": list(self.node_cpu_scale_millicores),
            "node_memory_scale_bytes": list(self.node_memory_scale_bytes),
            "service_names": list(self.service_names),
            "service_slots": list(self.service_slots),
            "service_movable": list(self.service_movable),
            "service_allowed": [list(row) for row in self.service_allowed],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Layout:
        return cls(
            node_names=tuple(data["node_names"]),
            node_layers=tuple(data["node_layers"]),
            node_cpu_scale_millicores=tuple(float(x) for x in data["node_cpu_scale_millicores"]),
            node_memory_scale_bytes=tuple(float(x) for x in data["node_memory_scale_bytes"]),
            service_names=tuple(data["service_names"]),
            service_slots=tuple(int(x) for x in data["service_slots"]),
            service_movable=tuple(bool(x) for x in data["service_movable"]),
            service_allowed=tuple(tuple(bool(x) for x in row) for row in data["service_allowed"]),
            version=int(data["version"]),
        )

    def fingerprint(self) -> str:
        """A short hash of the layout, to check a model against the code and the cluster."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def layout_from_scenario(scenario: Scenario, version: int = OBSERVATION_VERSION) -> Layout:
    """The layout of a scenario: its node order, its slots, its nominal capacities as scales."""
    return Layout(
        node_names=scenario.node_names,
        node_layers=tuple(n.layer for n in scenario.nodes),
        node_cpu_scale_millicores=tuple(float(round(n.nominal_cpu_cores * 1000)) for n in scenario.nodes),
        node_memory_scale_bytes=tuple(float(round(n.nominal_memory_bytes)) for n in scenario.nodes),
        service_names=scenario.service_names,
        service_slots=tuple(s.max_replica for s in scenario.services),
        service_movable=tuple(s.movable for s in scenario.services),
        service_allowed=tuple(tuple(s.allowed_on(n) for n in scenario.nodes) for s in scenario.services),
        version=version,
    )


def observe(
    layout: Layout,
    free_cpu_millicores: FloatArray,
    free_memory_bytes: FloatArray,
    slot_node: IntArray,
    move_gains: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]:
    """The observation of a state (see the module docstring for the layout of the vector).

    ``move_gains`` (from :func:`move_gain_features`) is required from version 3 and ignored before.
    """
    n = layout.node_count
    obs = np.zeros(layout.observation_size, dtype=np.float32)
    # Free resources are never negative (the env keeps them so, the schema rejects it); a node
    # bigger than the one trained on is capped at 1 rather than leaving the observation space.
    np.minimum(free_cpu_millicores / layout._cpu_scale, 1.0, out=obs[:n], casting="unsafe")
    np.minimum(free_memory_bytes / layout._memory_scale, 1.0, out=obs[n : 2 * n], casting="unsafe")
    obs[layout._onehot_base + slot_node] = 1.0
    if layout.version >= 2:
        services = len(layout.service_names)
        counts = placement_counts(layout, slot_node)
        pods = counts.sum(axis=1)
        start = 2 * n + layout.slot_count * (n + 1)
        obs[start : start + services * n] = (counts / np.maximum(pods, 1)[:, None]).ravel()
        obs[start + services * n : start + services * (n + 1)] = pods / np.array(layout.service_slots)
    if layout.needs_move_gains:
        if move_gains is None:
            raise ValueError(f"observation version {layout.version} needs move_gains (see move_gain_features)")
        obs[-n * layout.slot_count :] = move_gains
    return obs


def placement_counts(layout: Layout, slot_node: IntArray) -> FloatArray:
    """``(S, N)`` pods of each service on each node: the ``counts`` the latency model takes."""
    services, n = len(layout.service_names), layout.node_count
    occupied = slot_node >= 0
    flat = np.bincount(layout.slot_service[occupied] * n + slot_node[occupied], minlength=services * n)
    counts: FloatArray = flat.reshape(services, n).astype(np.float64)
    return counts


def move_gain_features(
    layout: Layout, model: LatencyModel, costs: CallCosts, slot_node: IntArray, mask: BoolArray
) -> npt.NDArray[np.float32]:
    """Per move action: (latency now - latency after the move) / latency now under ``costs``, in [-1, 1].

    Invalid moves get 0. Pods of one service on one node are interchangeable, so each distinct
    (service, source, target) move is evaluated once, all in one batch.
    """
    n, slots = layout.node_count, layout.slot_count
    gains = np.zeros(n * slots, dtype=np.float32)
    counts = placement_counts(layout, slot_node)
    if not counts.sum(axis=1)[model.called_services].all():
        return gains  # the formula needs a pod of every called service
    actions = np.flatnonzero(mask[:-1])
    if actions.size == 0:
        return gains
    action_slot, target = actions % slots, actions // slots
    service, source = layout.slot_service[action_slot], slot_node[action_slot]
    keys = (service * n + source) * n + target
    distinct, inverse = np.unique(keys, return_inverse=True)
    d_service, rest = np.divmod(distinct, n * n)
    d_source, d_target = np.divmod(rest, n)
    batch: FloatArray = np.repeat(counts[None], distinct.size, axis=0)
    index = np.arange(distinct.size)
    batch[index, d_service, d_source] -= 1.0
    batch[index, d_service, d_target] += 1.0
    now = model.latency(counts, costs)
    after = model.latency_batch(batch, costs)
    gains[actions] = np.clip((now - after) / max(now, 1e-9), -1.0, 1.0)[inverse]
    return gains


def move_mask(layout: Layout, slot_node: IntArray, target_ok: BoolArray) -> BoolArray:
    """Valid actions: a pod in the slot, movable, another node, and ``target_ok[slot, node]``.

    ``target_ok`` (P, N) is the capacity and layer rule: the simulator derives it from free
    resources, the service from ``pod_deployable``. STOP (the last action) is always valid.
    """
    n, slots = layout.node_count, layout.slot_count
    mask = np.empty(n * slots + 1, dtype=bool)
    moves = mask[:-1].reshape(n, slots)
    movable = (slot_node >= 0) & layout.slot_movable
    np.logical_and(target_ok.T, movable, out=moves)
    movable_slots = np.flatnonzero(movable)
    moves[slot_node[movable_slots], movable_slots] = False  # a move must change the node
    mask[-1] = True
    return mask


def decode_action(layout: Layout, action: int) -> tuple[int, int] | None:
    """Action index → ``(slot, node)``, or ``None`` for STOP."""
    if not 0 <= action < layout.action_count:
        raise ValueError(f"action {action} is outside 0..{layout.action_count - 1}")
    if action == layout.stop_action:
        return None
    return action % layout.slot_count, action // layout.slot_count


def encode_action(layout: Layout, slot: int, node: int) -> int:
    """``(slot, node)`` → action index."""
    return node * layout.slot_count + slot


@dataclass(frozen=True)
class DecodedState:
    """A REACH request mapped onto a layout: what :func:`observe` and :func:`move_mask` need."""

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
        cpu[i], memory[i], present[i] = node.cpu_availability, node.memory_availability * GIB, True
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
            "memory_availability": float(free_memory_bytes[i]) / GIB,
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
