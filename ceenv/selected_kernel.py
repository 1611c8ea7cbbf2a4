"""The compiled loop of :func:`ceenv.gains.latency_now_and_after_selected`: the latency after each listed move.

A move of one pod of service ``s`` changes the own cost of the calls to and from ``s`` only, so
only those calls and their ancestors in the call tree are re-run (:func:`ceenv.gains.service_program`
lists them per service, children first); every other call keeps its total in the move's state.
Done with numpy, service by service, that is a few thousand small array operations per batch of
moves (about 220 re-run calls over 25 services at the policy's limits), and their fixed cost was
most of a planned decision there (``docs/training.md``). Here one compiled loop runs over the
moves, each re-running its service's calls with scalars, in the same order of operations as the
move table's tree (``ceenv.gains._tree_table``) and the numpy loop it replaced, so the values are
the same bit for bit (``tests/ceenv/test_selected_kernel.py`` keeps that loop as the reference), and
equal to the full evaluation (:meth:`ceenv.latency.LatencyModel.latency_batch`) to rounding. No
fast-math: the sums are the IEEE ones numpy does.

Two smaller loops of the same beam step live here too, because numpy paid more in fixed costs
than in work for them: :func:`distinct_moves` (each beam state's distinct valid moves, one pass
over slots and nodes, for :func:`ceenv.simulator.distinct_move_arrays`) and :func:`lowest_per_segment`
(each state's ``count`` best moves, for :func:`ceenv.search.expand`). Both return exactly what the
numpy code they replaced returned (the tests compare them with it). :func:`own_costs_per_network`
gives the own cost of every call of a few placements under many networks (the planner's noise
charge, :meth:`ceenv.latency.LatencyModel.latency_per_network`) from the nodes that hold pods only:
a placement puts each service on a few of the nodes, so ``W_p · M_c · W_q`` needs a few entries of
``M_c``, where the matrix products read all of them. It sums the same products in another order, so
its values equal the products' to rounding (1 ulp here), not bit for bit, for finite matrices (where
a node has no bandwidth left, ``0 × inf`` makes the products NaN; the loop skips empty nodes).

More loops serve the env's step rather than the planner, for the same reason: an env step of
observation version 4 on 13-29 ran some 20 numpy operations on strided views of its 17,040-float
observation (:func:`_observe_v4_dynamic`, the dynamic entries, for
:func:`ceenv.observation_v4.observe_v4_batch`) and five more to turn a move table into features
(:func:`_table_gain_fractions`, for :func:`ceenv.observation.move_gain_features_batch`; where a
latency form serves, :func:`_form_gain_fractions` computes each valid move's entry from the form's
products without building the table, since 2026-12-03). They compute
each value as numpy did, in float64, rounded to float32 once, with numpy's division by zero and NaN
(``error_model="numpy"``), so the observations are the same bit for bit
(``tests/ceenv/test_observation_v4_kernel.py`` keeps the numpy code as the reference). Another,
:func:`_fitting_move_mask`, gives a simulator's own action mask (the fit, layer and move rules, for
:meth:`ceenv.simulator.Simulator.action_mask`) with the same comparisons as
:func:`ceenv.observation.move_mask`. All four check their shapes and indices themselves and return
a status, because a dozen checks in Python cost more than the loops.

Compiled with numba on first use (about 4 s here for the move loop, once; cached on disk beside this
file, or in numba's user cache where that is not writable), so importing :mod:`ceenv` stays cheap.
Pure: arrays in, arrays out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from ceenv.layout import (  # not ceenv.latency's: it imports this module
    NODE_FEATURES,
    PAIR_FEATURES,
    SLOT_FEATURES,
    BoolArray,
    FloatArray,
    IntArray,
)

Float32Array = npt.NDArray[np.float32]

TO_SERVICE, SELF_CALL, BY_SERVICE = 1, 2, 4  # bits of a step's flags (ceenv.gains.service_program)

_compiled: dict[str, Any] = {}  # function name -> its numba dispatcher, once compiled() ran for it
# numba's options beyond cache and nogil, per function: the observation divides as numpy does (a zero
# divisor gives inf or NaN, not ZeroDivisionError), so that its values are numpy's in every case.
_OPTIONS: dict[str, dict[str, Any]] = {
    "_observe_v4_dynamic": {"error_model": "numpy"},
    "_table_gain_fractions": {"error_model": "numpy"},
    "_form_gain_fractions": {"error_model": "numpy"},
}


def _after_moves(
    own: FloatArray,  # (C, B) own cost per call and state
    before: FloatArray,  # (C, B) each call's total per state
    g: FloatArray,  # (C, B * N)
    h: FloatArray,  # (C, B * N)
    matrices: FloatArray,  # (1 or B, C, N, N): one network for all states, or one per state
    inv: FloatArray,  # (B, S) 1 / replicas
    state: IntArray,
    service: IntArray,
    source: IntArray,
    target: IntArray,
    nodes: int,
    step_start: IntArray,  # (S + 1,) each service's steps
    step_call: IntArray,
    step_flags: IntArray,
    group_start: IntArray,  # (steps + 1,) each step's parallel groups
    member_start: IntArray,  # (groups + 1,) each group's callees
    member_call: IntArray,
    member_changed: IntArray,
    root_start: IntArray,  # (S + 1,) each service's endpoints
    root_weight: FloatArray,
    root_call: IntArray,
    root_changed: IntArray,
    out: FloatArray,
) -> None:
    """``out[m]``: the application latency after move ``m``; the numpy version's arithmetic per move.

    The moves are taken service by service (a stable sort), and each step of the service's
    program runs over all of its moves before the next step: the moves are independent, so the
    inner loop pipelines, where one move at a time waited on each step's chain of sums.
    """
    services = step_start.shape[0] - 1
    begin = np.zeros(services + 1, dtype=np.int64)  # a stable counting sort of the moves by service
    for m in range(service.shape[0]):
        begin[service[m] + 1] += 1
    for s in range(services):
        begin[s + 1] += begin[s]
    order = np.empty(service.shape[0], dtype=np.int64)
    filled = begin[:-1].copy()
    for m in range(service.shape[0]):
        order[filled[service[m]]] = m
        filled[service[m]] += 1
    per_state = matrices.shape[0] > 1
    for s in range(services):
        count = begin[s + 1] - begin[s]
        if count == 0:
            continue
        block = order[begin[s] : begin[s + 1]]
        b = state[block]
        weight = np.empty(count)
        at_target = np.empty(count, dtype=np.int64)
        at_source = np.empty(count, dtype=np.int64)
        for i in range(count):
            weight[i] = inv[b[i], s]
            at_target[i] = b[i] * nodes + target[block[i]]
            at_source[i] = b[i] * nodes + source[block[i]]
        totals = np.empty((own.shape[0], count))
        value = np.empty(count)
        slowest = np.empty(count)
        elapsed = np.empty(count)
        for k in range(step_start[s], step_start[s + 1]):
            call, flags = step_call[k], step_flags[k]
            for i in range(count):
                value[i] = own[call, b[i]]
            if flags & TO_SERVICE:
                for i in range(count):
                    value[i] = value[i] + (g[call, at_target[i]] - g[call, at_source[i]]) * weight[i]
            if flags & BY_SERVICE:
                for i in range(count):
                    value[i] = value[i] + (h[call, at_target[i]] - h[call, at_source[i]]) * weight[i]
            if flags & SELF_CALL:
                for i in range(count):
                    a, t, grid = source[block[i]], target[block[i]], b[i] if per_state else 0
                    trip = matrices[grid, call, a, t] + matrices[grid, call, t, a]
                    value[i] = value[i] - trip * (weight[i] * weight[i])
            slowest[:] = 0.0
            for group in range(group_start[k], group_start[k + 1]):
                for j in range(member_start[group], member_start[group + 1]):
                    callee, changed, head = member_call[j], member_changed[j], j == member_start[group]
                    for i in range(count):
                        part = totals[callee, i] if changed else before[callee, b[i]]
                        elapsed[i] = part if head else elapsed[i] + part
                opening = group == group_start[k]
                for i in range(count):  # np.maximum: the larger, NaN wins
                    if opening or elapsed[i] > slowest[i] or elapsed[i] != elapsed[i]:
                        slowest[i] = elapsed[i]
            for i in range(count):
                totals[call, i] = value[i] + slowest[i]
        for i in range(count):
            latency = 0.0
            for r in range(root_start[s], root_start[s + 1]):
                root = root_call[r]
                latency = latency + root_weight[r] * (totals[root, i] if root_changed[r] else before[root, b[i]])
            out[block[i]] = latency


def _tree_totals(
    own: FloatArray,  # (C, B) own cost per call and state
    group_start: IntArray,  # (C + 1,) each call's parallel groups
    member_start: IntArray,  # (groups + 1,) each group's callees
    member_call: IntArray,
    out: FloatArray,  # (C, B) each call's total
) -> None:
    """:func:`ceenv.gains.tree_totals` of every state: the same sums and maxima in the same order, bit for bit."""
    batch = own.shape[1]
    for c in range(own.shape[0]):  # children precede parents
        for i in range(batch):
            slowest = 0.0
            for group in range(group_start[c], group_start[c + 1]):
                elapsed = out[member_call[member_start[group]], i]
                for j in range(member_start[group] + 1, member_start[group + 1]):
                    elapsed = elapsed + out[member_call[j], i]
                if group == group_start[c] or elapsed > slowest or elapsed != elapsed:  # np.maximum: NaN wins
                    slowest = elapsed
            out[c, i] = own[c, i] + slowest


def _distinct_moves(
    slot_node: IntArray,  # (B, P) node of each slot per state, -1 empty
    slot_service: IntArray,  # (P,)
    slot_movable: BoolArray,  # (P,)
    rule_of_slot: IntArray,  # (P,) the row of ``rules`` that a slot's pod follows
    rules: BoolArray,  # (B, R, N) each state's capacity, layer (and request) rules: per service or per slot
    slot_ok: BoolArray,  # (B, P) False: the slot's pod may not move at all in that state
    services: int,
    out: IntArray,  # (B * N * P, 2) rows of slot and target node
    sizes: IntArray,  # (B,) moves per state
) -> None:
    """Each state's distinct valid moves into ``out`` (state after state), in mask order (node, then slot).

    A move is valid as :func:`ceenv.observation.move_mask` says of ``target_ok[p] = rules[rule_of_slot[p]]``
    (cleared where ``slot_ok`` is False): the slot holds a movable pod, the target passes ``target_ok``
    and differs from the pod's node. The first slot of each (service, node) stands for its pods
    (they are interchangeable).
    """
    batch, slots = slot_node.shape
    nodes = rules.shape[2]
    first = np.zeros(slots, dtype=np.bool_)
    seen = np.full(services * nodes, -1, dtype=np.int64)  # the last state in which a (service, node) was met
    m = 0
    for b in range(batch):
        for p in range(slots):
            first[p] = False
            node = slot_node[b, p]
            if node >= 0:
                key = slot_service[p] * nodes + node
                if seen[key] != b:
                    seen[key] = b
                    first[p] = slot_movable[p] and slot_ok[b, p]
        start = m
        for n in range(nodes):
            for p in range(slots):
                if first[p] and rules[b, rule_of_slot[p], n] and slot_node[b, p] != n:
                    out[m, 0] = p
                    out[m, 1] = n
                    m += 1
        sizes[b] = m - start


def _lowest_per_segment(
    values: FloatArray,  # rounded, segment after segment
    sizes: IntArray,  # (K,) segment lengths
    count: int,
    out: IntArray,  # (K * count,) indices within their segment
    kept: IntArray,  # (K,) indices kept per segment
) -> None:
    """The first ``count`` indices of each segment's stable ascending sort (NaN last): an insertion into ``count`` slots."""
    best_value = np.empty(count)  # count >= 1
    best_index = np.empty(count, dtype=np.int64)
    start = 0
    m = 0
    for segment in range(sizes.shape[0]):
        held = 0
        for j in range(sizes[segment]):
            value = values[start + j]
            if held == count:  # full: only a value that sorts before the last one held enters
                last = best_value[held - 1]
                if value != value or not (value < last or last != last):
                    continue
                held -= 1
            k = held
            while k > 0:  # shift past the held values that it sorts before (equal ones stay first)
                previous = best_value[k - 1]
                if value == value and (value < previous or previous != previous):
                    best_value[k] = previous
                    best_index[k] = best_index[k - 1]
                    k -= 1
                else:
                    break
            best_value[k] = value
            best_index[k] = j
            held += 1
        for k in range(held):
            out[m] = best_index[k]
            m += 1
        kept[segment] = held
        start += sizes[segment]


