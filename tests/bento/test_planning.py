"""Decision-time planning (:mod:`bento.planning`): always a valid move or STOP, STOP when no move pays its costs.

Plays the shipped general policy (``data/policies/general-v4``) with planning on the reference
clusters from held-out start states, in the env with measured conditions (what serves).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bento.planning import NOISE_SAMPLES, PlannedSequence, _twin, plan_action, sequence_scores
from ceenv.env import CloudEdgeEnv
from ceenv.latency import perturbed_network
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
        general.model, env.simulator, k=4, horizon=1, step_cost_ms=1.01 * gain_ms / margin, margin=margin, noise=0.0
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
        general.model, env.simulator, k=4, horizon=1, step_cost_ms=0.99 * gain_ms / margin, margin=margin, noise=0.0
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


def _best_move_and_spread(env: CloudEdgeEnv, noise: float) -> tuple[tuple[int, int], float, float]:
    """The twin's best single move, its known gain and its gain's spread over the planner's noise samples."""
    twin = _twin(env.simulator)
    moves = twin.distinct_moves()
    after = twin.latency_after(moves)
    move = moves[int(np.argmin(after))]
    child = twin.copy()
    child.move(*move)
    sequence = PlannedSequence(child.latency_ms, 0, 1, child.counts.copy())
    gain_ms = float(sequence_scores(twin, [sequence], 0.0, 0.0)[0])
    spread_ms = gain_ms - float(sequence_scores(twin, [sequence], noise, 1.0)[0])
    return move, gain_ms, spread_ms


def test_the_noise_charge_is_the_gain_spread_over_networks_the_known_one_may_stand_for(general: Any) -> None:
    env = _env("13-29", "chain")
    env.reset(options={"state": start_state(env, "traffic_surge", 7)})
    move, gain_ms, spread_ms = _best_move_and_spread(env, 0.1)
    twin = _twin(env.simulator)
    end = twin.copy()
    end.move(*move)
    # An independent estimate: many more networks, drawn the way measurements are (ceenv.latency).
    rng = np.random.default_rng(99)
    gains = []
    for _ in range(400):
        costs = twin.model.prepare(perturbed_network(twin.costs.network, rng, 0.1))
        gains.append(twin.model.latency(twin.counts, costs) - twin.model.latency(end.counts, costs))
    assert gain_ms > 0
    assert spread_ms > 0, "a move between nodes changes network terms: its gain has a spread under noise"
    assert spread_ms == pytest.approx(float(np.std(gains)), rel=0.5), f"{NOISE_SAMPLES} samples vs 400"
    assert _best_move_and_spread(env, 0.2)[2] == pytest.approx(2 * spread_ms, rel=0.3), "the spread grows with noise"


@pytest.mark.parametrize("inside", [True, False])
def test_planning_stops_for_a_move_whose_gain_is_within_its_noise_charge(general: Any, inside: bool) -> None:
    env = _env("13-29", "chain")
    env.reset(options={"state": start_state(env, "traffic_surge", 7)})
    _, gain_ms, spread_ms = _best_move_and_spread(env, 0.1)
    step_cost_ms = 0.01 * gain_ms  # the move pays its step cost many times over; only the noise charge decides
    confidence = (gain_ms - step_cost_ms) / spread_ms * (1.05 if inside else 0.95)
    action = plan_action(
        general.model, env.simulator, k=4, horizon=1, step_cost_ms=step_cost_ms, margin=1.0, noise=0.1,
        confidence=confidence,
    )  # fmt: skip
    if inside:
        assert action == env.layout.stop_action, "a move whose gain is within its noise charge was played"
    else:
        assert decode_action(env.layout, action) is not None, "a move that pays its noise charge was not played"


def _one_move_sequence() -> tuple[CloudEdgeEnv, Any, Any, list[PlannedSequence]]:
    """19-37 aggregator_parallel at a steady start: the twin, the end of its first distinct move, and that one-move sequence."""
    env = _env("19-37", "aggregator_parallel")
    env.reset(options={"state": start_state(env, "steady", 11)})
    twin = _twin(env.simulator)
    end = twin.copy()
    end.move(*twin.distinct_moves()[0])
    return env, twin, end, [PlannedSequence(end.latency_ms + 1.25, 0, 1, end.counts.copy())]


