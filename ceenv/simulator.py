"""The state of one cloud-edge cluster and the operations on it: the env's pure core.

:class:`Simulator` holds one draw of the conditions, the placement of every pod slot, the free
resources left by the pods and the current latency. It moves pods, answers which moves are valid
and what a move would do to the latency. The Gymnasium env is a thin shell around it; the
baselines, the best-known search and the evaluation use it directly. All arrays are plain numpy;
nothing here validates input (that happens at the edges, :mod:`ceenv.placement`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ceenv.gains import costs_form
from ceenv.latency import Conditions, LatencyModel, build_network
from ceenv.layout import BoolArray, FloatArray, IntArray, Layout, canonical_slots
from ceenv.observation import encode_state, move_mask
from ceenv.observation_v4 import observe_v4_batch
from ceenv.selected_kernel import distinct_moves, fitting_move_mask

# The rescheduling cost λ of one migration (MODEL.md §3): the env's step cost, greedy's minimum
# gain and the training default all use this one value.
DEFAULT_STEP_COST_MS = 1.25

# Integer-valued millicores and bytes are exact in float64; the tolerance only absorbs
# capacities that the wire payload delivered in GiB.
_FIT_TOLERANCE = 1e-6


class Simulator:
    """Conditions + placement + latency. ``slot_node[p]`` is the node of slot ``p`` (-1 = empty)."""

    def __init__(self, model: LatencyModel, layout: Layout, conditions: Conditions, slot_node: IntArray) -> None:
        self.model = model
        self.layout = layout
        services = model.scenario.services
        self.request_cpu_millicores: FloatArray = np.array([s.cpu_millicores for s in services])
        self.request_memory_bytes: FloatArray = np.array([round(s.memory_bytes) for s in services], dtype=float)
        self.reset_to(conditions, slot_node)

    def reset_to(self, conditions: Conditions, slot_node: IntArray) -> None:
        """Replace conditions and placement; recompute everything derived from them."""
        layout = self.layout
        self.conditions = conditions
        self.network = build_network(self.model.scenario, conditions)
        self.costs = self.model.prepare(self.network)
        # What the policy may know of the network (the interface of issue 14): the nominal costs
        # unless the env reports measured conditions (CloudEdgeEnv(measured_conditions=True) sets
        # it after every reset). Greedy and the reward keep using the true ``costs``.
        self.known_costs = self.model.nominal_costs()
        self._mask: BoolArray | None = None
        self._observation: npt.NDArray[np.float32] | None = None  # version 4: reused, static entries kept
        self.slot_node = np.asarray(slot_node, dtype=np.int64).copy()
        if layout.padded:  # observation version 4 sees pods in canonical order (by node within a service)
            self.slot_node = self.slot_node[canonical_slots(layout, self.slot_node)]
        counts = np.zeros((len(layout.service_names), layout.node_count))
        occupied = self.slot_node >= 0
        np.add.at(counts, (layout.slot_service[occupied], self.slot_node[occupied]), 1.0)
        self.counts = counts
        self.free_cpu_millicores = conditions.cpu_millicores - self.request_cpu_millicores @ counts
        self.free_memory_bytes = conditions.memory_bytes - self.request_memory_bytes @ counts
        self.latency_ms = self.model.latency(counts, self.costs)

    def copy(self) -> Simulator:
        clone = object.__new__(type(self))  # a subclass (bento.planning.ServedTwin) stays itself
        clone.__dict__.update(self.__dict__)
        clone.slot_node = self.slot_node.copy()
        clone._observation = None
        clone.counts = self.counts.copy()
        clone.free_cpu_millicores = self.free_cpu_millicores.copy()
        clone.free_memory_bytes = self.free_memory_bytes.copy()
        return clone

    # --- what is allowed -------------------------------------------------------------------
    def fits(self) -> BoolArray:
        """``(S, N)``: a pod of service s would fit on node n now (layer rule and free resources)."""
        cpu_ok = self.free_cpu_millicores[None, :] + _FIT_TOLERANCE >= self.request_cpu_millicores[:, None]
        memory_ok = self.free_memory_bytes[None, :] + _FIT_TOLERANCE >= self.request_memory_bytes[:, None]
        result: BoolArray = self.layout.allowed & cpu_ok & memory_ok
        return result

    def target_ok(self) -> BoolArray:
        """``(P, N)``: the capacity and layer rule per slot, the input of :func:`move_mask`."""
        result: BoolArray = self.fits()[self.layout.slot_service]
        return result

    @classmethod
    def move_rules(cls, sims: Sequence[Simulator]) -> tuple[BoolArray, BoolArray]:
        """:meth:`Simulator.target_ok` of several simulators of this class at once, per service: ``(B, S, N)`` and ``(B, P)``.

        ``target_ok`` of ``sims[b]`` is ``services[b][slot_service]`` with the rows of slots where
        ``slots[b]`` is False cleared. A class that overrides :meth:`Simulator.target_ok` overrides this too
        (:class:`bento.planning.ServedTwin`); one that overrides only ``target_ok`` is asked slot by
        slot (:func:`distinct_move_arrays`). One batched pass of the capacity rule for a planner's
        beam, where a dozen per-slot ``(P, N)`` tables were a tenth of a decision at the limits.
        """
        first = sims[0]
        free_cpu = np.stack([sim.free_cpu_millicores for sim in sims])[:, None, :]
        free_memory = np.stack([sim.free_memory_bytes for sim in sims])[:, None, :]
        services: BoolArray = (
            first.layout.allowed
            & (free_cpu + _FIT_TOLERANCE >= first.request_cpu_millicores[None, :, None])
            & (free_memory + _FIT_TOLERANCE >= first.request_memory_bytes[None, :, None])
        )
        return services, np.ones((len(sims), first.layout.slot_count), dtype=bool)

    def action_mask(self) -> BoolArray:
        """Valid actions now (cached until the placement changes; do not modify the result)."""
        if self._mask is None:
            if type(self).target_ok is Simulator.target_ok:  # the capacity and layer rule: one compiled pass
                layout = self.layout
                self._mask = fitting_move_mask(
                    self.slot_node, layout.slot_service, layout.slot_movable, layout.allowed,
                    self.free_cpu_millicores, self.free_memory_bytes, self.request_cpu_millicores,
                    self.request_memory_bytes, _FIT_TOLERANCE,
                )  # fmt: skip
            else:  # a subclass's own rules (bento.planning.ServedTwin)
                self._mask = move_mask(self.layout, self.slot_node, self.target_ok())
        return self._mask

    def observation(self) -> npt.NDArray[np.float32]:
        # Versions <= 3 see the nominal network (they were trained on it); version 4 sees known_costs.
        if self.layout.padded:  # the same encoder as encode_state's, rewriting only the dynamic entries
            observation = observe_v4_batch(
                self.layout,
                self.model,
                self.known_costs.matrices,
                self.free_cpu_millicores[None],
                self.free_memory_bytes[None],
                self.slot_node[None],
                self.action_mask()[None],
                out=self._observation,
                counts=self.counts[None],
                form=costs_form(self.model, self.known_costs),
            )
            self._observation = observation
            result: npt.NDArray[np.float32] = observation[0].copy()
            return result
        return encode_state(
            self.layout,
            self.model,
            self.known_costs if self.layout.padded else self.model.nominal_costs(),
            self.free_cpu_millicores,
            self.free_memory_bytes,
            self.slot_node,
            self.action_mask(),
        )

    # --- changing the placement --------------------------------------------------------------
    def move(self, slot: int, node: int, latency_ms: float | None = None) -> float:
        """Move the pod in ``slot`` to ``node`` (the caller checked the mask); return the new latency.

        ``latency_ms``: the latency after this move when the caller has already computed it (a
        search that evaluated every candidate move, :func:`ceenv.search.expand`); it is taken as is, so it
        may differ from :meth:`LatencyModel.latency` of the new placement by rounding (1e-9 ms).
        """
        source = int(self.slot_node[slot])
        service = int(self.layout.slot_service[slot])
        cpu, memory = self.request_cpu_millicores[service], self.request_memory_bytes[service]
        self._mask = None
        self.slot_node[slot] = node
        self.counts[service, source] -= 1.0
        self.counts[service, node] += 1.0
        self.free_cpu_millicores[source] += cpu
        self.free_cpu_millicores[node] -= cpu
        self.free_memory_bytes[source] += memory
        self.free_memory_bytes[node] -= memory
        if self.layout.padded:
            self.slot_node = self.slot_node[canonical_slots(self.layout, self.slot_node)]
        self.latency_ms = self.model.latency(self.counts, self.costs) if latency_ms is None else latency_ms
        return self.latency_ms

    def distinct_moves(self, action_mask: BoolArray | None = None) -> list[tuple[int, int]]:
        """Valid moves with duplicates removed: pods of one service on one node are interchangeable.

        ``action_mask`` replaces the simulator's own mask (a served request's ``pod_deployable``).
        """
        moves = self.distinct_move_array(action_mask)
        return list(zip(moves[:, 0].tolist(), moves[:, 1].tolist(), strict=True))

    def distinct_move_array(self, action_mask: BoolArray | None = None) -> IntArray:
        """:meth:`Simulator.distinct_moves` as a ``(K, 2)`` array of ``(slot, target node)`` rows, in mask order.

        Each kind of move (service, source node, target node) is represented by its first valid slot.
        """
        n = self.layout.node_count
        if action_mask is None:
            # The simulator's own mask treats every pod of one service on one node alike (capacity and
            # layer rules are per service), so the first slot of each (service, node) stands for all.
            occupied = np.flatnonzero(self.slot_node >= 0)
            kinds = self.layout.slot_service[occupied] * n + self.slot_node[occupied]
            first_slots = np.zeros(self.layout.slot_count, dtype=bool)
            first_slots[occupied[np.unique(kinds, return_index=True)[1]]] = True
            nodes, slots = np.nonzero(self.action_mask()[:-1].reshape(n, self.layout.slot_count) & first_slots)
            return np.stack([slots, nodes], axis=1).astype(np.int64)
        nodes, slots = np.nonzero(action_mask[:-1].reshape(n, self.layout.slot_count))
        keys = (self.layout.slot_service[slots] * n + self.slot_node[slots]) * n + nodes
        first = np.sort(np.unique(keys, return_index=True)[1])  # the first move of each kind, in mask order
        result: IntArray = np.stack([slots[first], nodes[first]], axis=1).astype(np.int64)
        return result

    def latency_after(self, moves: list[tuple[int, int]]) -> FloatArray:
        """Latency after each single move (evaluated together, nothing is changed)."""
        if not moves:
            return np.zeros(0)
        batch = np.repeat(self.counts[None], len(moves), axis=0)
        index = np.arange(len(moves))
        slots = np.array([m[0] for m in moves])
        targets = np.array([m[1] for m in moves])
        services = self.layout.slot_service[slots]
        batch[index, services, self.slot_node[slots]] -= 1.0
        batch[index, services, targets] += 1.0
        return self.model.latency_batch(batch, self.costs)

    def placement(self) -> dict[str, list[str]]:
        """Service → node names of its pods, the format of ``placement.json``."""
        result: dict[str, list[str]] = {name: [] for name in self.layout.service_names}
        for slot in np.flatnonzero(self.slot_node >= 0):
            service = self.layout.service_names[self.layout.slot_service[slot]]
            result[service].append(self.layout.node_names[self.slot_node[slot]])
        return result


def distinct_move_arrays(sims: list[Simulator]) -> list[IntArray]:
    """``[sim.distinct_move_array() for sim in sims]`` of simulators sharing one layout, from one compiled pass.

    A planner's beam (:func:`ceenv.search.expand`) asks this of a dozen placements per depth; one
    at a time, or as one batch of numpy operations (until 2026-12-02), the masks, the first slot of
    each kind and the nonzero scan cost more than the moves' latencies on a large cluster. Each
    simulator's own rules decide its moves (:meth:`Simulator.target_ok`, a subclass's included), in
    :func:`ceenv.observation.move_mask`'s way (:func:`ceenv.selected_kernel.distinct_moves`).
    """
    moves, sizes = distinct_moves_together(sims)
    return np.split(moves, np.cumsum(sizes)[:-1])


def distinct_moves_together(sims: list[Simulator]) -> tuple[IntArray, IntArray]:
    """:func:`distinct_move_arrays` one after another: ``(M, 2)`` rows of slot and target, and ``(B,)`` moves per state.

    Simulators of one class whose :meth:`Simulator.target_ok` comes with its :meth:`Simulator.move_rules`
    are asked per service in one batch; others per slot.
    """
    if len(sims) < 2 or any(sim.layout is not sims[0].layout for sim in sims):
        arrays = [sim.distinct_move_array() for sim in sims]
        sizes = np.array([len(rows) for rows in arrays], dtype=np.int64)
        return (np.concatenate(arrays) if arrays else np.zeros((0, 2), dtype=np.int64)), sizes
    layout = sims[0].layout
    kind = type(sims[0])
    if all(type(sim) is kind for sim in sims) and _rules_per_service(kind):
        rules, slot_ok = kind.move_rules(sims)
        rule_of_slot = layout.slot_service
    else:
        rules = np.stack([sim.target_ok() for sim in sims])
        slot_ok = np.ones((len(sims), layout.slot_count), dtype=bool)
        rule_of_slot = np.arange(layout.slot_count, dtype=np.int64)
    return distinct_moves(
        np.stack([sim.slot_node for sim in sims]),
        layout.slot_service,
        layout.slot_movable,
        rule_of_slot,
        rules,
        slot_ok,
        len(layout.service_names),
    )


def _rules_per_service(kind: type[Simulator]) -> bool:
    """The class's :meth:`Simulator.target_ok` and :meth:`Simulator.move_rules` are defined together (one is the other's)."""

    def owner(name: str) -> type:
        return next(base for base in kind.__mro__ if name in base.__dict__)

    return owner("target_ok") is owner("move_rules")