def _fitting_move_mask(
    slot_node: IntArray,  # (P,) -1 for an empty slot
    slot_service: IntArray,  # (P,)
    slot_movable: BoolArray,  # (P,)
    allowed: BoolArray,  # (S, N) the layer rule
    free_cpu: FloatArray,  # (N,)
    free_memory: FloatArray,  # (N,)
    request_cpu: FloatArray,  # (S,)
    request_memory: FloatArray,  # (S,)
    tolerance: float,
    out: BoolArray,  # (N * P + 1,) node-major moves, then STOP
) -> int:
    """A simulator's valid actions: a movable pod, another node, the layer rule, and room (free + tolerance >= request).

    What :func:`ceenv.observation.move_mask` gives with a simulator's own ``target_ok``, the same
    comparisons in the same float64 arithmetic. Returns 0, or before writing anything 1 when the
    shapes do not fit together, 2 when a slot's node or service is out of range.
    """
    services, nodes = allowed.shape[0], allowed.shape[1]
    slots = slot_node.shape[0]
    if (
        slot_service.shape[0] != slots
        or slot_movable.shape[0] != slots
        or free_cpu.shape[0] != nodes
        or free_memory.shape[0] != nodes
        or request_cpu.shape[0] != services
        or request_memory.shape[0] != services
        or out.shape[0] != nodes * slots + 1
    ):
        return 1
    for p in range(slots):
        if slot_service[p] < 0 or slot_service[p] >= services or slot_node[p] >= nodes:
            return 2
    for n in range(nodes):
        cpu = free_cpu[n] + tolerance
        memory = free_memory[n] + tolerance
        for p in range(slots):
            s = slot_service[p]
            node = slot_node[p]
            out[n * slots + p] = (
                node >= 0
                and node != n
                and slot_movable[p]
                and allowed[s, n]
                and cpu >= request_cpu[s]
                and memory >= request_memory[s]
            )
    out[nodes * slots] = True
    return 0


