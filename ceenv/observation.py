"""The one encoder: observation, action mask and action index, for the env and the service alike.

:func:`observe`, :func:`move_mask`, :func:`decode_action` and :func:`encode_action` are the only
code that builds observations, masks and action indices; the env calls them on its state and the
policy service calls them on the state decoded from a REACH request (:mod:`ceenv.payload`), so the
two cannot drift apart (a golden test compares them).

Observation version 1 (all float32 in [0, 1]): free CPU per node / the node's largest CPU
availability; free memory per node / its largest memory availability; then, for every slot, a
one-hot of ``N + 1`` entries (index 0 = empty slot, ``1 + n`` = on node ``n``).

Observation version 2 appends two blocks computed from the same placement: for every service, the
fraction of its pods on each node (``S * N`` entries; the weights ``W`` through which replicas enter
the latency formula, MODEL.md §2), then each service's pod count / its slots (``S`` entries). A
layout carries its version, so a policy trained on version 1 is still served with version-1
observations.

Observation version 3 (the default) appends, to version 2, one entry per move action (``N * P``, in
action order): the latency the move would save under the scenario's *nominal* network conditions,
as a fraction of the current nominal latency, clipped to [-1, 1]; 0 for an invalid move. It is the
simulator's own one-step look-ahead, computed by :func:`move_gain_features` from the placement and
the scenario and workload saved with the model, so the env and the service compute it alike; the
policy learns when to follow it and when to plan past it. Its entries may be negative.

Observation version 4 (:func:`ceenv.observation_v4.observe_v4`) is size-agnostic: three blocks of rows, each padded to
the layout's limits (``max_nodes`` x ``max_slots``) with zero rows whose ``present`` entry is 0 —
per node (``NODE_FEATURES``: present, CPU and memory capacity, free CPU and memory fractions, CPU
utilisation by our pods, layer flags cloud/edge/client, share of our pods), per slot
(``SLOT_FEATURES``: present, movable, the service's rps-weighted execution time per request, call
volume, payload received, replicas / slots, the pod's weight 1 / replicas, and its node's CPU
execution time), and per (node, slot) pair in action order (``PAIR_FEATURES``: the move's
latency gain under the costs the policy knows, whether the move is valid, whether the pod is on
that node, the service's execution time on that node relative to its mean, and the fraction of
the service's pods already on that node). No entry depends on which slot a pod is listed in
beyond its own row, so permuting the pods of a request permutes rows and never changes a value;
the pod×node network (:mod:`bento.pod_node`) is equivariant to that permutation. Actions are
``node * max_slots + slot``; :func:`policy_mask` pads the simulator's mask to that index.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ceenv.gains import (
    LatencyForm,
    costs_form,
    form_terms,
    latency_now_and_after_selected,
    linear_tree,
    move_delta_table,
)
from ceenv.latency import CallCosts, LatencyModel
from ceenv.layout import (
    BoolArray,
    FloatArray,
    IntArray,
    Layout,
)
from ceenv.selected_kernel import form_gain_fractions, table_gain_fractions

# Observation versions up to this one compute their move gains under the scenario's nominal
# network, in the env and in the service alike, because they were trained on it; a request's
# measured conditions (ceenv.payload) are for the versions after it.
LAST_NOMINAL_NETWORK_VERSION = 3


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
    gains = None if move_gains is None else move_gains[None]
    obs: npt.NDArray[np.float32] = observe_batch(
        layout, free_cpu_millicores[None], free_memory_bytes[None], slot_node[None], gains
    )[0]
    return obs


def observe_batch(
    layout: Layout,
    free_cpu_millicores: FloatArray,
    free_memory_bytes: FloatArray,
    slot_node: IntArray,
    move_gains: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]:
    """:func:`observe` of ``B`` states at once: arguments with a leading batch axis, result ``(B, size)``."""
    n = layout.node_count
    batch = slot_node.shape[0]
    obs = np.zeros((batch, layout.observation_size), dtype=np.float32)
    # Free resources are never negative (the env keeps them so, the schema rejects it); a node
    # bigger than the one trained on is capped at 1 rather than leaving the observation space.
    np.minimum(free_cpu_millicores / layout._cpu_scale, 1.0, out=obs[:, :n], casting="unsafe")
    np.minimum(free_memory_bytes / layout._memory_scale, 1.0, out=obs[:, n : 2 * n], casting="unsafe")
    obs[np.arange(batch)[:, None], layout._onehot_base + slot_node] = 1.0
    if layout.version >= 2:
        services = len(layout.service_names)
        counts = placement_counts_batch(layout, slot_node)
        pods = counts.sum(axis=2)
        start = 2 * n + layout.slot_count * (n + 1)
        obs[:, start : start + services * n] = (counts / np.maximum(pods, 1)[:, :, None]).reshape(batch, -1)
        obs[:, start + services * n : start + services * (n + 1)] = pods / np.array(layout.service_slots)
    if layout.needs_move_gains:
        if move_gains is None:
            raise ValueError(f"observation version {layout.version} needs move_gains (see move_gain_features)")
        obs[:, -n * layout.slot_count :] = move_gains
    return obs


# Table entries (B·S·N²) from which a tree with parallel groups evaluates only the valid moves
# (_selected_gain_fractions, the compiled loop of ceenv.selected_kernel). Measured 2026-12-02 (session
# 22, an ad-hoc script, best of 30), ms by table / by moves: one state of 7-21 aggregator_parallel,
# 245 entries, 0.20 / 0.20; one of 13-29, 845, 0.29 / 0.26; two of 13-29, 1,690, 0.38 / 0.25; one of
# 19-37, 1,805, 0.35 / 0.30; 64 of 13-29, 54,080, 4.6 / 0.90; bench_general's large-3001, 10,108, 0.79 /
# 0.50, and large-3000, 12,996, 1.74 / 0.55; the limits (40 nodes, 26 services), 41,600, 36 / 0.71.
# The loop is the faster from a few hundred entries up, yet with the threshold at 1,000 the general
# training config's 16 clusters (largest table 2,527 entries) stepped no faster (1,329-1,460 steps/s
# against 1,402-1,516 at 12,000, interleaved), so it stays where the numpy loop's crossover put it
# and training keeps its code path.
SELECTED_GAINS_FROM = 12_000


def move_gain_features(
    layout: Layout, model: LatencyModel, costs: CallCosts, slot_node: IntArray, mask: BoolArray
) -> npt.NDArray[np.float32]:
    """Per move action: (latency now - latency after the move) / latency now under ``costs``, in [-1, 1].

    Invalid moves get 0. Only the terms of the moved service change, so every move is evaluated
    incrementally from one pass over the state (:func:`ceenv.gains.move_delta_table`; for a large
    table of a tree with parallel groups, the valid moves only: :data:`SELECTED_GAINS_FROM`).
    """
    gains: npt.NDArray[np.float32] = move_gain_features_batch(
        layout, model, costs.matrices, slot_node[None], mask[None], form=costs_form(model, costs)
    )[0]
    return gains


def move_gain_features_batch(
    layout: Layout,
    model: LatencyModel,
    matrices: FloatArray,
    slot_node: IntArray,
    mask: BoolArray,
    counts: FloatArray | None = None,
    form: LatencyForm | None = None,
) -> npt.NDArray[np.float32]:
    """:func:`move_gain_features` of ``B`` states: ``slot_node`` ``(B, P)``, ``mask`` ``(B, A)`` → ``(B, N * P)``.

    ``matrices`` are the per-call network matrices, shared ``(C, N, N)`` (:class:`CallCosts`) or
    one set per state ``(B, C, N, N)``; ``counts`` (:func:`placement_counts_batch` of ``slot_node``)
    saves recomputing them; ``form`` (:func:`ceenv.gains.latency_form` of shared ``matrices``) speeds
    the table up.
    """
    n, slots = layout.node_count, layout.slot_count
    batch = slot_node.shape[0]
    if counts is None:
        counts = placement_counts_batch(layout, slot_node)
    # The formula needs a pod of every called service; a state without one keeps zero gains.
    ready = counts.sum(axis=2)[:, model.called_services].all(axis=1)
    if not ready.all():
        gains = np.zeros((batch, n * slots), dtype=np.float32)
        if ready.any():
            per_state = matrices if matrices.ndim == 3 else matrices[ready]
            gains[ready] = _gain_fractions(layout, model, per_state, slot_node[ready], mask[ready], counts[ready], form)
        return gains
    return _gain_fractions(layout, model, matrices, slot_node, mask, counts, form)


def _gain_fractions(
    layout: Layout,
    model: LatencyModel,
    matrices: FloatArray,
    slot_node: IntArray,
    mask: BoolArray,
    counts: FloatArray,
    form: LatencyForm | None,
) -> npt.NDArray[np.float32]:
    """The gains of states that have a pod of every called service, ``(B, N * P)``."""
    if form is None and counts.size * layout.node_count >= SELECTED_GAINS_FROM and not linear_tree(model):
        return _selected_gain_fractions(layout, model, matrices, slot_node, mask, counts)
    if form is not None:  # the form's products by numpy, each valid move's entry in one compiled pass
        now, coupled, inv = form_terms(form, counts)
        return form_gain_fractions(
            now, coupled, form.exec_weights, inv, form.self_blocks, layout.slot_service, slot_node, mask
        )
    now, delta = move_delta_table(model, counts, matrices)
    # Each valid move's entry of the table as a fraction of the latency now, clipped: one compiled
    # pass (numpy's gather, division, clip and where were a third of the features' time on 13-29).
    return table_gain_fractions(now, delta, layout.slot_service, slot_node, mask)


def _selected_gain_fractions(
    layout: Layout, model: LatencyModel, matrices: FloatArray, slot_node: IntArray, mask: BoolArray, counts: FloatArray
) -> npt.NDArray[np.float32]:
    """:func:`_gain_fractions` of a tree with parallel groups: only the valid moves, each distinct one once.

    Pods of one service on one node are interchangeable, so the valid (slot, target) moves of a
    state collapse to distinct (service, source, target) moves, evaluated by
    :func:`ceenv.gains.latency_now_and_after_selected` (only the calls a move changes and their
    ancestors are re-run). The full table (:func:`ceenv.gains.move_delta_table`) re-runs the whole
    tree over every (service, source, target) of every state: ``S·N²`` entries per call where a
    placement has a few valid moves per pod (at the limits, 40 nodes and 25 services: 40,000
    entries against some 2,000 distinct moves).
    """
    n, slots = layout.node_count, layout.slot_count
    services = counts.shape[1]
    batch = slot_node.shape[0]
    gains = np.zeros((batch, n, slots), dtype=np.float32)
    state, target, slot = np.nonzero(mask[:, :-1].reshape(batch, n, slots))
    if not len(state):
        return gains.reshape(batch, -1)
    # An empty slot's move (a mask not built by move_mask) gets the table's value: source node 0.
    service, source = layout.slot_service[slot], np.maximum(slot_node[state, slot], 0)
    key = ((state * services + service) * n + source) * n + target
    distinct, inverse = np.unique(key, return_inverse=True)
    rest, t = np.divmod(distinct, n)
    rest, a = np.divmod(rest, n)
    b, s = np.divmod(rest, services)
    now, after = latency_now_and_after_selected(model, counts, matrices, b, s, a, t)
    fractions = (after[inverse] - now[state]) / -np.maximum(now[state], 1e-9)
    gains[state, target, slot] = np.clip(fractions, -1.0, 1.0)
    return gains.reshape(batch, -1)


def placement_counts_batch(layout: Layout, slot_node: IntArray) -> FloatArray:
    """:func:`ceenv.layout.placement_counts` of ``B`` placements ``(B, P)`` → ``(B, S, N)``."""
    batch = slot_node.shape[0]
    services, n = len(layout.service_names), layout.node_count
    occupied = slot_node >= 0
    rows = np.broadcast_to(np.arange(batch)[:, None], slot_node.shape)
    flat = (rows * services + layout.slot_service) * n + slot_node
    counts = np.bincount(flat[occupied], minlength=batch * services * n)
    result: FloatArray = counts.reshape(batch, services, n).astype(np.float64)
    return result


def move_mask(layout: Layout, slot_node: IntArray, target_ok: BoolArray) -> BoolArray:
    """Valid actions: a pod in the slot, movable, another node, and ``target_ok[slot, node]``.

    ``target_ok`` (P, N) is the capacity and layer rule: the simulator derives it from free
    resources, the service from ``pod_deployable``. STOP (the last action) is always valid.
    """
    mask: BoolArray = move_mask_batch(layout, slot_node[None], target_ok[None])[0]
    return mask


def move_mask_batch(layout: Layout, slot_node: IntArray, target_ok: BoolArray) -> BoolArray:
    """:func:`move_mask` of ``B`` states: ``slot_node`` ``(B, P)``, ``target_ok`` ``(B, P, N)`` → ``(B, A)``."""
    n, slots = layout.node_count, layout.slot_count
    batch = slot_node.shape[0]
    mask = np.empty((batch, n * slots + 1), dtype=bool)
    movable = (slot_node >= 0) & layout.slot_movable  # (B, P)
    moves = target_ok.transpose(0, 2, 1) & movable[:, None, :]  # (B, N, P)
    rows, movable_slots = np.nonzero(movable)
    moves[rows, slot_node[rows, movable_slots], movable_slots] = False  # a move must change the node
    mask[:, :-1] = moves.reshape(batch, -1)
    mask[:, -1] = True
    return mask


def decode_action(layout: Layout, action: int) -> tuple[int, int] | None:
    """Action index → ``(slot, node)``, or ``None`` for STOP (padded index from version 4)."""
    if not 0 <= action < layout.action_count:
        raise ValueError(f"action {action} is outside 0..{layout.action_count - 1}")
    if action == layout.stop_action:
        return None
    slot, node = action % layout.action_slots, action // layout.action_slots
    if slot >= layout.slot_count or node >= layout.node_count:
        return None  # a padding row: never valid (the mask excludes it)
    return slot, node


def encode_action(layout: Layout, slot: int, node: int) -> int:
    """``(slot, node)`` → action index."""
    return node * layout.action_slots + slot


def native_action(layout: Layout, action: int) -> int:
    """A policy action index → the simulator's unpadded index ``node * P + slot`` (STOP → ``N * P``)."""
    decoded = decode_action(layout, action)
    if decoded is None:
        return layout.node_count * layout.slot_count
    return decoded[1] * layout.slot_count + decoded[0]


