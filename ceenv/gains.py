"""Incremental move gains: the latency after every single-pod move, from one pass over the state.

Moving one pod of service ``s`` from node ``a`` to node ``b`` changes only the weights ``W_s``
(``W_s' = W_s + (e_b - e_a) / r_s``, ``r_s`` replicas), so in the latency formula of MODEL.md §2
only the own cost of the calls *to* ``s`` and of the calls *made by* ``s`` change:

* a call ``c`` to ``s`` (caller ``p != s``): ``Δ = (G_c[b] - G_c[a]) / r_s`` with
  ``G_c = exec_c + W_p · M_c`` (the caller's weighted row of the network matrix);
* a call ``c`` made by ``s`` (callee ``q != s``): ``Δ = (H_c[b] - H_c[a]) / r_s`` with ``H_c = M_c · W_q``;
* a call from ``s`` to ``s``: both, plus ``-(M_c[a, b] + M_c[b, a]) / r_s²``.

``G`` and ``H`` cost one pass over the state. Pods of one service on one node are
interchangeable, so :func:`move_delta_table` evaluates every (service, source node, target node)
move at once as a ``(B, S, N, N)`` table of latency changes; a slot's moves are one gather from it
(:func:`gather_moves`). For a call tree without parallel groups the latency is linear in the own
costs and the table is two small matrix products; with parallel groups the tree is re-run over
the whole table. :func:`latency_after_moves` does this for a batch of states at once (leading axis
``B``) with per-state or shared network matrices; it agrees with the full evaluation
(:meth:`ceenv.latency.LatencyModel.latency_batch`) to floating-point rounding (tests: 1e-9 ms).
:func:`latency_after_selected` evaluates the same terms for a list of moves only, over several
states at once (a planner's beam: :func:`ceenv.search.latencies_after`), re-running for each moved
service only the calls it changes and their ancestors, in one compiled loop over the moves
(:mod:`ceenv.selected_kernel`, numba). Used by
:func:`ceenv.observation.move_gain_features`, the batched env (:mod:`ceenv.vector`), the search
and the simulator. Pure: numpy, and numba for that loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np

from ceenv.latency import CallCosts, FloatArray, IntArray, LatencyModel
from ceenv.selected_kernel import BY_SERVICE, SELF_CALL, TO_SERVICE, after_moves, compiled_tree_totals


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
    own, g, w_callee = _own_terms(model, counts, matrices)
    if matrices.ndim == 3:
        h = (matrices @ w_callee.transpose(0, 2, 1)).transpose(0, 2, 1)  # (C, B, N): M_c · W_q
    else:
        h = (matrices.transpose(1, 0, 2, 3) @ w_callee[:, :, :, None])[:, :, :, 0]
    return own, g, h


def call_own_costs(model: LatencyModel, counts: FloatArray, matrices: FloatArray) -> FloatArray:
    """The own cost per call ``(B, C)`` of :func:`call_terms`, without ``H`` (a latency needs no move's terms)."""
    return _own_terms(model, counts, matrices)[0]


def _own_terms(
    model: LatencyModel, counts: FloatArray, matrices: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Own cost per call ``(B, C)``, ``G`` ``(C, B, N)`` and the callees' weights ``(C, B, N)``."""
    weights, _ = _weights(counts)
    w_callee = weights[:, model.call_service, :].transpose(1, 0, 2)  # (C, B, N)
    w_caller = weights[:, model.call_parent_service, :].transpose(1, 0, 2)
    if matrices.ndim == 3:
        g = w_caller @ matrices  # (C, B, N): W_p · M_c
    else:
        per_state = matrices.transpose(1, 0, 2, 3)  # (C, B, N, N)
        g = (w_caller[:, :, None, :] @ per_state)[:, :, 0, :]
    g += model.call_exec_ms[:, None, :]
    own: FloatArray = (w_callee * g).sum(axis=2).T  # (B, C)
    return own, g, w_callee


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
    ``movable`` is accepted for the callers' sake; every slot gets its entries from
    :func:`move_delta_table`.
    """
    now, delta = move_delta_table(model, counts, matrices)
    after: FloatArray = now[:, None, None] + gather_moves(delta, slot_service, slot_node)
    return now, after


@dataclass(frozen=True)
class _CallStep:
    """One call whose total a move of the service changes, in the call tree's order (children first)."""

    call: int
    to_service: bool  # the call is made *to* the moved service: its callee weights change
    self_call: bool  # ... and *by* it (the M[a, b] + M[b, a] correction)
    by_service: bool  # the call is made *by* the moved service: its caller weights change
    groups: tuple[tuple[tuple[int, bool], ...], ...]  # (callee, its total changes too) per parallel group


@dataclass(frozen=True)
class _ServiceSteps:
    steps: tuple[_CallStep, ...]
    roots: tuple[tuple[float, int, bool], ...]  # (endpoint weight, root call, its total changes)


def _service_steps(model: LatencyModel) -> dict[int, _ServiceSteps]:
    """Per service: the calls whose own cost a move of one of its pods changes, and their ancestors.

    Derived once per model (kept in its ``__dict__``, like :meth:`LatencyModel.nominal_costs`).
    """
    cached: dict[int, _ServiceSteps] | None = model.__dict__.get("_service_steps")
    if cached is not None:
        return cached
    calls = len(model.call_groups)
    parent = [-1] * calls
    for c, groups in enumerate(model.call_groups):
        for group in groups:
            for callee in group:
                parent[callee] = c
    roots = set(model.roots)
    services = len(model.called_services)  # every service of the scenario, called or not
    table: dict[int, _ServiceSteps] = {}
    for s in range(services):
        to_s = {c for c in range(calls) if c not in roots and int(model.call_service[c]) == s}
        by_s = {c for c in range(calls) if c not in roots and int(model.call_parent_service[c]) == s}
        changed: set[int] = set()
        for c in to_s | by_s:
            while c != -1 and c not in changed:
                changed.add(c)
                c = parent[c]
        steps = tuple(
            _CallStep(
                c,
                c in to_s,
                c in to_s and int(model.call_parent_service[c]) == s,
                c in by_s,
                tuple(tuple((callee, callee in changed) for callee in group) for group in model.call_groups[c]),
            )
            for c in sorted(changed)  # children precede parents
        )
        weighted = tuple((w, r, r in changed) for w, r in zip(model.endpoint_weights, model.roots, strict=True))
        table[s] = _ServiceSteps(steps, weighted)
    model.__dict__["_service_steps"] = table
    return table


def latency_after_selected(
    model: LatencyModel,
    counts: FloatArray,
    matrices: FloatArray,
    state: IntArray,
    service: IntArray,
    source: IntArray,
    target: IntArray,
) -> FloatArray:
    """Latency after each selected move ``m``: one pod of ``service[m]`` from ``source[m]`` to ``target[m]`` in state ``state[m]``.

    The same terms as :func:`move_delta_table`, evaluated for the listed moves only, service by
    service: a move of service ``s`` changes the own cost of the calls to and from ``s`` only, so
    only those calls and their ancestors in the call tree are re-run; every other call keeps its
    total in the move's state. The arithmetic per changed call is the full tree's, so the result
    equals re-running the whole tree bit for bit. When few of a state's (service, node) pairs hold
    pods, as in a planner's beam over a large cluster, this is far cheaper than the full
    ``(S, N, N)`` table, and it needs no linear tree. ``counts`` is ``(B, S, N)``; ``matrices``
    ``(C, N, N)`` or ``(B, C, N, N)``.
    """
    return latency_now_and_after_selected(model, counts, matrices, state, service, source, target)[1]


def latency_now_and_after_selected(
    model: LatencyModel,
    counts: FloatArray,
    matrices: FloatArray,
    state: IntArray,
    service: IntArray,
    source: IntArray,
    target: IntArray,
) -> tuple[FloatArray, FloatArray]:
    """Latency of each state now ``(B,)`` and :func:`latency_after_selected` of the moves ``(M,)``, from one pass."""
    own, g, h = call_terms(model, counts, matrices)
    batch, nodes = counts.shape[0], counts.shape[2]
    calls = own.shape[1]
    program = service_program(model)
    services = min(counts.shape[1], len(program[0]) - 1)
    if len(state):  # the compiled loop checks no bounds: a bad index would read or write past an array
        if min(source.min(), target.min()) < 0 or max(source.max(), target.max()) >= nodes:
            raise ValueError(f"a selected move's source or target is not a node index in 0..{nodes - 1}")
        if state.min() < 0 or state.max() >= batch or service.min() < 0 or service.max() >= services:
            raise ValueError(
                f"a selected move's state or service is out of range (states 0..{batch - 1}, services 0..{services - 1})"
            )
    inv = 1.0 / np.maximum(counts.sum(axis=-1), 1.0)  # (B, S)
    own_by_call = np.ascontiguousarray(own.T)  # (C, B)
    before = compiled_tree_totals(own_by_call, *tree_program(model))  # each call's total per state, (C, B)
    result = np.empty(len(state))
    if len(state):
        after_moves(
            own_by_call,
            before,
            np.ascontiguousarray(g.reshape(calls, batch * nodes)),
            np.ascontiguousarray(h.reshape(calls, batch * nodes)),
            np.ascontiguousarray(matrices if matrices.ndim == 4 else matrices[None]),
            inv,
            *(np.require(x, np.int64, ["C", "W"]) for x in (state, service, source, target)),  # W: numba types
            nodes,  # read-only arrays apart, and would compile the loop again for them
            *program,
            result,
        )
    now = np.asarray(application_latency(model, cast("list[FloatArray | float]", list(before))), dtype=np.float64)
    return now, result


def tree_program(model: LatencyModel) -> tuple[IntArray, IntArray, IntArray]:
    """The call tree (``model.call_groups``) as the flat arrays :func:`ceenv.selected_kernel.compiled_tree_totals` reads.

    Per call the start of its parallel groups, per group the start of its callees, and the callees;
    derived once per model (kept in its ``__dict__``).
    """
    cached: tuple[IntArray, IntArray, IntArray] | None = model.__dict__.get("_tree_program")
    if cached is not None:
        return cached
    group_start, member_start, member_call = [0], [0], []
    for groups in model.call_groups:
        for group in groups:
            member_call += list(group)
            member_start.append(len(member_call))
        group_start.append(len(member_start) - 1)
    program = tuple(np.array(values, dtype=np.int64) for values in (group_start, member_start, member_call))
    model.__dict__["_tree_program"] = program
    return cast("tuple[IntArray, IntArray, IntArray]", program)


def service_program(model: LatencyModel) -> tuple[IntArray | FloatArray, ...]:
    """:func:`_service_steps` as the flat arrays :func:`ceenv.selected_kernel.after_moves` reads (once per model).

    Per service its steps (call, flags: :data:`~ceenv.selected_kernel.TO_SERVICE` |
    :data:`~ceenv.selected_kernel.SELF_CALL` | :data:`~ceenv.selected_kernel.BY_SERVICE`), per step
    its parallel groups, per group its callees and whether the move changes their totals, and per
    service its endpoints (weight, root call, changed); each level indexed by start offsets.
    """
    cached: tuple[IntArray | FloatArray, ...] | None = model.__dict__.get("_service_program")
    if cached is not None:
        return cached
    table = _service_steps(model)
    step_start, step_call, step_flags, group_start = [0], [], [], [0]
    member_start, member_call, member_changed = [0], [], []
    root_start, root_weight, root_call, root_changed = [0], [], [], []
    for s in range(len(table)):
        for step in table[s].steps:
            step_call.append(step.call)
            step_flags.append(TO_SERVICE * step.to_service + SELF_CALL * step.self_call + BY_SERVICE * step.by_service)
            for group in step.groups:
                member_call += [callee for callee, _ in group]
                member_changed += [int(changed) for _, changed in group]
                member_start.append(len(member_call))
            group_start.append(len(member_start) - 1)
        step_start.append(len(step_call))
        for weight, root, changed in table[s].roots:
            root_weight.append(weight)
            root_call.append(root)
            root_changed.append(int(changed))
        root_start.append(len(root_call))

    def ints(values: list[int]) -> IntArray:
        return np.array(values, dtype=np.int64)

    program = (
        ints(step_start),
        ints(step_call),
        ints(step_flags),
        ints(group_start),
        ints(member_start),
        ints(member_call),
        ints(member_changed),
        ints(root_start),
        np.array(root_weight, dtype=np.float64),
        ints(root_call),
        ints(root_changed),
    )
    model.__dict__["_service_program"] = program
    return program


def gather_moves(delta: FloatArray, slot_service: IntArray, slot_node: IntArray) -> FloatArray:
    """Per slot ``p`` and target ``n``: ``delta[b, service(p), node(p), n]``, ``(B, P, N)`` (empty slots: node 0)."""
    batch = slot_node.shape[0]
    source = np.maximum(slot_node, 0)
    result: FloatArray = delta[np.arange(batch)[:, None], slot_service[None, :], source]
    return result


def move_delta_table(
    model: LatencyModel, counts: FloatArray, matrices: FloatArray, form: LatencyForm | None = None
) -> tuple[FloatArray, FloatArray]:
    """Latency now ``(B,)`` and its change when one pod of service ``s`` moves from ``a`` to ``t``, ``(B, S, N, N)``.

    Pods of one service on one node are interchangeable, so every move of a state is one entry of
    this table. A workload without parallel groups has a linear call tree (the latency is the
    rps-weighted sum of the own costs), so the whole table is two small products:
    ``Δ[s, a, t] = (U_s[t] - U_s[a]) / r_s - X_s[a, t] / r_s²`` with ``U_s`` the weighted sum of
    ``G_c`` over the calls to ``s`` and ``H_c`` over the calls made by ``s``, and ``X_s`` the
    self-calls' ``M_c + M_cᵀ``. With parallel groups (a maximum in the tree) the tree is re-run
    over the whole table at once. ``form`` (:func:`latency_form` of the same shared ``matrices``)
    computes the same table from a few products with precomputed matrices.
    """
    if form is not None:
        return _delta_from_form(form, counts)
    own, g, h = call_terms(model, counts, matrices)
    inv = 1.0 / np.maximum(counts.sum(axis=-1), 1.0)  # (B, S)
    plan = _table_plan(model, counts.shape[1])
    if plan.linear:
        now: FloatArray = own @ plan.coefficients
        calls, batch, nodes = g.shape
        u = (plan.to_weights @ g.reshape(calls, -1) + plan.from_weights @ h.reshape(calls, -1)).reshape(
            -1, batch, nodes
        )  # (S, B, N)
        u = u.transpose(1, 0, 2) * inv[:, :, None]
        delta: FloatArray = u[:, :, None, :] - u[:, :, :, None]
        for c in plan.self_calls:
            s = int(model.call_service[c])
            m = matrices[c] if matrices.ndim == 3 else matrices[:, c]
            cross = m + np.swapaxes(m, -1, -2)
            delta[:, s] -= plan.coefficients[c] * cross * (inv[:, s] ** 2).reshape(-1, *([1] * (cross.ndim - 1)))
        return now, delta
    totals = tree_totals(model, [own[:, c] for c in range(own.shape[1])])
    now = np.asarray(application_latency(model, totals), dtype=np.float64)
    return now, _tree_table(model, own, g, h, matrices, inv) - now[:, None, None, None]


@dataclass(frozen=True)
class _TablePlan:
    """Per model: whether the tree is linear, and each call's weight in the application latency."""

    linear: bool
    coefficients: FloatArray  # (C,) endpoint weight of each call (linear trees)
    to_weights: FloatArray  # (S, C): coefficient of G_c for the service called by c
    from_weights: FloatArray  # (S, C): coefficient of H_c for the service making call c
    self_calls: tuple[int, ...]


def call_weights(model: LatencyModel) -> FloatArray:
    """Per call: its endpoint's rps weight; 0 for the roots (the client's own request costs nothing)."""
    weights = np.zeros(len(model.call_groups))

    def visit(call: int, weight: float) -> None:
        weights[call] = weight
        for group in model.call_groups[call]:
            for callee in group:
                visit(callee, weight)

    for root, weight in zip(model.roots, model.endpoint_weights, strict=True):
        visit(root, weight)
    weights[list(model.roots)] = 0.0
    return weights


def linear_tree(model: LatencyModel) -> bool:
    """Whether the workload's call tree has no parallel groups (its latency is linear in the own costs)."""
    return all(len(groups) <= 1 for groups in model.call_groups)


def _table_plan(model: LatencyModel, services: int) -> _TablePlan:
    cached: _TablePlan | None = model.__dict__.get("_table_plan")
    if cached is not None:
        return cached
    linear = linear_tree(model)
    coefficients = call_weights(model)
    calls = np.arange(len(coefficients))
    to_weights = np.zeros((services, len(coefficients)))
    from_weights = np.zeros((services, len(coefficients)))
    to_weights[model.call_service, calls] = coefficients
    from_weights[model.call_parent_service, calls] = coefficients
    self_calls = tuple(
        int(c) for c in np.flatnonzero((model.call_service == model.call_parent_service) & (coefficients > 0))
    )
    plan = _TablePlan(linear, coefficients, to_weights, from_weights, self_calls)
    model.__dict__["_table_plan"] = plan
    return plan


def _tree_table(
    model: LatencyModel, own: FloatArray, g: FloatArray, h: FloatArray, matrices: FloatArray, inv: FloatArray
) -> FloatArray:
    """Latency after every (service, source, target) move, ``(B, S, N, N)``, by re-running the tree."""
    batch, services = inv.shape
    nodes = g.shape[2]
    own_after: list[FloatArray | float] = []
    for c in range(own.shape[1]):
        value = np.broadcast_to(own[:, c, None, None, None], (batch, services, nodes, nodes)).copy()
        s, p = int(model.call_service[c]), int(model.call_parent_service[c])
        if c not in model.roots:
            value[:, s] += (g[c][:, None, :] - g[c][:, :, None]) * inv[:, s, None, None]
            value[:, p] += (h[c][:, None, :] - h[c][:, :, None]) * inv[:, p, None, None]
            if s == p:
                m = np.broadcast_to(matrices[c] if matrices.ndim == 3 else matrices[:, c], (batch, nodes, nodes))
                value[:, s] -= (m + m.transpose(0, 2, 1)) * (inv[:, s] ** 2)[:, None, None]
        own_after.append(value)
    result: FloatArray = np.asarray(application_latency(model, tree_totals(model, own_after)))
    return result


@dataclass(frozen=True)
class LatencyForm:
    """A linear call tree's latency as a quadratic form in the weights ``w = vec(W)`` ``(S·N,)``, for one network.

    ``L(w) = E·w + wᵀ R w`` with ``E`` the rps-weighted execution times (at each call's callee) and
    ``R[(p, n), (s, t)] = Σ_c coef_c M_c[n, t]`` over the calls from ``p`` to ``s``. A move of one pod
    of ``s`` from ``a`` to ``t`` changes ``w`` by ``(e_(s,t) - e_(s,a)) / r_s``, so with ``K = R + Rᵀ``:
    ``Δ = ((E + K w)_(s,t) - (E + K w)_(s,a)) / r_s - K_(s,a),(s,t) / r_s²`` (``M_c`` has a zero
    diagonal). Exactly :func:`move_delta_table`'s formula, regrouped so that a state costs two
    matrix-vector products; built once per network (:func:`costs_form` caches it on the costs).
    """

    exec_weights: FloatArray  # E, (S·N,)
    cross: FloatArray  # R, (S·N, S·N)
    symmetric: FloatArray  # K = R + Rᵀ, (S·N, S·N)
    self_blocks: FloatArray  # K's diagonal blocks, (S, N, N)


def latency_form(model: LatencyModel, matrices: FloatArray) -> LatencyForm | None:
    """:class:`LatencyForm` of one network ``(C, N, N)``; ``None`` for a tree with parallel groups or when it would be slower.

    The form costs ``(S·N)²`` per state against ``C·N²`` for :func:`call_terms`; it is used while
    ``S² <= 8 C`` (REACH's clusters: 5 services, 8 calls).
    """
    services = len(model.called_services)
    plan = _table_plan(model, services)
    calls, nodes = matrices.shape[0], matrices.shape[-1]
    if not plan.linear or matrices.ndim != 3 or services * services > 8 * calls:
        return None
    blockwise = np.zeros((services, nodes, services, nodes))
    for c in np.flatnonzero(plan.coefficients):
        blockwise[model.call_parent_service[c], :, model.call_service[c], :] += plan.coefficients[c] * matrices[c]
    cross: FloatArray = blockwise.reshape(services * nodes, services * nodes)
    symmetric = cross + cross.T
    index = np.arange(services)
    blocks = symmetric.reshape(services, nodes, services, nodes)[index, :, index, :]
    exec_weights = (plan.to_weights @ model.call_exec_ms).ravel()
    return LatencyForm(exec_weights, cross, symmetric, blocks)


def costs_form(model: LatencyModel, costs: CallCosts) -> LatencyForm | None:
    """:func:`latency_form` of ``costs`` (cached on the costs object, which belongs to this model)."""
    if "_latency_form" not in costs.__dict__:
        costs.__dict__["_latency_form"] = latency_form(model, costs.matrices)
    form: LatencyForm | None = costs.__dict__["_latency_form"]
    return form


def form_terms(form: LatencyForm, counts: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The matrix products of :func:`move_delta_table` by the form, for states ``counts`` ``(B, S, N)``.

    Returns the latency now ``(B,)``, ``w K`` ``(B, S·N)`` and ``1 / r_s`` ``(B, S)``; the rest of the
    table is elementwise (:func:`_delta_from_form`, or :func:`ceenv.selected_kernel.form_gain_fractions`
    for the valid moves alone).
    """
    batch = counts.shape[0]
    inv: FloatArray = 1.0 / np.maximum(counts.sum(axis=-1), 1.0)  # (B, S)
    w = (counts * inv[:, :, None]).reshape(batch, -1)
    now: FloatArray = w @ form.exec_weights + np.einsum("bi,bi->b", w, w @ form.cross.T)
    coupled: FloatArray = w @ form.symmetric
    return now, coupled, inv


def _delta_from_form(form: LatencyForm, counts: FloatArray) -> tuple[FloatArray, FloatArray]:
    batch, services, nodes = counts.shape
    now, coupled, inv = form_terms(form, counts)
    u = (form.exec_weights + coupled).reshape(batch, services, nodes) * inv[:, :, None]
    delta: FloatArray = u[:, :, None, :] - u[:, :, :, None]
    delta -= form.self_blocks * (inv * inv)[:, :, None, None]
    return now, delta