def _table_gain_fractions(
    now: FloatArray,  # (B,) latency now
    delta: FloatArray,  # (B, S, N, N) latency change of moving one pod of s from a to t
    slot_service: IntArray,  # (P,)
    slot_node: IntArray,  # (B, P), -1 for an empty slot (read as node 0, as the table's gather does)
    mask: BoolArray,  # (B, >= N * P) valid moves, node-major
    out: Float32Array,  # (B, N * P) the move-gain features
) -> int:
    """Each valid move's latency change as a fraction of the latency now, clipped to ``[-1, 1]``, 0 elsewhere.

    ``delta[b, s(p), node(p), n] / -max(now[b], 1e-9)`` as numpy computes it (NaN kept through the
    maximum and the clip), rounded to float32 once. Returns 0, or before writing anything 1 when the
    shapes do not fit together, 2 when a slot's node or service is out of range.
    """
    batch, services, nodes = delta.shape[0], delta.shape[1], delta.shape[2]
    slots = slot_node.shape[1]
    if (
        delta.shape[3] != nodes
        or now.shape[0] != batch
        or slot_node.shape[0] != batch
        or slot_service.shape[0] != slots
        or mask.shape[0] != batch
        or mask.shape[1] < nodes * slots
        or out.shape[0] != batch
        or out.shape[1] != nodes * slots
    ):
        return 1
    for p in range(slots):
        if slot_service[p] < 0 or slot_service[p] >= services:
            return 2
        for b in range(batch):
            if slot_node[b, p] >= nodes:
                return 2
    for b in range(batch):
        floor = now[b]
        if floor < 1e-9:  # np.maximum(now, 1e-9); NaN stays NaN
            floor = 1e-9
        negative = -floor
        for n in range(nodes):
            for p in range(slots):
                entry = n * slots + p
                if not mask[b, entry]:
                    out[b, entry] = 0.0
                    continue
                fraction = delta[b, slot_service[p], max(slot_node[b, p], 0), n] / negative
                if fraction > 1.0:
                    fraction = 1.0
                if fraction < -1.0:
                    fraction = -1.0
                out[b, entry] = fraction
    return 0


