"""The evacuation rule: a pod on a failed node moves off before any other move (MODEL.md §4).

A request may list a node with ``available: false`` (the migrator does so for a NotReady or
unreachable node). The policies were never trained with failed nodes, so the decision does not
leave it to them: :func:`evacuation_move` picks the first such pod that has a valid target — first
the pods of services left with no pod on an available node (those services serve nothing until
one is back), then the others, each group in slot order (services in the layout's order, then
replica) — and sends it to the target with the lowest
predicted latency (``latency_of`` the placement after the move; ties and unknown latencies go to
the node with the most free CPU, then the layout's node order). Used by the policy service
(:mod:`bento.policy`) and the greedy stand-in (:mod:`flows.loop.standin`), so both answer the same.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ceenv.layout import BoolArray, IntArray, Layout
from ceenv.payload import DecodedState

EVACUATION_RULE = "evacuate-unavailable-node"


def evacuation_move(
    layout: Layout, state: DecodedState, mask: BoolArray, latency_of: Callable[[IntArray], float | None]
) -> tuple[int, int] | None:
    """``(slot, node)`` of the evacuation to make now, or ``None`` when no pod on a failed node can move."""
    for slot in sorted(state.evacuation_slots(), key=lambda s: (_still_served(layout, state, s), s)):
        targets = [node for node in range(layout.node_count) if mask[node * layout.slot_count + slot]]
        if not targets:
            continue

        def rank(node: int, slot: int = slot) -> tuple[float, float, int]:
            after = state.slot_node.copy()
            after[slot] = node
            latency_ms = latency_of(after)
            return (np.inf if latency_ms is None else latency_ms, -float(state.free_cpu_millicores[node]), node)

        return slot, min(targets, key=rank)
    return None


def _still_served(layout: Layout, state: DecodedState, slot: int) -> bool:
    """Whether the slot's service keeps a pod on an available node without this one."""
    available = state.node_available
    if available is None:  # no node marked: nothing to evacuate, every pod serves
        return True
    same = np.flatnonzero((layout.slot_service == layout.slot_service[slot]) & (state.slot_node >= 0))
    return any(available[state.slot_node[other]] for other in same if other != slot)
