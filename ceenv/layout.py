"""The node/slot layout a policy is trained for, and the placement in slot form.

A :class:`Layout` fixes the order of nodes and pod slots (MODEL.md §3: slots ordered by service,
then replica), the capacity scales of the observation, the layer rule per (service, node) and the
observation version; it is saved with the model (:meth:`Layout.to_dict`, :meth:`Layout.fingerprint`)
and checked when a service starts. :func:`placement_counts` turns a slot placement into the
``(S, N)`` pod counts that the latency model takes. From observation version 4 the layout also
declares padding limits (``max_nodes``, ``max_slots``), and :func:`canonical_slots` gives the pod
order that version sees (by node within each service). Used by the encoder (:mod:`ceenv.observation`),
the payload mapping (:mod:`ceenv.payload`), the simulator, the env, the artefact and the service.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from ceenv.scenario import Scenario

OBSERVATION_VERSION = 3
SUPPORTED_OBSERVATION_VERSIONS = (1, 2, 3, 4)
# Observation version 4 is padded to declared limits (nodes, pod slots) so that one policy serves
# every cluster within them: twice the largest reference size (19 nodes, 37 slots) fits.
DEFAULT_MAX_NODES = 40
DEFAULT_MAX_SLOTS = 80
# Entries per node, per pod slot and per (node, slot) pair in observation version 4.
NODE_FEATURES = 10
SLOT_FEATURES = 8
PAIR_FEATURES = 5
BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Layout:
    """Node order, slot order and scales a policy is trained for; saved with the model.

    The derived sizes (``node_count`` … ``observation_size``) are computed on first use and kept (every
    field is frozen; an env step asks for them about 30 times); ``dataclasses.replace`` gives a layout
    that computes its own.
    """

    node_names: tuple[str, ...]
    node_layers: tuple[str, ...]
    node_cpu_scale_millicores: tuple[float, ...]
    node_memory_scale_bytes: tuple[float, ...]
    service_names: tuple[str, ...]
    service_slots: tuple[int, ...]
    service_movable: tuple[bool, ...]
    service_allowed: tuple[tuple[bool, ...], ...]  # (S, N) layer rule
    version: int = OBSERVATION_VERSION
    max_nodes: int = 0  # version 4: the padded node count (0 = unpadded, versions 1-3)
    max_slots: int = 0  # version 4: the padded slot count
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
        if self.version >= 4 and (self.max_nodes < len(self.node_names) or self.max_slots < sum(self.service_slots)):
            raise ValueError(
                f"the cluster has {len(self.node_names)} nodes and {sum(self.service_slots)} pod slots, more than the "
                f"observation's limits ({self.max_nodes} nodes, {self.max_slots} slots); use a policy with larger "
                "limits (max_nodes/max_slots) or a smaller cluster"
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

    @cached_property
    def node_count(self) -> int:
        return len(self.node_names)

    @cached_property
    def slot_count(self) -> int:
        return len(self.slot_service)

    @cached_property
    def padded(self) -> bool:
        """Version 4: observation and actions are padded to ``max_nodes`` x ``max_slots``."""
        return self.version >= 4

    @cached_property
    def action_nodes(self) -> int:
        """Nodes in the action index (``max_nodes`` when padded)."""
        return self.max_nodes if self.padded else self.node_count

    @cached_property
    def action_slots(self) -> int:
        """Slots in the action index: action ``node * action_slots + slot`` (``max_slots`` when padded)."""
        return self.max_slots if self.padded else self.slot_count

    @cached_property
    def action_count(self) -> int:
        """``N * P`` moves plus STOP (padded sizes from version 4)."""
        return self.action_nodes * self.action_slots + 1

    @cached_property
    def stop_action(self) -> int:
        return self.action_nodes * self.action_slots

    @cached_property
    def observation_size(self) -> int:
        if self.padded:
            return self.max_nodes * NODE_FEATURES + self.max_slots * SLOT_FEATURES + self.stop_action * PAIR_FEATURES
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
        """Whether :func:`ceenv.observation.observe` needs :func:`ceenv.observation.move_gain_features` (version 3 and later)."""
        return self.version >= 3

    def slot_name(self, slot: int) -> str:
        """A stable pod name for a slot, used when a payload is built from simulator state."""
        return f"{self.service_names[self.slot_service[slot]]}-{self.slot_replica[slot]}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, stored in the model's metadata (the limits only from version 4)."""
        data: dict[str, Any] = {
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
        if self.padded:
            data.update(max_nodes=self.max_nodes, max_slots=self.max_slots)
        return data

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
            max_nodes=int(data.get("max_nodes", 0)),
            max_slots=int(data.get("max_slots", 0)),
        )

    def fingerprint(self) -> str:
        """A short hash of the layout, to check a model against the code and the cluster."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def layout_from_scenario(
    scenario: Scenario,
    version: int = OBSERVATION_VERSION,
    max_nodes: int = DEFAULT_MAX_NODES,
    max_slots: int = DEFAULT_MAX_SLOTS,
) -> Layout:
    """The layout of a scenario: its node order, its slots, its nominal capacities as scales.

    ``max_nodes``/``max_slots`` are the padding limits of version 4 (ignored before).
    """
    return Layout(
        node_names=scenario.node_names,
        node_layers=tuple(n.layer for n in scenario.nodes),
        node_cpu_scale_millicores=tuple(n.nominal_cpu_millicores for n in scenario.nodes),
        node_memory_scale_bytes=tuple(float(round(n.nominal_memory_bytes)) for n in scenario.nodes),
        service_names=scenario.service_names,
        service_slots=tuple(s.max_replica for s in scenario.services),
        service_movable=tuple(s.movable for s in scenario.services),
        service_allowed=tuple(tuple(s.allowed_on(n) for n in scenario.nodes) for s in scenario.services),
        version=version,
        max_nodes=max_nodes if version >= 4 else 0,
        max_slots=max_slots if version >= 4 else 0,
    )


def placement_counts(layout: Layout, slot_node: IntArray) -> FloatArray:
    """``(S, N)`` pods of each service on each node: the ``counts`` the latency model takes."""
    services, n = len(layout.service_names), layout.node_count
    occupied = slot_node >= 0
    flat = np.bincount(layout.slot_service[occupied] * n + slot_node[occupied], minlength=services * n)
    counts: FloatArray = flat.reshape(services, n).astype(np.float64)
    return counts


def canonical_slots(layout: Layout, slot_node: IntArray) -> IntArray:
    """The slot order of observation version 4: within each service, pods sorted by node, empty slots last.

    Pods of one service on one node are interchangeable, so this is the same placement; making it
    the only order the policy sees makes every observation a function of the placement alone.
    Returns the permutation ``order`` with ``slot_node[order]`` canonical.
    """
    node_key = np.where(slot_node >= 0, slot_node, layout.node_count)
    order: IntArray = np.lexsort((node_key, layout.slot_service))
    return order
