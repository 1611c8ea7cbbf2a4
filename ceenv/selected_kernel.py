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

Compiled with numba on first use (about 4 s here for the move loop, once; cached on disk beside this
file, or in numba's user cache where that is not writable), so importing :mod:`ceenv` stays cheap.
Pure: arrays in, arrays out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ceenv.layout import BoolArray, FloatArray, IntArray  # not ceenv.latency's: it imports this module

TO_SERVICE, SELF_CALL, BY_SERVICE = 1, 2, 4  # bits of a step's flags (ceenv.gains.service_program)

_compiled: dict[str, Any] = {}  # function name -> its numba dispatcher, once compiled() ran for it


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


def _run(function: Callable[..., None], *arrays: Any) -> None:
    """``function`` compiled (:func:`compiled`), called with ``arrays``.

    A cache that cannot be written or read after all (numba raises OSError then, on the first call)
    leaves the function compiled without one.
    """
    try:
        compiled(function)(*arrays)
    except OSError:
        from numba import njit

        _compiled[function.__name__] = njit(nogil=True)(function)
        _compiled[function.__name__](*arrays)


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


def compiled(function: Callable[..., None] = _after_moves) -> Callable[..., None]:
    """``function`` compiled: loaded from numba's cache or compiled now, once per process.

    Where no cache folder is writable (the package installed read-only, and no writable home or
    ``NUMBA_CACHE_DIR``), it is compiled without a cache. A server calls :func:`warm_up` at start,
    so that no request waits for the compiler.
    """
    name = function.__name__
    if name not in _compiled:
        from numba import njit

        try:
            _compiled[name] = njit(cache=True, nogil=True)(function)
        except RuntimeError:  # numba: "cannot cache function ...: no locator available"
            _compiled[name] = njit(nogil=True)(function)
    dispatcher: Callable[..., None] = _compiled[name]
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


KERNELS = (
    _after_moves,
    _tree_totals,
    _distinct_moves,
    _lowest_per_segment,
    _own_costs_per_network,
)  # what warm_up compiles
