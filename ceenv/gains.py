"""Incremental move gains: the latency after every single-pod move, from one pass over the state.

Moving one pod of service ``s`` from node ``a`` to node ``b`` changes only the weights ``W_s``
(``W_s' = W_s + (e_b - e_a) / r_s``, ``r_s`` replicas), so in the latency formula of MODEL.md §2
only the own cost of the calls *to* ``s`` and of the calls *made by* ``s`` change:

* a call ``c`` to ``s`` (caller ``p != s``): ``Δ = (G_c[b] - G_c[a]) / r_s`` with
  ``G_c = exec_c + W_p · M_c`` (the caller's weighted row of the network matrix);
* a call ``c`` made by ``s`` (callee ``q != s``): ``Δ = (H_c[b] - H_c[a]) / r_s`` with ``H_c = M_c · W_q``;
* a call from ``s`` to ``s``: both, plus ``-(M_c[a, b] + M_c[b, a]) / r_s²``.

``G`` and ``H`` cost one pass over the state; every move is then a few gathers, and the call tree
is re-run only for the calls whose subtree contains a changed call (the others stay one number per
state, broadcast). :func:`latency_after_moves` does this for a batch of states at once (leading
axis ``B``) with per-state or shared network matrices; it agrees with the full evaluation
(:meth:`ceenv.latency.LatencyModel.latency_batch`) to floating-point rounding (tests: 1e-9 ms).
Used by :func:`ceenv.observation.move_gain_features`, the batched env (:mod:`ceenv.vector`) and
the simulator. Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ceenv.latency import FloatArray, IntArray, LatencyModel


@dataclass(frozen=True)
class _ServicePlan:
    """What a move of one service's pod touches: its slots, the changed calls, the re-run calls."""

    service: int
    slots: slice
    to_calls: IntArray  # calls whose callee is the service (caller is another service)
    from_calls: IntArray  # calls the service makes (callee is another service)
    self_calls: IntArray  # calls from the service to itself
    dirty: frozenset[int]  # calls whose total changes (changed calls and their ancestors)


def _plans(model: LatencyModel, slot_service: IntArray, movable: np.ndarray) -> tuple[_ServicePlan, ...]:
    cached: dict[bytes, tuple[_ServicePlan, ...]] = model.__dict__.setdefault("_gain_plans", {})
    key = slot_service.tobytes() + movable.tobytes()
    if key in cached:
        return cached[key]
    roots = set(model.roots)
    service, parent = model.call_service, model.call_parent_service
    callers = {callee: c for c, groups in enumerate(model.call_groups) for g in groups for callee in g}
    plans = []
    for s in np.unique(slot_service[movable]):
        slots = np.flatnonzero(slot_service == s)
        real = np.array([c not in roots for c in range(len(service))], dtype=bool)
        to_calls = np.flatnonzero(real & (service == s) & (parent != s))
        from_calls = np.flatnonzero(real & (parent == s) & (service != s))
        self_calls = np.flatnonzero(real & (parent == s) & (service == s))
        dirty: set[int] = set()
        for c in [*to_calls, *from_calls, *self_calls]:
            node: int | None = int(c)
            while node is not None and node not in dirty:
                dirty.add(node)
                node = callers.get(node)
        plans.append(
            _ServicePlan(
                int(s), slice(int(slots[0]), int(slots[-1]) + 1), to_calls, from_calls, self_calls, frozenset(dirty)
            )
        )
    cached[key] = tuple(plans)
    return cached[key]


def _weights(counts: FloatArray) -> tuple[FloatArray, FloatArray]:
    replicas = counts.sum(axis=-1)
    weights: FloatArray = counts / np.maximum(replicas, 1.0)[..., None]
    return weights, replicas


