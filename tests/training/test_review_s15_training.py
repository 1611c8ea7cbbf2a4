"""Training refuses what it would silently get wrong, and keeps the best checkpoint whole.

More clusters than envs and an ``init_from`` artefact whose network does not fit are refused before
anything is written; an interrupted save of the best checkpoint leaves the previous one loadable;
the run records the validation states it really scores, the gain scale it started from, and
greedy's move budget within the env's episode length.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bento.artefact import PolicyError, load_artefact
from flows.training import TrainConfig, train
from flows.training.envs import make_env, make_vec_env
from flows.training.validation import Score, ValidationCallback, Validator
from tests.conftest import scenario_dir, workload_file

GENERAL = Path(__file__).resolve().parents[2] / "data" / "policies" / "general-v4"
# A few hundred steps of a tiny network on 7-21: seconds, not minutes.
MICRO = {
    "total_timesteps": 256,
    "n_envs": 2,
    "n_steps": 64,
    "batch_size": 64,
    "n_epochs": 1,
    "net_arch": [8],
    "eval_freq_steps": 128,
    "eval_episodes": 1,
    "max_steps": 10,
}
POD_NODE = {**MICRO, "policy": "pod_node", "observation_version": 4, "hidden": 8}
THREE_CLUSTERS: list[Any] = [
    (scenario_dir("7-21"), workload_file("chain")),
    (scenario_dir("7-21"), workload_file("aggregator_sequential")),
    (scenario_dir("7-21"), workload_file("aggregator_parallel")),
]


def _train(config: TrainConfig, out: Path, **kwargs: Any) -> Any:
    return train(config, scenario_dir("7-21"), workload_file("chain"), out, progress=False, tensorboard=False, **kwargs)


@pytest.mark.slow
def test_more_training_clusters_than_envs_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    config = TrainConfig(**MICRO)  # 2 envs, 3 clusters: the third would never be trained on
    with pytest.raises(ValueError, match=r"3 training clusters but n_envs 2.*at least 3") as err:
        _train(config, tmp_path / "run", clusters=THREE_CLUSTERS)
    assert "never be trained on" in str(err.value)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="n_envs 2"):
        make_vec_env(scenario_dir("7-21"), workload_file("chain"), config, THREE_CLUSTERS)


@pytest.mark.slow
def test_a_run_records_the_validation_states_it_really_scores(tmp_path: Path) -> None:
    """Two validation clusters and eval_episodes 3: one state each (3 // 2), so 2 are scored, not 3."""
    config = TrainConfig(**{**MICRO, "eval_episodes": 3})
    result = _train(config, tmp_path, validation_clusters=THREE_CLUSTERS[:2])
    summary = load_artefact(result.artefact_dir).metadata.training_summary
    assert summary["validation_episodes"] == 2
    assert summary["initial_gain_scale"] is None  # not a pod_node policy


def test_greedys_move_budget_is_played_within_the_envs_episode_length() -> None:
    short = Validator(make_env(scenario_dir("7-21"), workload_file("chain"), TrainConfig(max_steps=1)), 2)
    long = Validator(make_env(scenario_dir("7-21"), workload_file("chain"), TrainConfig(max_steps=100)), 2)
    assert long.greedy_moves_per_episode > 1, "the states must need more than one greedy move for this test"
    assert short.greedy_moves_per_episode <= 1


class _RisingValidator:
    """Every validation scores higher than the last, so every one is saved as the best."""

    def __init__(self) -> None:
        self.greedy_moves_per_episode = 1.0
        self.calls = 0

    def score(self, decide: Any) -> Score:
        self.calls += 1
        return Score(
            fraction_of_best_known=0.1 * self.calls, reduction_pct=1.0, moves_per_episode=1.0, invalid_actions=0
        )


def test_a_ctrl_c_while_saving_the_best_model_keeps_the_previous_one_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sb3_contrib import MaskablePPO

    from flows.training.trainer import build_model

    config = TrainConfig(**MICRO)
    model = build_model(config, make_vec_env(scenario_dir("7-21"), workload_file("chain"), config), None)
    best = tmp_path / "best_model.zip"
    callback = ValidationCallback(_RisingValidator(), 128, best, 0.0, None)  # type: ignore[arg-type]
    callback.init_callback(model)
    callback.validate()
    first = best.read_bytes()

    def interrupted_save(path: Any, *args: Any, **kwargs: Any) -> None:
        Path(path).write_bytes(first[: len(first) // 3])  # SB3 truncates the file, then is cut short
        raise KeyboardInterrupt

    monkeypatch.setattr(model, "save", interrupted_save)
    model.num_timesteps = 128
    with pytest.raises(KeyboardInterrupt):
        callback.validate()
    assert best.read_bytes() == first and zipfile.is_zipfile(best)
    MaskablePPO.load(str(best), device="cpu")
    assert callback.state.best_timesteps == 0 and callback.state.best_fraction == pytest.approx(0.1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best_model.zip"], "no temporary file left behind"


@pytest.mark.slow
def test_training_interrupted_while_saving_a_best_model_still_writes_the_artefact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second best checkpoint's save is cut short by Ctrl-C: the artefact is the first one, as recorded."""
    from sb3_contrib import MaskablePPO

    from flows.training import validation

    rising = _RisingValidator()
    monkeypatch.setattr(validation.Validator, "score", lambda self, decide: rising.score(decide))
    saves = []
    real_save = MaskablePPO.save

    def save(self: Any, path: Any, *args: Any, **kwargs: Any) -> None:
        saves.append(path)
        if len(saves) == 2:  # the second validation's best model
            Path(path).write_bytes(b"PK\x03\x04 cut short")
            raise KeyboardInterrupt
        real_save(self, path, *args, **kwargs)

    monkeypatch.setattr(MaskablePPO, "save", save)
    result = _train(TrainConfig(**MICRO), tmp_path)
    assert result.interrupted and result.best_timesteps == 0
    loaded = load_artefact(result.artefact_dir)
    assert loaded.metadata.training_summary["best_timesteps"] == 0
    assert np.isfinite(result.best_fraction_of_best_known)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"max_nodes": 30}, "max_nodes 40 in the artefact but 30 in the config"),
        ({"hidden": 16}, "hidden 32 in the artefact but 16 in the config"),
        ({"policy": "gain_biased", "observation_version": 3}, "policy 'pod_node' in the artefact but 'gain_biased'"),
    ],
)
def test_an_init_from_artefact_whose_network_differs_is_refused_naming_the_keys(
    tmp_path: Path, fields: dict[str, Any], named: str
) -> None:
    """general-v4 is pod_node, observation 4, hidden 32, 40 nodes x 80 slots; the pod_node network's weights would
    load into other limits, so only the recorded config can tell."""
    config = TrainConfig(**{**POD_NODE, "hidden": 32, "init_from": str(GENERAL), **fields})
    with pytest.raises(PolicyError, match="does not fit this config") as err:
        _train(config, tmp_path / "run")
    assert named in str(err.value) and "init_from null" in str(err.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_fine_tuning_records_the_artefacts_learned_gain_scale_not_the_configs(tmp_path: Path) -> None:
    from sb3_contrib import MaskablePPO

    source = MaskablePPO.load(str(GENERAL / "policy.zip"), device="cpu")
    learned = float(source.policy.state_dict()["net.log_gain_scale"].exp())
    config = TrainConfig(**{**POD_NODE, "hidden": 32, "gain_scale": 300.0, "init_from": str(GENERAL)})
    result = _train(config, tmp_path)
    summary = load_artefact(result.artefact_dir).metadata.training_summary
    assert summary["initial_gain_scale"] == pytest.approx(learned, rel=1e-5)
    assert abs(learned - 300.0) > 1.0