def _form_gain_fractions(
    now: FloatArray,  # (B,) latency now
    coupled: FloatArray,  # (B, S * N) w K, numpy's product (ceenv.gains.form_terms)
    exec_weights: FloatArray,  # (S * N,) E of the form
    inv: FloatArray,  # (B, S) 1 / max(replicas, 1)
    self_blocks: FloatArray,  # (S, N, N) K's diagonal blocks
    slot_service: IntArray,  # (P,)
    slot_node: IntArray,  # (B, P), -1 for an empty slot (read as node 0, as the table's gather does)
    mask: BoolArray,  # (B, >= N * P) valid moves, node-major
    out: Float32Array,  # (B, N * P) the move-gain features
) -> int:
    """:func:`_table_gain_fractions` of the table that :func:`ceenv.gains._delta_from_form` builds, without building it.

    Each valid move's entry ``Δ[s, a, t] = (u[s, t] - u[s, a]) - K_s[a, t] · (1 / r_s)²`` with
    ``u[s, n] = (E[s, n] + (w K)[s, n]) / r_s`` is computed with the operations numpy applies to the
    whole table, in the same order, so the features are the same bit for bit; the matrix products
    stay numpy's. Returns 0, or before writing anything 1 when the shapes do not fit together, 2
    when a slot's node or service is out of range.
    """
    batch, services, nodes = coupled.shape[0], self_blocks.shape[0], self_blocks.shape[1]
    slots = slot_node.shape[1]
    if (
        self_blocks.shape[2] != nodes
        or coupled.shape[1] != services * nodes
        or exec_weights.shape[0] != services * nodes
        or now.shape[0] != batch
        or inv.shape[0] != batch
        or inv.shape[1] != services
        or slot_node.shape[0] != batch
        or slot_service.shape[0] != slots
        or mask.shape[0] != batch
        or mask.shape[1] < nodes * slots
        or out.shape[0] != batch
        or out.shape[1] != nodes * slots
    ):
        return 1
    for p in range(slots):
        if slot_service[p] < 0 or slot_service[p] >= services:
            return 2
        for b in range(batch):
            if slot_node[b, p] >= nodes:
                return 2
    for b in range(batch):
        floor = now[b]
        if floor < 1e-9:  # np.maximum(now, 1e-9); NaN stays NaN
            floor = 1e-9
        negative = -floor
        for n in range(nodes):
            for p in range(slots):
                entry = n * slots + p
                if not mask[b, entry]:
                    out[b, entry] = 0.0
                    continue
                s = slot_service[p]
                a = max(slot_node[b, p], 0)
                scale = inv[b, s]
                target = (exec_weights[s * nodes + n] + coupled[b, s * nodes + n]) * scale
                source = (exec_weights[s * nodes + a] + coupled[b, s * nodes + a]) * scale
                delta = target - source
                delta -= self_blocks[s, a, n] * (scale * scale)
                fraction = delta / negative
                if fraction > 1.0:
                    fraction = 1.0
                if fraction < -1.0:
                    fraction = -1.0
                out[b, entry] = fraction
    return 0


