"""Decision-time planning (:mod:`bento.planning`): always a valid move or STOP, and STOP when no move pays.

Plays the shipped general policy (``data/policies/general-v4``) with planning on the reference
clusters from held-out start states, in the env with measured conditions (what serves).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bento.planning import _twin, plan_action
from ceenv.env import CloudEdgeEnv
from ceenv.observation import decode_action, policy_mask
from flows.evaluation.episodes import start_state
from tests.conftest import scenario_dir, workload_file

GENERAL = Path(__file__).resolve().parents[2] / "data" / "policies" / "general-v4"


@pytest.fixture(scope="module")
def general() -> Any:
    from bento.artefact import load_artefact
    from ceenv.layout import layout_from_scenario
    from ceenv.scenario import load_scenario

    return load_artefact(GENERAL, layout_from_scenario(load_scenario(scenario_dir("13-29")), 3))


def _env(size: str, workload: str, **settings: Any) -> CloudEdgeEnv:
    return CloudEdgeEnv(
        scenario_dir(size), workload_file(workload), observation_version=4, max_nodes=40, max_slots=80,
        measured_conditions=True, **settings,
    )  # fmt: skip


def _best_single_gain_ms(env: CloudEdgeEnv) -> float:
    twin = _twin(env.simulator)
    moves = twin.distinct_moves()
    return float(twin.latency_ms - twin.latency_after(moves).min())


@pytest.mark.parametrize(
    ("size", "workload", "family"),
    [
        ("7-21", "chain", "traffic_surge"),
        ("13-29", "aggregator_sequential", "node_failure"),
        ("19-37", "aggregator_parallel", "steady"),
    ],
)
def test_planning_answers_only_valid_moves_or_stop_and_ends_the_episode(
    general: Any, size: str, workload: str, family: Any
) -> None:
    env = _env(size, workload)
    rng = np.random.default_rng(3)
    for seed in range(3):
        env.reset(options={"state": start_state(env, family, 1000 + seed)})
        stopped = False
        for _ in range(env.max_steps):
            mask = env.action_masks().copy()
            # A request's pod_deployable may forbid moves the twin would like: drop half of the valid ones.
            valid = np.flatnonzero(mask[:-1])
            mask[rng.choice(valid, size=valid.size // 2, replace=False)] = False
            action = plan_action(general.model, env.simulator, k=4, horizon=3, step_cost_ms=env.step_cost_ms, mask=mask)
            assert mask[action], f"planning answered action {action}, which the mask forbids"
            _, _, terminated, _, info = env.step(action)
            assert not info["invalid_action"]
            if terminated:
                stopped = True
                break
        assert stopped, "planning never answered STOP within the episode's step limit"


@pytest.mark.parametrize("horizon", [1, 3])
def test_planning_stops_when_no_move_gains_more_than_its_cost(general: Any, horizon: int) -> None:
    env = _env("13-29", "chain")
    env.reset(options={"state": start_state(env, "traffic_surge", 7)})
    margin = 2.0
    gain_ms = _best_single_gain_ms(env)
    assert gain_ms > 0, "the start state should have a move that gains"
    # One move gains gain_ms; a per-move cost just above it makes every single move a loss.
    single = plan_action(
        general.model, env.simulator, k=4, horizon=1, step_cost_ms=1.01 * gain_ms / margin, margin=margin
    )
    assert single == env.layout.stop_action
    # No sequence can gain more than the whole latency: with that cost per move, STOP at any depth.
    whole = _twin(env.simulator).latency_ms
    action = plan_action(general.model, env.simulator, k=4, horizon=horizon, step_cost_ms=whole, margin=1.0)
    assert action == env.layout.stop_action


def test_planning_moves_when_a_move_gains_more_than_its_cost(general: Any) -> None:
    env = _env("13-29", "chain")
    env.reset(options={"state": start_state(env, "traffic_surge", 7)})
    margin = 2.0
    gain_ms = _best_single_gain_ms(env)
    action = plan_action(
        general.model, env.simulator, k=4, horizon=1, step_cost_ms=0.99 * gain_ms / margin, margin=margin
    )
    decoded = decode_action(env.layout, action)
    assert decoded is not None, "planning stopped although a move gains more than its cost"
    assert policy_mask(env.layout, env.simulator.action_mask())[action]
    twin = _twin(env.simulator)
    assert twin.latency_ms - twin.latency_after([decoded])[0] == pytest.approx(gain_ms)


def test_planning_refuses_meaningless_settings(general: Any) -> None:
    env = _env("7-21", "chain")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="horizon >= 1"):
        plan_action(general.model, env.simulator, k=4, horizon=0)
