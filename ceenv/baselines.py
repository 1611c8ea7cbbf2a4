"""Baseline rescheduling policies that every evaluation reports beside the learned policy.

Each runner takes a :class:`ceenv.simulator.Simulator` in its start state, works on a copy (the
input is never changed) and returns an :class:`Outcome`: no-op (keep the scheduler's placement),
random valid moves, greedy (best single move by the model until no move gains more than the step
cost) and a utilisation balancer in the spirit of the Kubernetes descheduler's
LowNodeUtilization. The best-known placement (the ceiling) is in :mod:`ceenv.search`. Used by the
evaluation, ``reach sim demo`` and the tests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ceenv.layout import BoolArray, FloatArray
from ceenv.simulator import DEFAULT_STEP_COST_MS, Simulator

DEFAULT_MAX_MOVES = 100


@dataclass(frozen=True)
class Outcome:
    """What a method did to one start state."""

    method: str
    start_latency_ms: float
    end_latency_ms: float
    moves: int
    decision_seconds: float
    invalid_actions: int = 0
    placement: dict[str, list[str]] = field(default_factory=dict)

    @property
    def reduction_ms(self) -> float:
        return self.start_latency_ms - self.end_latency_ms

    @property
    def reduction_pct(self) -> float:
        return 100.0 * self.reduction_ms / self.start_latency_ms if self.start_latency_ms > 0 else 0.0


def _outcome(method: str, start_ms: float, sim: Simulator, moves: int, started: float) -> Outcome:
    return Outcome(method, start_ms, sim.latency_ms, moves, time.perf_counter() - started, 0, sim.placement())


def run_noop(start: Simulator) -> Outcome:
    """Keep the placement the scheduler left."""
    return _outcome("noop", start.latency_ms, start, 0, time.perf_counter())


def run_random(start: Simulator, rng: np.random.Generator, max_moves: int = DEFAULT_MAX_MOVES) -> Outcome:
    """Uniformly random valid actions (STOP included) until STOP or ``max_moves`` moves."""
    began = time.perf_counter()
    sim = start.copy()
    moves = 0
    while moves < max_moves:
        mask = sim.action_mask()  # the simulator's unpadded index: node * P + slot, STOP last
        valid = np.flatnonzero(mask)
        action = int(valid[rng.integers(valid.size)])
        if action == mask.size - 1:
            break
        sim.move(action % sim.layout.slot_count, action // sim.layout.slot_count)
        moves += 1
    return _outcome("random", start.latency_ms, sim, moves, began)


def best_move(sim: Simulator, min_gain_ms: float, action_mask: BoolArray | None = None) -> tuple[int, int] | None:
    """Greedy's decision: the valid move that lowers the latency most (all distinct moves scored in
    one batch), or ``None`` when none gains more than ``min_gain_ms``. ``action_mask`` replaces the
    simulator's own mask (the greedy stand-in passes the request's ``pod_deployable``)."""
    candidates = sim.distinct_moves(action_mask)
    if not candidates:
        return None
    after = sim.latency_after(candidates)
    best = int(np.argmin(after))
    return candidates[best] if sim.latency_ms - after[best] > min_gain_ms else None


def climb(sim: Simulator, min_gain_ms: float, max_moves: int) -> int:
    """Apply :func:`best_move` while there is one; change ``sim`` in place and return the number of moves made."""
    moves = 0
    while moves < max_moves:
        move = best_move(sim, min_gain_ms)
        if move is None:
            break
        sim.move(*move)
        moves += 1
    return moves


def run_greedy(
    start: Simulator, step_cost_ms: float = DEFAULT_STEP_COST_MS, max_moves: int = DEFAULT_MAX_MOVES
) -> Outcome:
    """Apply the single best move by the latency model until no move gains more than ``step_cost_ms``."""
    began = time.perf_counter()
    sim = start.copy()
    moves = climb(sim, step_cost_ms, max_moves)
    return _outcome("greedy", start.latency_ms, sim, moves, began)


def node_utilization(sim: Simulator) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of each node's CPU and memory requested by our pods (1 = full, 0 = empty)."""
    cpu_total = np.maximum(sim.conditions.cpu_millicores, 1.0)
    memory_total = np.maximum(sim.conditions.memory_bytes, 1.0)
    return 1.0 - sim.free_cpu_millicores / cpu_total, 1.0 - sim.free_memory_bytes / memory_total


def run_balancer(
    start: Simulator,
    low_threshold: float = 0.2,
    high_threshold: float = 0.5,
    max_moves: int = DEFAULT_MAX_MOVES,
) -> Outcome:
    """LowNodeUtilization: move pods off over-utilised nodes onto under-utilised ones.

    A node is over-utilised when its CPU or memory use exceeds ``high_threshold``, under-utilised
    when both are below ``low_threshold``. Pods leave the most loaded node first, to the least
    loaded under-utilised node that stays within ``high_threshold``; each pod moves at most once.
    The balancer ignores latency, like the descheduler.

    "At most once" is kept per (service, node), not per slot: a padded layout (observation
    version 4) re-sorts the slots after every move, so a slot index stops naming its pod
    (remembering slots made the balancer skip pods that had never moved). Pods of one service on
    one node are interchangeable; ``arrived[s, n]`` counts those that came to node ``n`` by a
    move, and only the others (``counts − arrived``) may still leave. ``moves`` counts the moves made.
    """
    began = time.perf_counter()
    sim = start.copy()
    arrived = np.zeros_like(sim.counts)
    moves = 0
    while moves < max_moves:
        move = _balancing_move(sim, arrived, low_threshold, high_threshold)
        if move is None:
            break
        slot, target = move
        arrived[sim.layout.slot_service[slot], target] += 1.0
        sim.move(slot, target)
        moves += 1
    return _outcome("balancer", start.latency_ms, sim, moves, began)


def _balancing_move(sim: Simulator, arrived: FloatArray, low: float, high: float) -> tuple[int, int] | None:
    """The next eviction: a pod that has not moved yet (``sim.counts > arrived`` for its service and
    node), from the most loaded over-utilised node, to the least loaded under-utilised node that
    stays at or below ``high`` after receiving it. Services are tried by index, the slot order."""
    cpu, memory = node_utilization(sim)
    load = np.maximum(cpu, memory)
    under = (cpu < low) & (memory < low)
    over = [int(n) for n in np.argsort(-load) if cpu[n] > high or memory[n] > high]
    mask = sim.action_mask()[:-1].reshape(sim.layout.node_count, sim.layout.slot_count)
    cpu_total = np.maximum(sim.conditions.cpu_millicores, 1.0)
    memory_total = np.maximum(sim.conditions.memory_bytes, 1.0)
    slot_service = sim.layout.slot_service
    for source in over:
        unmoved = sim.counts[:, source] > arrived[:, source]
        for service in np.flatnonzero(unmoved):
            # Any pod of this service on this node stands for all: the mask's column is the same for each.
            slot = int(np.flatnonzero((sim.slot_node == source) & (slot_service == service))[0])
            cpu_after = cpu + sim.request_cpu_millicores[service] / cpu_total
            memory_after = memory + sim.request_memory_bytes[service] / memory_total
            targets = np.flatnonzero(mask[:, slot] & under & (cpu_after <= high) & (memory_after <= high))
            if targets.size:
                return slot, int(targets[np.argmin(load[targets])])
    return None
