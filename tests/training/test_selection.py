"""Best-model selection with a move budget: a checkpoint that churns pods is not the one kept."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bento.artefact import load_artefact
from ceenv.baselines import run_greedy
from ceenv.env import CloudEdgeEnv
from ceenv.simulator import Simulator
from flows.evaluation.episodes import start_state
from flows.evaluation.seeds import validation_seed
from flows.training import train, validation
from flows.training.validation import Score, ValidationCallback, Validator
from tests.conftest import scenario_dir, workload_file
from tests.training.conftest import TINY


class _Logger:
    def record(self, key: str, value: Any) -> None:
        pass


class _Model:
    """What the callback touches of a MaskablePPO: its logger and ``save``."""

    def __init__(self) -> None:
        self.logger = _Logger()
        self.saved_at: list[int] = []
        self.num_timesteps = 0

    def save(self, path: str) -> None:
        self.saved_at.append(self.num_timesteps)


class _Scripted:
    """A validator whose scores are given: (fraction, moves per episode) per validation; greedy makes 3 moves."""

    greedy_moves_per_episode = 3.0

    def __init__(self, points: list[tuple[float, float]]) -> None:
        self.points = iter(points)

    def score(self, decide: Any) -> Score:
        fraction, moves = next(self.points)
        return Score(fraction, 10.0, moves, 0)


def _select(points: list[tuple[float, float]], budget: float | None) -> tuple[ValidationCallback, _Model]:
    best = Path(tempfile.mkdtemp(prefix="selection-")) / "best_model.zip"  # the scripted model writes nothing there
    callback = ValidationCallback(_Scripted(points), 1, best, 0.0, None, moves_over_greedy=budget)  # type: ignore[arg-type]
    model = _Model()
    callback.model = model  # type: ignore[assignment]
    for step in range(len(points)):
        callback.num_timesteps = model.num_timesteps = step * 100
        callback.validate()
    return callback, model


CHURN = [(0.80, 3.0), (0.90, 12.0), (0.85, 4.0), (0.95, 20.0), (0.84, 2.0)]


def test_a_budget_keeps_the_best_checkpoint_within_greedys_moves_plus_the_budget() -> None:
    callback, model = _select(CHURN, budget=1.0)
    assert (callback.state.best_timesteps, callback.state.best_fraction) == (200, 0.85)
    assert callback.state.best_within_moves and callback.state.best_moves_per_episode == 4.0
    assert model.saved_at == [0, 200]  # the 0.90 and 0.95 checkpoints churn: never saved


def test_without_a_budget_the_score_alone_selects() -> None:
    callback, model = _select(CHURN, budget=None)
    assert (callback.state.best_timesteps, callback.state.best_fraction) == (300, 0.95)
    assert callback.state.best_moves_per_episode == 20.0 and model.saved_at == [0, 100, 300]


def test_until_a_checkpoint_is_within_the_budget_the_fewest_moves_are_kept() -> None:
    callback, model = _select([(0.70, 9.0), (0.90, 8.0), (0.95, 8.5), (0.60, 3.5)], budget=0.5)
    assert model.saved_at == [0, 100, 300]  # 0.95 at 8.5 moves: more than 8; 0.60 within 3 + 0.5 beats both
    assert callback.state.best_within_moves and callback.state.best_fraction == 0.60
    callback, model = _select([(0.70, 9.0), (0.90, 8.0), (0.95, 8.5)], budget=0.5)
    assert not callback.state.best_within_moves and model.saved_at == [0, 100]
    assert (callback.state.best_fraction, callback.state.best_moves_per_episode) == (0.90, 8.0)


def test_without_a_budget_fewer_moves_break_a_tie() -> None:
    callback, model = _select([(0.80, 6.0), (0.80, 9.0), (0.80, 5.0)], budget=None)
    assert model.saved_at == [0, 200] and callback.state.best_moves_per_episode == 5.0


def test_the_validator_counts_greedys_moves_on_its_own_validation_states() -> None:
    env = CloudEdgeEnv(scenario_dir("7-21"), workload_file("chain"), observation_version=4, measured_conditions=True)
    validator = Validator(env, episodes=6)
    moves = [
        run_greedy(
            Simulator(env.model, env.layout, *start_state(env, "steady", validation_seed(k))), env.step_cost_ms
        ).moves
        for k in range(6)
    ]
    assert validator.greedy_moves_per_episode == pytest.approx(np.mean(moves)) and sum(moves) > 0


@pytest.mark.slow
def test_training_with_a_budget_records_the_selection_and_serves_the_checkpoint_within_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real training; the scores are re-ranked so that the best-scoring checkpoint churns."""
    original_score = validation.Validator.score
    calls: list[int] = []

    def churning_late(self: validation.Validator, decide: Any) -> Score:
        real = original_score(self, decide)
        calls.append(1)
        if len(calls) == 1:  # the untrained network: within the budget, lowest score
            return dataclasses.replace(real, fraction_of_best_known=0.5, moves_per_episode=0.0)
        return dataclasses.replace(real, fraction_of_best_known=0.5 + len(calls), moves_per_episode=1e6)

    monkeypatch.setattr(validation.Validator, "score", churning_late)
    config = TINY.model_copy(update={"total_timesteps": 4096, "eval_freq_steps": 2048, "select_moves_over_greedy": 1})
    result = train(config, scenario_dir("7-21"), workload_file("chain"), tmp_path, progress=False, tensorboard=False)
    assert len(result.curve) >= 3 and (result.best_timesteps, result.best_fraction_of_best_known) == (0, 0.5)
    selection = load_artefact(result.artefact_dir).metadata.training_summary["selection"]
    assert selection["moves_over_greedy"] == 1 and selection["best_within_moves"] is True
    assert selection["best_moves_per_episode"] == 0.0 and selection["greedy_moves_per_episode"] > 0
    assert "within greedy + 1" in result.best_text()
