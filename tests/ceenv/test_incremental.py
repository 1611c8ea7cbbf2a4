"""The fast paths of the env equal the full recomputation after many random moves, resets and events.

Two shortcuts make the env fast: every move's latency change comes from one table per state
(:func:`ceenv.gains.move_delta_table`) instead of a full evaluation per move, and observation
version 4 rewrites only its dynamic entries into an array it reuses across steps. Here, on every
reference cluster × workload and on a generated cluster, an env with the general policy's
observation (version 4, measured conditions) takes random moves, STOPs, node failures and traffic
surges; after each, every valid move's latency from the table must equal the full formula
(:meth:`ceenv.latency.LatencyModel.latency_batch`) within 1e-9 relative, under both the true
and the known network and by both routes to the table (per-call terms, and the precomputed
quadratic form of a linear call tree), and the reused observation must equal one built from scratch.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from ceenv.env import CloudEdgeEnv
from ceenv.events import EventError, draw_failed_nodes, fail_nodes, surge_service
from ceenv.gains import gather_moves, latency_after_moves, latency_form, move_delta_table
from ceenv.generator import generate_scenario
from ceenv.latency import CallCosts
from ceenv.observation import encode_state
from ceenv.reference import reference_scenario, reference_workload
from ceenv.simulator import Simulator

RELATIVE_TOLERANCE = 1e-9
WORKLOADS = ("aggregator_sequential", "aggregator_parallel", "chain")


def _clusters() -> list[tuple[str, object, object]]:
    cells: list[tuple[str, object, object]] = []
    for size in ("7-21", "13-29", "19-37"):
        scenario = reference_scenario(size)
        cells += [(f"{size}-{w}", scenario, reference_workload(scenario, w)) for w in WORKLOADS]
    generated = generate_scenario(np.random.default_rng(11))
    return [*cells, ("generated-11", *generated.parse())]


def _check_every_move(sim: Simulator, costs: CallCosts) -> int:
    """Table latencies of every valid move against the full formula; returns the moves checked."""
    layout, model = sim.layout, sim.model
    now, after = latency_after_moves(
        model, sim.counts[None], costs.matrices, layout.slot_service, sim.slot_node[None], layout.slot_movable
    )
    tables = [(now, after)]
    form = latency_form(model, costs.matrices)  # the regrouped form the env uses where the tree is linear
    if form is not None:
        form_now, delta = move_delta_table(model, sim.counts[None], costs.matrices, form)
        tables.append(
            (form_now, form_now[:, None, None] + gather_moves(delta, layout.slot_service, sim.slot_node[None]))
        )
    valid = np.flatnonzero(sim.action_mask()[:-1])
    slots, targets = valid % layout.slot_count, valid // layout.slot_count
    full_now = model.latency(sim.counts, costs)
    for now, _ in tables:
        assert abs(now[0] - full_now) <= RELATIVE_TOLERANCE * full_now
    if valid.size == 0:
        return 0
    batch = np.repeat(sim.counts[None], valid.size, axis=0)
    index = np.arange(valid.size)
    services = layout.slot_service[slots]
    batch[index, services, sim.slot_node[slots]] -= 1.0
    batch[index, services, targets] += 1.0
    full = model.latency_batch(batch, costs)
    for _, after in tables:
        assert np.all(np.abs(after[0, slots, targets] - full) <= RELATIVE_TOLERANCE * full)
    return int(valid.size) * len(tables)


def _event(env: CloudEdgeEnv, rng: np.random.Generator) -> None:
    """A node failure or a traffic surge on the current state, as the evaluation families apply them."""
    sim = env.simulator
    try:
        if rng.random() < 0.5:
            outcome = fail_nodes(sim, draw_failed_nodes(sim, rng, 1))
        else:
            movable = [
                name for name, ok in zip(env.layout.service_names, env.layout.service_movable, strict=True) if ok
            ]
            outcome = surge_service(sim, str(rng.choice(movable)), 1)
    except EventError:
        return  # this state cannot take that event (a called service would lose every pod)
    known = sim.known_costs
    env.reset(options={"state": (outcome.conditions, outcome.slot_node)})
    env.simulator.known_costs = known  # the monitoring system's view stays until it is measured again


def random_walk(
    env: CloudEdgeEnv, rng: np.random.Generator, obs: np.ndarray, steps: int, event_every: int
) -> Iterator[tuple[int, np.ndarray]]:
    """``(step, observation)`` before each action of a random walk from ``obs``: a random valid action (STOP
    included), or on every ``event_every``-th step a node failure or a surge (:func:`_event`); a finished
    episode resets."""
    for step in range(steps):
        yield step, obs
        if step % event_every == event_every - 1:
            _event(env, rng)
            obs = env.simulator.observation()
            continue
        valid = np.flatnonzero(env.action_masks())
        obs, _, terminated, truncated, _ = env.step(int(valid[rng.integers(valid.size)]))
        if terminated or truncated:
            obs, _ = env.reset()


@pytest.mark.parametrize("name,scenario,workload", _clusters(), ids=lambda v: v if isinstance(v, str) else "")
def test_move_table_and_reused_observation_equal_the_full_recomputation(name: str, scenario, workload) -> None:
    env = CloudEdgeEnv(scenario, workload, observation_version=4, measured_conditions=True, max_steps=30)
    start, _ = env.reset(seed=5)
    checked = events = 0
    for step, obs in random_walk(env, np.random.default_rng(5), start, 150, 25):
        sim = env.simulator
        fresh = encode_state(
            env.layout,
            env.model,
            sim.known_costs,
            sim.free_cpu_millicores,
            sim.free_memory_bytes,
            sim.slot_node,
            sim.action_mask(),
        )
        np.testing.assert_array_equal(obs, fresh)
        checked += _check_every_move(sim, sim.costs) + _check_every_move(sim, sim.known_costs)
        events += step % 25 == 24  # the walk applies an event after this step's checks
    assert checked > 1000 and events == 6