def test_planning_gives_one_request_one_answer_and_draws_from_no_shared_generator(general: Any) -> None:
    env, twin, _end, sequences = _one_move_sequence()
    first, second = sequence_scores(twin, sequences, 0.1, 1.0), sequence_scores(twin, sequences, 0.1, 1.0)
    assert first.tobytes() == second.tobytes(), "the noise samples must come from a fixed seed"
    env_state = env.np_random.bit_generator.state
    np.random.seed(5)
    global_state = np.random.get_state()[1].copy()
    answers = {plan_action(general.model, env.simulator, k=4, horizon=4) for _ in range(3)}
    assert len(answers) == 1
    assert env.np_random.bit_generator.state == env_state, "planning drew from the env's generator"
    assert (np.random.get_state()[1] == global_state).all(), "planning drew from numpy's global generator"


class _RecordingPolicy:
    """The general policy's network, recording every observation planning asks it about."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self.observations: list[np.ndarray] = []
        self.policy = self

    def get_distribution(self, observation: Any, action_masks: Any = None) -> Any:
        self.observations.append(observation.numpy().copy())
        return self._model.policy.get_distribution(observation, action_masks=action_masks)


def test_a_served_planner_asks_the_policy_about_the_observation_the_raw_policy_sees(general: Any) -> None:
    """A request whose ``pod_deployable`` is stricter than the twin's own rules: the request's view wins."""
    from types import SimpleNamespace

    from bento.planning_settings import PlanningSettings
    from bento.policy import GateVerdict, NominalLatency, Policy, PolicyCard
    from ceenv.payload import request_from_state
    from ceenv.schema import ActionRequest

    env = _env("13-29", "aggregator_sequential")
    env.reset(options={"state": start_state(env, "steady", 4)})
    sim = env.simulator
    target_ok = sim.target_ok().copy()
    target_ok[:, : sim.layout.node_count // 2] = False  # the cluster forbids half of the nodes
    request = ActionRequest.model_validate(
        request_from_state(env.layout, sim.free_cpu_millicores, sim.free_memory_bytes, sim.slot_node, target_ok)
    )
    recording = _RecordingPolicy(general.model)
    card = PolicyCard.from_artefact(general.metadata, GateVerdict(passed=True, reason="test"))
    latency = NominalLatency.from_files(str(scenario_dir("13-29")), str(workload_file("aggregator_sequential")))
    predictor = SimpleNamespace(model=recording, metadata=general.metadata)
    policy = Policy(predictor, card, general.layout, "test", latency, PlanningSettings.from_mapping({"plan_k": 4}))
    policy.decide(request)
    expected = policy.encode(request).observation
    assert len(recording.observations) == 1
    np.testing.assert_array_equal(recording.observations[0][0], expected)
    own_view = _twin(sim).observation()
    assert not np.array_equal(own_view, expected), "the request's stricter rules should show in the observation"


def test_the_networks_a_known_one_may_stand_for_are_drawn_once_per_network_and_noise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The noise samples are cached on the known costs: the same scores as drawing them afresh, drawn once per noise."""
    from bento import planning

    env, twin, end, sequences = _one_move_sequence()

    def fresh(noise: float) -> np.ndarray:
        rng = np.random.default_rng(planning.NOISE_SEED)
        networks = [twin.model.prepare(perturbed_network(twin.costs.network, rng, noise)) for _ in range(NOISE_SAMPLES)]
        sampled = twin.model.latency_per_network(np.stack([twin.counts, end.counts]), networks)
        scores: np.ndarray = twin.latency_ms - sequences[0].value_ms - (sampled[:, 0] - sampled[:, 1]).std()
        return scores

    expected = {noise: fresh(noise) for noise in (0.1, 0.2)}
    prepared: list[int] = []
    original = type(twin.model).prepare
    monkeypatch.setattr(
        type(twin.model), "prepare", lambda self, network: prepared.append(1) or original(self, network)
    )
    for noise in (0.1, 0.2, 0.1, 0.2):
        np.testing.assert_array_equal(sequence_scores(twin, sequences, noise, 1.0), expected[noise])
    assert len(prepared) == 2 * NOISE_SAMPLES, "each noise's networks are prepared once for one known network"
    other = _twin(env.simulator)
    other.costs = twin.model.prepare(perturbed_network(twin.costs.network, np.random.default_rng(1), 0.3))
    sequence_scores(other, sequences, 0.1, 1.0)
    assert len(prepared) == 3 * NOISE_SAMPLES + 1, "another known network (a new measurement) draws its own"
