"""Decision-time planning with the twin: best of the policy's top-K actions, each judged by a short rollout.

:func:`plan_action` asks the policy for its ``k`` most likely valid actions (STOP always among the
candidates), plays each on a copy of the simulator whose costs are the *known* ones (what the
policy may know: the measured network, or the nominal one), follows it with up to ``horizon`` of
the policy's own deterministic decisions, and picks the candidate whose rollout ends with the
lowest known latency plus ``step_cost_ms`` per move. Nothing here sees the true drawn network.
:func:`twin_from_state` builds that simulator from a served request's state. Used by
:class:`bento.policy.Policy` (bento argument ``plan_k``) and ``benchmarks/bench_general.py``
(planning beside the raw policy).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ceenv.latency import CallCosts, Conditions, LatencyModel, nominal_conditions
from ceenv.layout import FloatArray, IntArray, Layout, placement_counts
from ceenv.observation import decode_action, policy_mask
from ceenv.simulator import Simulator


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


def _step(twin: Simulator, action: int) -> bool:
    """Apply a policy action on the twin; False for STOP or a move that is not valid."""
    decoded = decode_action(twin.layout, action)
    if decoded is None:
        return False
    slot, node = decoded
    if not twin.action_mask()[node * twin.layout.slot_count + slot]:
        return False
    twin.move(slot, node)
    return True


def _rollout(model: Any, twin: Simulator, horizon: int, step_cost_ms: float) -> float:
    """Known latency after the policy's own decisions for up to ``horizon`` steps, plus their step costs."""
    cost = 0.0
    for _ in range(horizon):
        mask = policy_mask(twin.layout, twin.action_mask())
        action = int(np.argmax(_logits(model, twin.observation(), mask)))
        if not _step(twin, action):
            break
        cost += step_cost_ms
    return twin.latency_ms + cost


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


def plan_action(
    model: Any,
    sim: Simulator,
    k: int = 4,
    horizon: int = 4,
    step_cost_ms: float = 1.25,
    mask: np.ndarray | None = None,
) -> int:
    """The policy action (padded index) with the best ``horizon``-step rollout among its top ``k`` and STOP.

    ``mask`` (the policy's action index) restricts the first action, e.g. to a request's ``pod_deployable``.
    """
    mask = policy_mask(sim.layout, sim.action_mask()) if mask is None else mask
    logits = _logits(model, sim.observation(), mask)
    valid = np.flatnonzero(mask)
    ranked = valid[np.argsort(-logits[valid], kind="stable")][:k]
    stop = sim.layout.stop_action
    candidates = list(dict.fromkeys([*ranked.tolist(), stop]))
    best_action, best_value = stop, _twin(sim).latency_ms
    for action in candidates:
        if action == stop:
            continue
        twin = _twin(sim)
        if not _step(twin, int(action)):
            continue
        value = _rollout(model, twin, horizon, step_cost_ms) + step_cost_ms
        if value < best_value - 1e-9:
            best_action, best_value = int(action), value
    return int(best_action)
