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

from ceenv.latency import CallCosts, LatencyModel
from ceenv.layout import BoolArray, FloatArray, IntArray, Layout, placement_counts


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
    n = layout.node_count
    obs = np.zeros(layout.observation_size, dtype=np.float32)
    # Free resources are never negative (the env keeps them so, the schema rejects it); a node
    # bigger than the one trained on is capped at 1 rather than leaving the observation space.
    np.minimum(free_cpu_millicores / layout._cpu_scale, 1.0, out=obs[:n], casting="unsafe")
    np.minimum(free_memory_bytes / layout._memory_scale, 1.0, out=obs[n : 2 * n], casting="unsafe")
    obs[layout._onehot_base + slot_node] = 1.0
    if layout.version >= 2:
        services = len(layout.service_names)
        counts = placement_counts(layout, slot_node)
        pods = counts.sum(axis=1)
        start = 2 * n + layout.slot_count * (n + 1)
        obs[start : start + services * n] = (counts / np.maximum(pods, 1)[:, None]).ravel()
        obs[start + services * n : start + services * (n + 1)] = pods / np.array(layout.service_slots)
    if layout.needs_move_gains:
        if move_gains is None:
            raise ValueError(f"observation version {layout.version} needs move_gains (see move_gain_features)")
        obs[-n * layout.slot_count :] = move_gains
    return obs


def move_gain_features(
    layout: Layout, model: LatencyModel, costs: CallCosts, slot_node: IntArray, mask: BoolArray
) -> npt.NDArray[np.float32]:
    """Per move action: (latency now - latency after the move) / latency now under ``costs``, in [-1, 1].

    Invalid moves get 0. Pods of one service on one node are interchangeable, so each distinct
    (service, source, target) move is evaluated once, all in one batch.
    """
    n, slots = layout.node_count, layout.slot_count
    gains = np.zeros(n * slots, dtype=np.float32)
    counts = placement_counts(layout, slot_node)
    if not counts.sum(axis=1)[model.called_services].all():
        return gains  # the formula needs a pod of every called service
    actions = np.flatnonzero(mask[:-1])
    if actions.size == 0:
        return gains
    action_slot, target = actions % slots, actions // slots
    service, source = layout.slot_service[action_slot], slot_node[action_slot]
    keys = (service * n + source) * n + target
    distinct, inverse = np.unique(keys, return_inverse=True)
    d_service, rest = np.divmod(distinct, n * n)
    d_source, d_target = np.divmod(rest, n)
    batch: FloatArray = np.repeat(counts[None], distinct.size, axis=0)
    index = np.arange(distinct.size)
    batch[index, d_service, d_source] -= 1.0
    batch[index, d_service, d_target] += 1.0
    now = model.latency(counts, costs)
    after = model.latency_batch(batch, costs)
    gains[actions] = np.clip((now - after) / max(now, 1e-9), -1.0, 1.0)[inverse]
    return gains


def move_mask(layout: Layout, slot_node: IntArray, target_ok: BoolArray) -> BoolArray:
    """Valid actions: a pod in the slot, movable, another node, and ``target_ok[slot, node]``.

    ``target_ok`` (P, N) is the capacity and layer rule: the simulator derives it from free
    resources, the service from ``pod_deployable``. STOP (the last action) is always valid.
    """
    n, slots = layout.node_count, layout.slot_count
    mask = np.empty(n * slots + 1, dtype=bool)
    moves = mask[:-1].reshape(n, slots)
    movable = (slot_node >= 0) & layout.slot_movable
    np.logical_and(target_ok.T, movable, out=moves)
    movable_slots = np.flatnonzero(movable)
    moves[slot_node[movable_slots], movable_slots] = False  # a move must change the node
    mask[-1] = True
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