def _observe_v4_dynamic(
    out: Float32Array,  # (B, size) observation version 4, its static entries written: rewritten in place
    free_cpu: FloatArray,  # (B, N) millicores
    free_memory: FloatArray,  # (B, N) bytes
    cpu_scale: FloatArray,  # (N,)
    memory_scale: FloatArray,  # (N,)
    counts: FloatArray,  # (B, S, N) pods per service and node
    slot_node: IntArray,  # (B, P), -1 for an empty slot
    slot_service: IntArray,  # (P,)
    log_exec: FloatArray,  # (S, N)
    gains: Float32Array,  # (B, N * P) move-gain features, node-major
    mask: BoolArray,  # (B, >= N * P) valid moves, node-major (the STOP entry after them is not read)
    max_nodes: int,
    max_slots: int,
    node_features: int,
    slot_features: int,
    pair_features: int,
) -> int:
    """The dynamic entries of observation version 4 (``ceenv.observation_v4``), one state after another.

    Returns 0, or before writing anything 1 when the shapes do not fit together or the limits, 2 when
    a slot's node or service is out of range (the loop checks no bounds otherwise).

    Each value is computed in float64 as numpy computes it (the same divisions and products; the
    sums here add integer pod counts, exact in any order) and rounded to float32 once on storing, as
    numpy's assignment into the float32 array does; the free-resource fraction is clipped to
    ``[0, 1]`` with NaN kept, as ``np.clip`` does, and the used fraction is ``1 - free`` in float32.
    """
    batch, services, nodes = counts.shape
    slots = slot_node.shape[1]
    slot_start = max_nodes * node_features
    pair_start = slot_start + max_slots * slot_features
    if (
        out.shape[0] != batch
        or out.shape[1] != pair_start + max_nodes * max_slots * pair_features
        or free_cpu.shape[0] != batch
        or free_cpu.shape[1] != nodes
        or free_memory.shape[0] != batch
        or free_memory.shape[1] != nodes
        or cpu_scale.shape[0] != nodes
        or memory_scale.shape[0] != nodes
        or slot_node.shape[0] != batch
        or slot_service.shape[0] != slots
        or log_exec.shape[0] != services
        or log_exec.shape[1] != nodes
        or gains.shape[0] != batch
        or gains.shape[1] != nodes * slots
        or mask.shape[0] != batch
        or mask.shape[1] < nodes * slots
        or nodes > max_nodes
        or slots > max_slots
    ):
        return 1
    for p in range(slots):
        if slot_service[p] < 0 or slot_service[p] >= services:
            return 2
        for b in range(batch):
            if slot_node[b, p] >= nodes:
                return 2
    replicas = np.empty(services)
    for b in range(batch):
        total = 0.0
        for n in range(nodes):
            for s in range(services):
                total += counts[b, s, n]
        share = max(total, 1.0)
        for n in range(nodes):
            row = n * node_features
            cpu = free_cpu[b, n] / cpu_scale[n]
            if cpu < 0.0:
                cpu = 0.0
            elif cpu > 1.0:
                cpu = 1.0
            stored = np.float32(cpu)
            out[b, row + 3] = stored
            memory = free_memory[b, n] / memory_scale[n]
            if memory < 0.0:
                memory = 0.0
            elif memory > 1.0:
                memory = 1.0
            out[b, row + 4] = memory
            out[b, row + 5] = np.float32(1.0) - stored
            pods = 0.0
            for s in range(services):
                pods += counts[b, s, n]
            out[b, row + 9] = pods / share
        for s in range(services):
            held = 0.0
            for n in range(nodes):
                held += counts[b, s, n]
            replicas[s] = max(held, 1.0)
        for p in range(slots):
            node = slot_node[b, p]
            s = slot_service[p]
            occupied = 1.0 if node >= 0 else 0.0
            out[b, slot_start + p * slot_features + 7] = occupied * log_exec[s, max(node, 0)]
            for n in range(nodes):
                entry = pair_start + (n * max_slots + p) * pair_features
                out[b, entry] = gains[b, n * slots + p]
                out[b, entry + 1] = 1.0 if mask[b, n * slots + p] else 0.0
                out[b, entry + 2] = 1.0 if node == n else 0.0
                out[b, entry + 4] = counts[b, s, n] / replicas[s] * occupied
    return 0


