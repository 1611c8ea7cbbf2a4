"""Validation during training: the same states, and the same measurement noise, for every model scored."""

from __future__ import annotations

import numpy as np

from ceenv.env import CloudEdgeEnv
from flows.training.validation import Validator
from tests.conftest import scenario_dir, workload_file


def test_with_measured_conditions_every_score_sees_the_same_noise() -> None:
    """A model is picked by its validation score: two scores of one decision function must agree.

    The decision here stops at once and records what it saw; with measured conditions the observation
    carries the noisy network, which used to be drawn afresh at every score."""
    env = CloudEdgeEnv(scenario_dir("7-21"), workload_file("chain"), observation_version=4, measured_conditions=True)
    validator = Validator(env, episodes=3)
    seen: list[list[bytes]] = [[], []]

    def watcher(run: int):  # type: ignore[no-untyped-def]
        def decide(obs: np.ndarray, mask: np.ndarray) -> int:
            seen[run].append(obs.tobytes())
            return len(mask) - 1  # STOP

        return decide

    validator.score(watcher(0))
    validator.score(watcher(1))
    assert len(seen[0]) == 3 and seen[0] == seen[1]
    unseeded = [env.reset(options={"state": validator.states[0][0]})[0].tobytes() for _ in range(2)]
    assert unseeded[0] != unseeded[1]  # the noise does differ between draws: the check above can fail
