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

Compiled with numba on first use (about 4 s here, once; cached on disk beside this
file, or in numba's user cache where that is not writable), so importing :mod:`ceenv` stays cheap.
Pure: arrays in, an array out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ceenv.latency import FloatArray, IntArray

TO_SERVICE, SELF_CALL, BY_SERVICE = 1, 2, 4  # bits of a step's flags (ceenv.gains.service_program)

_compiled: Any = None  # the numba dispatcher, once compiled() ran


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


def after_moves(*arrays: Any) -> None:
    """:func:`_after_moves`, compiled with numba on the first call of the process (:func:`compiled`).

    A cache that cannot be written or read after all (numba raises OSError then, on the first call)
    leaves the loop compiled without one.
    """
    global _compiled
    try:
        compiled()(*arrays)
    except OSError:
        from numba import njit

        _compiled = njit(nogil=True)(_after_moves)
        _compiled(*arrays)


def compiled() -> Callable[..., None]:
    """The compiled loop: loaded from numba's cache or compiled now, once per process.

    Where no cache folder is writable (the package installed read-only, and no writable home or
    ``NUMBA_CACHE_DIR``), it is compiled without a cache. A server calls :func:`warm_up` at start,
    so that no request waits for the compiler.
    """
    global _compiled
    if _compiled is None:
        from numba import njit

        try:
            _compiled = njit(cache=True, nogil=True)(_after_moves)
        except RuntimeError:  # numba: "cannot cache function ...: no locator available"
            _compiled = njit(nogil=True)(_after_moves)
    dispatcher: Callable[..., None] = _compiled
    return dispatcher


def warm_up() -> None:
    """Compile (or load) the loop for the argument types :func:`ceenv.gains.latency_now_and_after_selected` passes."""
    floats1, floats2, ints = np.zeros(1), np.zeros((1, 1)), np.zeros(1, dtype=np.int64)
    none = np.zeros(0, dtype=np.int64)
    after_moves(
        floats2, floats2, floats2, floats2, np.zeros((1, 1, 1, 1)), floats2,
        none, none, none, none, 1, ints, none, none, ints, ints, none, none, ints, floats1, none, none, np.zeros(0),
    )  # fmt: skip
