"""Training the pod×node policy improves it beyond its untrained gain prior (not merely beyond random).

The untrained network already acts as a soft greedy on the move gains it is shown, so beating
random proves nothing. Here the policy is shown the scenario's *nominal* network (no measured
conditions) while the reward uses the drawn one: on 13-29 ``aggregator_parallel`` the nominal
gains mislead the prior, and a small, seeded PPO budget must raise the validation score (fraction
of the best-known reduction on held-out states) above the untrained network's, which is the
curve's first point. The prior is softened (``gain_scale`` 300 instead of 2000) so that the
sampled policy explores: with the default scale it is nearly deterministic and this budget does
not move it (measured: 0.598 untrained, at most 0.601 after 24,576 steps at learning rate 1e-3;
with gain scale 300, 0.549 untrained and 0.658 after 20,480 steps, on this 2-core machine).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.training import TrainConfig, train
from tests.conftest import scenario_dir, workload_file

LEARNING_BUDGET = TrainConfig(
    total_timesteps=20_480,
    seed=0,
    n_envs=4,
    n_steps=256,
    batch_size=256,
    n_epochs=10,
    learning_rate=1e-3,
    gain_scale=300.0,
    reward_scale="start_latency",
    policy="pod_node",
    observation_version=4,
    max_nodes=16,
    max_slots=32,
    measured_conditions=False,
    eval_freq_steps=4096,
    eval_episodes=24,
)


@pytest.mark.slow
def test_training_improves_the_validation_score_over_the_untrained_network(tmp_path: Path) -> None:
    result = train(
        LEARNING_BUDGET,
        scenario_dir("13-29"),
        workload_file("aggregator_parallel"),
        tmp_path,
        progress=False,
        tensorboard=False,
    )
    untrained = result.curve[0]
    assert untrained["timesteps"] == 0
    trained = max(point["fraction_of_best_known"] for point in result.curve[1:])
    assert trained >= untrained["fraction_of_best_known"] + 0.02, result.curve