def _own_costs_per_network(
    weights: FloatArray,  # (K, S, N) each placement's pods per node / replicas
    call_service: IntArray,  # (C,)
    call_parent: IntArray,  # (C,)
    call_exec: FloatArray,  # (C, N)
    matrices: FloatArray,  # (R, C, N, N) each network's per-call matrices
    out: FloatArray,  # (R, K, C)
) -> None:
    """``out[r, k, c] = Σ_m W_q[m] (Σ_n W_p[n] M_c[n, m] + exec_c[m])`` over the nodes holding pods of ``p`` and ``q``."""
    placements, services, nodes = weights.shape
    networks, calls = matrices.shape[0], matrices.shape[1]
    support = np.empty((services, nodes), dtype=np.int64)
    held = np.empty(services, dtype=np.int64)
    for k in range(placements):
        for s in range(services):
            h = 0
            for n in range(nodes):
                if weights[k, s, n] != 0.0:
                    support[s, h] = n
                    h += 1
            held[s] = h
        for r in range(networks):
            for c in range(calls):
                p, q = call_parent[c], call_service[c]
                total = 0.0
                for i in range(held[q]):
                    m = support[q, i]
                    reach = 0.0
                    for j in range(held[p]):
                        n = support[p, j]
                        reach += weights[k, p, n] * matrices[r, c, n, m]
                    total += weights[k, q, m] * (reach + call_exec[c, m])
                out[r, k, c] = total


def _run(function: Callable[..., Any], *arrays: Any) -> Any:
    """``function`` compiled (:func:`compiled`), called with ``arrays``; what it returns.

    A cache that cannot be written or read after all (numba raises OSError then, on the first call)
    leaves the function compiled without one.
    """
    try:
        return compiled(function)(*arrays)
    except OSError:
        from numba import njit

        _compiled[function.__name__] = njit(nogil=True, **_OPTIONS.get(function.__name__, {}))(function)
        return _compiled[function.__name__](*arrays)


def after_moves(*arrays: Any) -> None:
    """:func:`_after_moves`, compiled with numba on the first call of the process (:func:`compiled`)."""
    _run(_after_moves, *arrays)


def compiled_tree_totals(
    own: FloatArray, group_start: IntArray, member_start: IntArray, member_call: IntArray
) -> FloatArray:
    """Each call's total per state ``(C, B)`` from the own costs ``(C, B)`` (:func:`_tree_totals`)."""
    out = np.empty(own.shape)
    _run(
        _tree_totals,
        np.require(own, np.float64, ["C", "W"]),
        *(np.require(x, np.int64, ["C", "W"]) for x in (group_start, member_start, member_call)),
        out,
    )
    return out


def distinct_moves(
    slot_node: IntArray,
    slot_service: IntArray,
    slot_movable: BoolArray,
    rule_of_slot: IntArray,
    rules: BoolArray,
    slot_ok: BoolArray,
    services: int,
) -> tuple[IntArray, IntArray]:
    """Each state's distinct valid moves, one state after another: ``(M, 2)`` rows of slot and target node,
    and ``(B,)`` moves per state (:func:`_distinct_moves`)."""
    batch, slots = slot_node.shape
    out = np.empty((batch * slots * rules.shape[2], 2), dtype=np.int64)
    sizes = np.empty(batch, dtype=np.int64)
    _run(
        _distinct_moves,
        *(np.require(x, np.int64, ["C", "W"]) for x in (slot_node, slot_service)),
        np.require(slot_movable, np.bool_, ["C", "W"]),
        np.require(rule_of_slot, np.int64, ["C", "W"]),
        *(np.require(x, np.bool_, ["C", "W"]) for x in (rules, slot_ok)),
        services, out, sizes,
    )  # fmt: skip
    return out[: sizes.sum()], sizes


def lowest_per_segment(values: FloatArray, sizes: IntArray, count: int) -> list[IntArray]:
    """For each segment of ``values`` (``sizes`` long, one after another), the indices within it of its
    ``count`` lowest values, lowest first, ties by index, NaN last: the first ``count`` of a stable
    ``argsort`` of each segment (:func:`_lowest_per_segment`).
    """
    indices, kept = lowest_per_segment_together(values, sizes, count)
    return np.split(indices, np.cumsum(kept)[:-1])


def lowest_per_segment_together(values: FloatArray, sizes: IntArray, count: int) -> tuple[IntArray, IntArray]:
    """:func:`lowest_per_segment` one segment after another: the indices within their segments, and how many each kept."""
    sizes = np.require(sizes, np.int64, ["C", "W"])
    count = min(count, int(sizes.max(initial=0)))  # no more room than the longest segment needs
    if count < 1:
        return np.zeros(0, dtype=np.int64), np.zeros(len(sizes), dtype=np.int64)
    out = np.empty(count * len(sizes), dtype=np.int64)
    kept = np.empty(len(sizes), dtype=np.int64)
    _run(_lowest_per_segment, np.require(values, np.float64, ["C", "W"]), sizes, count, out, kept)
    return out[: kept.sum()], kept


