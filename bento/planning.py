"""Decision-time planning with the twin: a short beam search over move sequences, seeded by the policy.

:func:`plan_action` asks the policy for its ``k`` most likely valid moves, adds the ``width``
moves that gain most on a copy of the simulator whose costs are the *known* ones (what the policy
may know: the measured network, or the nominal one), and searches ``horizon`` moves deep from
them (a beam of ``width`` placements per depth, :func:`ceenv.search.expand`). Each sequence is
valued at its known latency plus ``margin × step_cost_ms`` per move; the first move of the best
sequence is the answer, and STOP when no sequence beats staying put, i.e. when no sequence of
moves gains more than ``margin`` step costs per move. The margin (> 1) guards against moves whose
gain is within the measurement noise of the known network. Nothing here sees the true drawn
network. The answer is always STOP or a move that ``mask`` allows. :func:`twin_from_state` builds
the simulator from a served request's state. Used by :class:`bento.policy.Policy` (bento
arguments ``plan_k``, ``plan_horizon``, ``plan_width``, ``plan_margin``; their defaults:
:mod:`bento.planning_settings`), the evaluation
(:mod:`flows.evaluation.units`, so the gate judges what serves) and ``benchmarks/bench_general.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bento.planning_settings import CHOSEN_PLAN_K, DEFAULTS
from ceenv.baselines import climb
from ceenv.latency import CallCosts, Conditions, LatencyModel, nominal_conditions
from ceenv.layout import FloatArray, IntArray, Layout, placement_counts
from ceenv.observation import decode_action, encode_action, policy_mask
from ceenv.search import TIE_DECIMALS, expand, latencies_after
from ceenv.simulator import Simulator

DEFAULT_WIDTH = DEFAULTS.plan_width
DEFAULT_HORIZON = DEFAULTS.plan_horizon
DEFAULT_MARGIN = DEFAULTS.plan_margin
DEFAULT_SHORTER_WITHIN = 0.0  # step costs: prefer a shorter sequence valued this close to the best
DEFAULT_GREEDY_SLACK: int | None = None  # None: the horizon alone bounds a sequence's length
_EPSILON_MS = 1e-9


def _twin(sim: Simulator) -> Simulator:
    """A copy of ``sim`` whose latency is computed with the known costs (the policy's view)."""
    twin = sim.copy()
    twin.costs = sim.known_costs
    twin.latency_ms = twin.model.latency(twin.counts, twin.costs)
    return twin


def _logits(model: Any, obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        tensor = torch.as_tensor(obs[None], dtype=torch.float32)
        distribution = model.policy.get_distribution(tensor, action_masks=mask[None])
        logits: np.ndarray = distribution.distribution.logits[0].numpy()
    return logits


def _native_mask(layout: Layout, mask: np.ndarray) -> np.ndarray:
    """The policy's (padded) action mask in the simulator's index (``N * P + 1``, STOP last)."""
    if not layout.padded:
        return mask
    n, slots = layout.node_count, layout.slot_count
    native = np.zeros(n * slots + 1, dtype=bool)
    native[:-1] = mask[:-1].reshape(layout.max_nodes, layout.max_slots)[:n, :slots].reshape(-1)
    native[-1] = True
    return native


def _root_moves(model: Any, twin: Simulator, mask: np.ndarray, k: int, width: int) -> list[tuple[int, int]]:
    """The first moves to search from: the policy's top ``k`` valid moves, then the twin's ``width`` best."""
    layout = twin.layout
    moves: list[tuple[int, int]] = []
    if k > 0:
        logits = _logits(model, twin.observation(), mask)
        valid = np.flatnonzero(mask[:-1])
        for action in valid[np.argsort(-logits[valid], kind="stable")][:k]:
            decoded = decode_action(layout, int(action))
            if decoded is not None:
                moves.append(decoded)
    distinct = twin.distinct_move_array(_native_mask(layout, mask))
    if len(distinct):
        after = latencies_after([twin], [distinct])[0]
        best_first = np.argsort(np.round(after, TIE_DECIMALS), kind="stable")
        moves += [(int(distinct[j, 0]), int(distinct[j, 1])) for j in best_first[:width]]
    return list(dict.fromkeys(moves))


def plan_action(
    model: Any,
    sim: Simulator,
    k: int = CHOSEN_PLAN_K,
    horizon: int = DEFAULT_HORIZON,
    step_cost_ms: float = 1.25,
    mask: np.ndarray | None = None,
    width: int = DEFAULT_WIDTH,
    margin: float = DEFAULT_MARGIN,
    shorter_within: float = DEFAULT_SHORTER_WITHIN,
    greedy_slack: int | None = DEFAULT_GREEDY_SLACK,
) -> int:
    """The policy action (padded index) that starts the best ``horizon``-move sequence on the twin, or STOP.

    ``mask`` (the policy's action index) restricts the first move, e.g. to a request's
    ``pod_deployable``; later moves of a sequence are the twin's own valid moves. Among sequences
    valued within ``shorter_within`` step costs of the best, the shortest one's first move is the
    answer. With ``greedy_slack``, no sequence is longer than the moves greedy would make from here
    on the twin (single moves gaining more than a step cost) plus ``greedy_slack``.
    """
    if horizon < 1 or width < 1 or k < 0 or margin < 0 or shorter_within < 0 or (greedy_slack or 0) < 0:
        raise ValueError(
            f"planning needs horizon >= 1, width >= 1, k >= 0, margin >= 0, shorter_within >= 0 and "
            f"greedy_slack >= 0; got horizon={horizon}, width={width}, k={k}, margin={margin}, "
            f"shorter_within={shorter_within}, greedy_slack={greedy_slack}"
        )
    layout = sim.layout
    mask = policy_mask(layout, sim.action_mask()) if mask is None else mask
    twin = _twin(sim)
    if greedy_slack is not None:
        horizon = min(horizon, climb(twin.copy(), step_cost_ms, horizon) + greedy_slack)
    roots = _root_moves(model, twin, mask, k, width)
    if not roots or horizon < 1:
        return int(layout.stop_action)
    best = _best_per_depth(twin, roots, horizon, width, margin * step_cost_ms)
    if not best:
        return int(layout.stop_action)
    best_value = min(value for value, _ in best.values())
    depth = min(d for d, (value, _) in best.items() if value <= best_value + shorter_within * step_cost_ms)
    return encode_action(layout, *roots[best[depth][1]])


def _best_per_depth(
    twin: Simulator, roots: list[tuple[int, int]], horizon: int, width: int, move_cost_ms: float
) -> dict[int, tuple[float, int]]:
    """Depth → (value, root index) of the best sequence of that many moves that beats staying put.

    A sequence's value is its latency on the twin plus ``move_cost_ms`` per move; the beam keeps
    ``width`` placements per depth (:func:`ceenv.search.expand`).
    """
    stay = twin.latency_ms - _EPSILON_MS
    best: dict[int, tuple[float, int]] = {}
    beam: list[Simulator] = []
    origin: list[int] = []  # the root move each beam state descends from
    for index, move in enumerate(roots):
        child = twin.copy()
        child.move(*move)
        beam.append(child)
        origin.append(index)
        value = child.latency_ms + move_cost_ms
        if value < min(stay, best.get(1, (np.inf, -1))[0] - _EPSILON_MS):
            best[1] = (value, index)
    for depth in range(2, horizon + 1):
        children = expand(beam, width, width)
        if not children:
            break
        next_beam, next_origin = [], []
        for parent, move, latency_ms in children:  # best first: the first that beats staying put is the best
            value = latency_ms + depth * move_cost_ms
            if depth not in best and value < stay:
                best[depth] = (value, origin[parent])
            child = beam[parent].copy()
            child.move(*move)
            next_beam.append(child)
            next_origin.append(origin[parent])
        beam, origin = next_beam, next_origin
    return best


def twin_from_state(
    model: LatencyModel,
    layout: Layout,
    known_costs: CallCosts,
    free_cpu_millicores: FloatArray,
    free_memory_bytes: FloatArray,
    slot_node: IntArray,
) -> Simulator:
    """A simulator of a served request's state: free capacity plus our pods' requests, the known costs."""
    scenario = model.scenario
    counts = placement_counts(layout, slot_node)
    cpu = np.array([s.cpu_millicores for s in scenario.services]) @ counts
    memory = np.array([round(s.memory_bytes) for s in scenario.services], dtype=float) @ counts
    nominal = nominal_conditions(scenario)
    conditions = Conditions(
        free_cpu_millicores + cpu, free_memory_bytes + memory, nominal.utilization, nominal.delay_ms
    )
    sim = Simulator(model, layout, conditions, slot_node)
    sim.known_costs = known_costs
    return sim