def policy_mask(layout: Layout, mask: BoolArray) -> BoolArray:
    """The simulator's mask (``N * P + 1``, :func:`move_mask`) in the policy's action index."""
    if not layout.padded:
        return mask
    n, slots = layout.node_count, layout.slot_count
    padded = np.zeros(layout.action_count, dtype=bool)
    padded[:-1].reshape(layout.max_nodes, layout.max_slots)[:n, :slots] = mask[:-1].reshape(n, slots)
    padded[-1] = True
    return padded


def encode_state(
    layout: Layout,
    model: LatencyModel,
    costs: CallCosts,
    free_cpu_millicores: FloatArray,
    free_memory_bytes: FloatArray,
    slot_node: IntArray,
    mask: BoolArray,
) -> npt.NDArray[np.float32]:
    """The observation of a state in the layout's version (the env and the service both call this).

    ``mask`` is the simulator's :func:`move_mask`; ``costs`` the network costs the policy may know.
    """
    if layout.padded:
        from ceenv.observation_v4 import observe_v4  # the module imports this one's helpers

        return observe_v4(layout, model, costs, free_cpu_millicores, free_memory_bytes, slot_node, mask)
    gains = move_gain_features(layout, model, costs, slot_node, mask) if layout.needs_move_gains else None
    return observe(layout, free_cpu_millicores, free_memory_bytes, slot_node, gains)