def own_costs_per_network(
    weights: FloatArray, call_service: IntArray, call_parent: IntArray, call_exec: FloatArray, matrices: FloatArray
) -> FloatArray:
    """Own cost of each call ``(R, K, C)`` of placements ``weights`` ``(K, S, N)`` under networks ``matrices`` ``(R, C, N, N)``.

    :func:`_own_costs_per_network`: ``W_c · (exec_c + W_caller · M_c)`` from the nodes that hold pods.
    """
    out = np.empty((matrices.shape[0], weights.shape[0], matrices.shape[1]))
    _run(
        _own_costs_per_network,
        np.require(weights, np.float64, ["C", "W"]),
        *(np.require(x, np.int64, ["C", "W"]) for x in (call_service, call_parent)),
        *(np.require(x, np.float64, ["C", "W"]) for x in (call_exec, matrices)),
        out,
    )
    return out


def fitting_move_mask(
    slot_node: IntArray,
    slot_service: IntArray,
    slot_movable: BoolArray,
    allowed: BoolArray,
    free_cpu: FloatArray,
    free_memory: FloatArray,
    request_cpu: FloatArray,
    request_memory: FloatArray,
    tolerance: float,
) -> BoolArray:
    """A simulator's action mask ``(N * P + 1,)`` from its placement and free resources (:func:`_fitting_move_mask`)."""
    out = np.empty(allowed.shape[1] * slot_node.shape[0] + 1, dtype=np.bool_)
    status = _run(
        _fitting_move_mask, slot_node, slot_service, slot_movable, allowed, free_cpu, free_memory,
        request_cpu, request_memory, float(tolerance), out,
    )  # fmt: skip
    _refuse(
        "fitting_move_mask", status,
        {"slot_node": slot_node, "slot_service": slot_service, "slot_movable": slot_movable, "allowed": allowed,
         "free_cpu": free_cpu, "free_memory": free_memory, "request_cpu": request_cpu, "request_memory": request_memory},
        "P slots, (S, N) allowed, N free, S requests",
    )  # fmt: skip
    return out


def table_gain_fractions(
    now: FloatArray, delta: FloatArray, slot_service: IntArray, slot_node: IntArray, mask: BoolArray
) -> Float32Array:
    """The move-gain features ``(B, N * P)`` of a move table (:func:`_table_gain_fractions`; the table:
    :func:`ceenv.gains.move_delta_table`)."""
    batch, nodes, slots = delta.shape[0], delta.shape[2], slot_node.shape[-1]
    out = np.empty((batch, nodes * slots), dtype=np.float32)
    status = _run(_table_gain_fractions, now, delta, slot_service, slot_node, mask, out)
    _refuse(
        "table_gain_fractions", status,
        {"now": now, "delta": delta, "slot_service": slot_service, "slot_node": slot_node, "mask": mask},
        "now (B,), delta (B, S, N, N), slot_service (P,), slot_node (B, P), mask (B, >= N*P)",
    )  # fmt: skip
    return out


def form_gain_fractions(
    now: FloatArray,
    coupled: FloatArray,
    exec_weights: FloatArray,
    inv: FloatArray,
    self_blocks: FloatArray,
    slot_service: IntArray,
    slot_node: IntArray,
    mask: BoolArray,
) -> Float32Array:
    """The move-gain features ``(B, N * P)`` from a latency form's products (:func:`_form_gain_fractions`;
    the products: :func:`ceenv.gains.form_terms`)."""
    batch, nodes, slots = coupled.shape[0], self_blocks.shape[1], slot_node.shape[-1]
    out = np.empty((batch, nodes * slots), dtype=np.float32)
    status = _run(
        _form_gain_fractions, now, coupled, exec_weights, inv, self_blocks, slot_service, slot_node, mask, out
    )
    _refuse(
        "form_gain_fractions", status,
        {"now": now, "coupled": coupled, "exec_weights": exec_weights, "inv": inv, "self_blocks": self_blocks,
         "slot_service": slot_service, "slot_node": slot_node, "mask": mask},
        "now (B,), coupled (B, S*N), exec_weights (S*N,), inv (B, S), self_blocks (S, N, N), slot_service (P,), "
        "slot_node (B, P), mask (B, >= N*P)",
    )  # fmt: skip
    return out


