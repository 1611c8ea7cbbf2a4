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
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ceenv.gains import latency_after_moves
from ceenv.latency import CallCosts, LatencyModel
from ceenv.layout import BoolArray, FloatArray, IntArray, Layout

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
    """Action index → ``(slot, node)``, or ``None`` for STOP."""
    if not 0 <= action < layout.action_count:
        raise ValueError(f"action {action} is outside 0..{layout.action_count - 1}")
    if action == layout.stop_action:
        return None
    return action % layout.slot_count, action // layout.slot_count


def encode_action(layout: Layout, slot: int, node: int) -> int:
    """``(slot, node)`` → action index."""
    return node * layout.slot_count + slot
