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

Observation version 4 (:func:`observe_v4`) is size-agnostic: three blocks of rows, each padded to
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

from ceenv.gains import latency_after_moves
from ceenv.latency import CallCosts, LatencyModel
from ceenv.layout import (
    NODE_FEATURES,
    PAIR_FEATURES,
    SLOT_FEATURES,
    BoolArray,
    FloatArray,
    IntArray,
    Layout,
    placement_counts,
)

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


def move_gain_features(
    layout: Layout, model: LatencyModel, costs: CallCosts, slot_node: IntArray, mask: BoolArray
) -> npt.NDArray[np.float32]:
    """Per move action: (latency now - latency after the move) / latency now under ``costs``, in [-1, 1].

    Invalid moves get 0. Only the terms of the moved service change, so every move is evaluated
    incrementally from one pass over the state (:func:`ceenv.gains.latency_after_moves`).
    """
    gains: npt.NDArray[np.float32] = move_gain_features_batch(
        layout, model, costs.matrices, slot_node[None], mask[None]
    )[0]
    return gains


def move_gain_features_batch(
    layout: Layout, model: LatencyModel, matrices: FloatArray, slot_node: IntArray, mask: BoolArray
) -> npt.NDArray[np.float32]:
    """:func:`move_gain_features` of ``B`` states: ``slot_node`` ``(B, P)``, ``mask`` ``(B, A)`` → ``(B, N * P)``.

    ``matrices`` are the per-call network matrices, shared ``(C, N, N)`` (:class:`CallCosts`) or
    one set per state ``(B, C, N, N)``.
    """
    n, slots = layout.node_count, layout.slot_count
    batch = slot_node.shape[0]
    gains = np.zeros((batch, n * slots), dtype=np.float32)
    counts = placement_counts_batch(layout, slot_node)
    # The formula needs a pod of every called service; a state without one keeps zero gains.
    ready = counts.sum(axis=2)[:, model.called_services].all(axis=1) & mask[:, :-1].any(axis=1)
    if not ready.any():
        return gains
    if not ready.all():
        slot_node, counts, mask = slot_node[ready], counts[ready], mask[ready]
        matrices = matrices if matrices.ndim == 3 else matrices[ready]
    now, after = latency_after_moves(model, counts, matrices, layout.slot_service, slot_node, layout.slot_movable)
    fractions = np.clip((now[:, None, None] - after) / np.maximum(now, 1e-9)[:, None, None], -1.0, 1.0)
    valid = mask[:, :-1]
    values = np.where(valid, fractions.transpose(0, 2, 1).reshape(valid.shape), 0.0)
    if ready.all():
        gains[:] = values
    else:
        gains[ready] = values
    return gains


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
        return observe_v4(layout, model, costs, free_cpu_millicores, free_memory_bytes, slot_node, mask)
    gains = move_gain_features(layout, model, costs, slot_node, mask) if layout.needs_move_gains else None
    return observe(layout, free_cpu_millicores, free_memory_bytes, slot_node, gains)


# Scales of observation version 4: logarithms keep clusters of any size and speed in a few units.
_LOG_CORES, _LOG_GIB, _LOG_MS, _LOG_CALLS, _LOG_BYTES = np.log1p([128.0, 512.0, 1000.0, 32.0, 1e8])
_LAYER_FLAGS = ("cloud", "edge", "client")