def observe_v4_dynamic(
    out: Float32Array,
    free_cpu: FloatArray,
    free_memory: FloatArray,
    cpu_scale: FloatArray,
    memory_scale: FloatArray,
    counts: FloatArray,
    slot_node: IntArray,
    slot_service: IntArray,
    log_exec: FloatArray,
    gains: Float32Array,
    mask: BoolArray,
    shape: tuple[int, int, int, int, int],
) -> None:
    """Rewrite the dynamic entries of observation version 4 in ``out`` ``(B, size)``, in place (:func:`_observe_v4_dynamic`).

    ``shape`` is ``(max_nodes, max_slots, node_features, slot_features, pair_features)``; ``counts``
    ``(B, S, N)``, ``free_*`` ``(B, N)``, ``slot_node`` ``(B, P)``, ``log_exec`` ``(S, N)``, ``gains``
    ``(B, N * P)``, ``mask`` ``(B, >= N * P)``. The loop checks the shapes and indices itself (an env
    step calls this once, and a dozen checks here cost more than the loop); arrays of other dtypes
    or memory layouts than the env's compile another version of it once.
    """
    status = _run(_observe_v4_dynamic, out, free_cpu, free_memory, cpu_scale, memory_scale, counts, slot_node,
                  slot_service, log_exec, gains, mask, *shape)  # fmt: skip
    _refuse(
        f"observe_v4_dynamic (limits and feature counts {shape})", status,
        {"out": out, "free_cpu": free_cpu, "free_memory": free_memory, "counts": counts, "slot_node": slot_node,
         "slot_service": slot_service, "log_exec": log_exec, "gains": gains, "mask": mask},
        "out (B, size), free_* (B, N), counts (B, S, N), slot_node (B, P), slot_service (P,), log_exec (S, N), "
        "gains (B, N*P), mask (B, >= N*P)",
    )  # fmt: skip


def _refuse(function: str, status: int, given: dict[str, np.ndarray], expected: str) -> None:
    """The error for a loop's status (1: shapes, 2: indices; 0: none), naming the arrays' shapes."""
    if status == 1:
        shapes = ", ".join(f"{name} {array.shape}" for name, array in given.items())
        raise ValueError(f"{function}: shapes that do not fit together: {shapes} (expected {expected})")
    if status == 2:
        raise ValueError(f"{function}: a slot's node or service is out of range (nodes < N, 0 <= services < S)")


def compiled(function: Callable[..., Any] = _after_moves) -> Callable[..., Any]:
    """``function`` compiled: loaded from numba's cache or compiled now, once per process.

    Where no cache folder is writable (the package installed read-only, and no writable home or
    ``NUMBA_CACHE_DIR``), it is compiled without a cache. A server calls :func:`warm_up` at start,
    so that no request waits for the compiler.
    """
    name = function.__name__
    if name not in _compiled:
        from numba import njit

        try:
            _compiled[name] = njit(cache=True, nogil=True, **_OPTIONS.get(name, {}))(function)
        except RuntimeError:  # numba: "cannot cache function ...: no locator available"
            _compiled[name] = njit(nogil=True, **_OPTIONS.get(name, {}))(function)
    dispatcher: Callable[..., Any] = _compiled[name]
    return dispatcher


def warm_up() -> None:
    """Compile (or load) the loops for the argument types their callers pass (:data:`KERNELS`)."""
    floats1, floats2, ints = np.zeros(1), np.zeros((1, 1)), np.zeros(1, dtype=np.int64)
    none = np.zeros(0, dtype=np.int64)
    after_moves(
        floats2, floats2, floats2, floats2, np.zeros((1, 1, 1, 1)), floats2,
        none, none, none, none, 1, ints, none, none, ints, ints, none, none, ints, floats1, none, none, np.zeros(0),
    )  # fmt: skip
    compiled_tree_totals(floats2, np.zeros(2, dtype=np.int64), ints, none)  # one call without children
    yes = np.ones((1, 1), dtype=bool)
    distinct_moves(
        np.zeros((1, 1), dtype=np.int64), ints, np.ones(1, dtype=bool), ints, np.ones((1, 1, 1), dtype=bool), yes, 1
    )
    lowest_per_segment(np.zeros(1), np.ones(1, dtype=np.int64), 1)  # one value in one segment: compiles
    own_costs_per_network(np.zeros((1, 1, 1)), ints, ints, floats2, np.zeros((1, 1, 1, 1)))
    features = (NODE_FEATURES, SLOT_FEATURES, PAIR_FEATURES)  # one node and one slot
    observe_v4_dynamic(
        np.zeros((1, sum(features)), dtype=np.float32), floats2, floats2, np.ones(1), np.ones(1), np.zeros((1, 1, 1)),
        np.zeros((1, 1), dtype=np.int64), ints, floats2, np.zeros((1, 1), dtype=np.float32), yes, (1, 1, *features),
    )  # fmt: skip
    table_gain_fractions(floats1, np.zeros((1, 1, 1, 1)), ints, np.zeros((1, 1), dtype=np.int64), yes)
    form_gain_fractions(
        floats1, floats2, floats1, floats2, np.zeros((1, 1, 1)), ints, np.zeros((1, 1), dtype=np.int64), yes
    )
    fitting_move_mask(ints, ints, np.ones(1, dtype=bool), yes, floats1, floats1, floats1, floats1, 1e-6)


KERNELS = (
    _after_moves,
    _tree_totals,
    _distinct_moves,
    _lowest_per_segment,
    _own_costs_per_network,
    _observe_v4_dynamic,
    _table_gain_fractions,
    _form_gain_fractions,
    _fitting_move_mask,
)  # what warm_up compiles