def call_terms(
    model: LatencyModel, counts: FloatArray, matrices: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(own, G, H)`` of a batch of states: own cost per call ``(B, C)``, ``G`` and ``H`` ``(C, B, N)``.

    ``counts`` is ``(B, S, N)``; ``matrices`` is ``(C, N, N)`` (one network for all states) or
    ``(B, C, N, N)`` (one per state).
    """
    weights, _ = _weights(counts)
    w_callee = weights[:, model.call_service, :].transpose(1, 0, 2)  # (C, B, N)
    w_caller = weights[:, model.call_parent_service, :].transpose(1, 0, 2)
    if matrices.ndim == 3:
        g = w_caller @ matrices  # (C, B, N): W_p · M_c
        h = (matrices @ w_callee.transpose(0, 2, 1)).transpose(0, 2, 1)  # (C, B, N): M_c · W_q
    else:
        per_state = matrices.transpose(1, 0, 2, 3)  # (C, B, N, N)
        g = (w_caller[:, :, None, :] @ per_state)[:, :, 0, :]
        h = (per_state @ w_callee[:, :, :, None])[:, :, :, 0]
    g += model.call_exec_ms[:, None, :]
    own: FloatArray = (w_callee * g).sum(axis=2).T  # (B, C)
    return own, g, h


def tree_totals(model: LatencyModel, own: list[FloatArray | float]) -> list[FloatArray | float]:
    """The call tree of MODEL.md §2 over per-call own costs (any broadcastable arrays): totals per call."""
    total: list[FloatArray | float] = [0.0] * len(own)
    for c, groups in enumerate(model.call_groups):  # children precede parents
        slowest: FloatArray | float = 0.0
        for i, group in enumerate(groups):
            elapsed = total[group[0]]
            for callee in group[1:]:
                elapsed = elapsed + total[callee]
            slowest = elapsed if i == 0 else np.maximum(slowest, elapsed)
        total[c] = own[c] + slowest
    return total


def application_latency(model: LatencyModel, totals: list[FloatArray | float]) -> FloatArray | float:
    result: FloatArray | float = 0.0
    for weight, root in zip(model.endpoint_weights, model.roots, strict=True):
        result = result + weight * totals[root]
    return result


def latency_after_moves(
    model: LatencyModel,
    counts: FloatArray,
    matrices: FloatArray,
    slot_service: IntArray,
    slot_node: IntArray,
    movable: np.ndarray,
) -> tuple[FloatArray, FloatArray]:
    """Latency now ``(B,)`` and after moving slot ``p`` to node ``n``, ``(B, P, N)`` (ms).

    ``slot_node`` is ``(B, P)`` (-1 = empty). Entries of empty or unmovable slots, and of moves
    onto the slot's own node (latency unchanged), are meaningful only where the caller's mask
    allows the move; they are not NaN. Every called service must have a pod in every state.
    """
    batch, slots = slot_node.shape
    nodes = counts.shape[-1]
    own, g, h = call_terms(model, counts, matrices)
    columns = [own[:, c] for c in range(own.shape[1])]
    base_totals = tree_totals(model, list(columns))
    now = np.asarray(application_latency(model, base_totals), dtype=np.float64)
    after = np.repeat(now[:, None, None], slots, axis=1).repeat(nodes, axis=2)
    replicas = counts.sum(axis=-1)
    source = np.maximum(slot_node, 0)
    rows = np.arange(batch)[:, None]
    for plan in _plans(model, slot_service, movable):
        src = source[:, plan.slots]  # (B, Ps)
        inv = 1.0 / np.maximum(replicas[:, plan.service], 1.0)[:, None, None]  # (B, 1, 1)
        own_after: list[FloatArray | float] = [col[:, None, None] for col in columns]
        for calls, terms in ((plan.to_calls, g), (plan.from_calls, h)):
            for c in calls:
                row = terms[c]  # (B, N)
                at_source = row[rows, src]  # (B, Ps)
                own_after[c] = own_after[c] + (row[:, None, :] - at_source[:, :, None]) * inv
        for c in plan.self_calls:
            row_g, row_h = g[c], h[c]
            delta = row_g[:, None, :] - row_g[rows, src][:, :, None]
            delta += row_h[:, None, :] - row_h[rows, src][:, :, None]
            m = np.broadcast_to(matrices[c] if matrices.ndim == 3 else matrices[:, c], (batch, nodes, nodes))
            cross = m[rows, src, :] + m[rows, :, src]  # M[a, b] + M[b, a], (B, Ps, N)
            own_after[c] = own_after[c] + delta * inv - cross * inv * inv
        totals = _dirty_tree(model, own_after, base_totals, plan.dirty)
        after[:, plan.slots, :] = application_latency(model, totals)
    return now, after


def _dirty_tree(
    model: LatencyModel,
    own: list[FloatArray | float],
    base: list[FloatArray | float],
    dirty: frozenset[int],
) -> list[FloatArray | float]:
    """The call tree re-run only for ``dirty`` calls; the others keep their per-state totals."""
    total: list[FloatArray | float] = [b[:, None, None] if isinstance(b, np.ndarray) else b for b in base]
    for c, groups in enumerate(model.call_groups):
        if c not in dirty:
            continue
        slowest: FloatArray | float = 0.0
        for i, group in enumerate(groups):
            elapsed = total[group[0]]
            for callee in group[1:]:
                elapsed = elapsed + total[callee]
            slowest = elapsed if i == 0 else np.maximum(slowest, elapsed)
        total[c] = own[c] + slowest
    return total