def _service_tables(layout: Layout, model: LatencyModel) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per service: execution ms per request on each node ``(S, N)``, calls and bytes per request ``(S,)``.

    Each call counts with its endpoint's rps weight; cached on the model (it depends on nothing else).
    """
    cached = model.__dict__.get("_v4_tables")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    call_weight = np.zeros(len(model.call_groups))

    def visit(call: int, weight: float) -> None:
        call_weight[call] = weight
        for group in model.call_groups[call]:
            for callee in group:
                visit(callee, weight)

    for root, weight in zip(model.roots, model.endpoint_weights, strict=True):
        visit(root, weight)
        call_weight[root] = 0.0  # the root is the client's own request, not a call to it
    services = len(layout.service_names)
    exec_ms = np.zeros((services, layout.node_count))
    np.add.at(exec_ms, model.call_service, call_weight[:, None] * model.call_exec_ms)
    calls: FloatArray = np.bincount(model.call_service, weights=call_weight, minlength=services).astype(np.float64)
    data: FloatArray = np.bincount(
        model.call_service, weights=call_weight * model.call_data_bytes, minlength=services
    ).astype(np.float64)
    tables = (exec_ms, calls, data)
    model.__dict__["_v4_tables"] = tables
    return tables


def observe_v4(
    layout: Layout,
    model: LatencyModel,
    costs: CallCosts,
    free_cpu_millicores: FloatArray,
    free_memory_bytes: FloatArray,
    slot_node: IntArray,
    mask: BoolArray,
) -> npt.NDArray[np.float32]:
    """Observation version 4 (see the module docstring): node, slot and pair rows, padded."""
    n, slots, max_n, max_p = layout.node_count, layout.slot_count, layout.max_nodes, layout.max_slots
    obs = np.zeros(layout.observation_size, dtype=np.float32)
    nodes = obs[: max_n * NODE_FEATURES].reshape(max_n, NODE_FEATURES)
    slot_rows = obs[max_n * NODE_FEATURES : max_n * NODE_FEATURES + max_p * SLOT_FEATURES].reshape(max_p, SLOT_FEATURES)
    pairs = obs[max_n * NODE_FEATURES + max_p * SLOT_FEATURES :].reshape(max_n, max_p, PAIR_FEATURES)
    exec_ms, calls, data = _service_tables(layout, model)
    counts = placement_counts(layout, slot_node)
    replicas = counts.sum(axis=1)
    occupied = slot_node >= 0
    cpu_scale, memory_scale = layout._cpu_scale, layout._memory_scale
    nodes[:n, 0] = 1.0
    nodes[:n, 1] = np.log1p(cpu_scale / 1000.0) / _LOG_CORES
    nodes[:n, 2] = np.log1p(memory_scale / 2**30) / _LOG_GIB
    nodes[:n, 3] = np.clip(free_cpu_millicores / cpu_scale, 0.0, 1.0)
    nodes[:n, 4] = np.clip(free_memory_bytes / memory_scale, 0.0, 1.0)
    nodes[:n, 5] = 1.0 - nodes[:n, 3]
    for k, flag in enumerate(_LAYER_FLAGS):
        nodes[:n, 6 + k] = np.array(layout.node_layers) == flag
    nodes[:n, 9] = counts.sum(axis=0) / max(float(occupied.sum()), 1.0)
    service = layout.slot_service
    mean_exec = exec_ms.mean(axis=1)
    slot_rows[:slots, 0] = occupied
    slot_rows[:slots, 1] = layout.slot_movable & occupied
    slot_rows[:slots, 2] = np.log1p(mean_exec[service]) / _LOG_MS
    slot_rows[:slots, 3] = np.log1p(calls[service]) / _LOG_CALLS
    slot_rows[:slots, 4] = np.log1p(data[service]) / _LOG_BYTES
    slot_rows[:slots, 5] = replicas[service] / np.array(layout.service_slots)[service]
    slot_rows[:slots, 6] = occupied / np.maximum(replicas[service], 1.0)
    here = np.where(occupied, slot_node, 0)
    slot_rows[:slots, 7] = occupied * np.log1p(exec_ms[service, here]) / _LOG_MS
    gains = move_gain_features(layout, model, costs, slot_node, mask).reshape(n, slots)
    pairs[:n, :slots, 0] = gains
    pairs[:n, :slots, 1] = mask[:-1].reshape(n, slots)
    pairs[:n, :slots, 2] = (slot_node[None, :] == np.arange(n)[:, None]) & occupied[None, :]
    relative = np.log((exec_ms + 1e-3) / (mean_exec[:, None] + 1e-3))  # (S, N)
    pairs[:n, :slots, 3] = np.clip(relative[service].T, -1.0, 1.0) * occupied[None, :]
    fraction = counts / np.maximum(replicas, 1.0)[:, None]  # (S, N)
    pairs[:n, :slots, 4] = fraction[service].T * occupied[None, :]
    return obs
