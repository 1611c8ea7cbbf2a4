"""Training: config validation, the run's outputs, a tiny policy beating random, Ctrl-C keeping the best model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bento.artefact import load_artefact
from ceenv.baselines import run_random
from ceenv.env import CloudEdgeEnv
from ceenv.simulator import Simulator
from flows.evaluation.episodes import run_policy, start_state
from flows.evaluation.seeds import TRAIN_SEED_LIMIT, evaluation_seed
from flows.training import ConfigError, TrainConfig, TrainResult, load_train_config, train
from tests.conftest import scenario_dir, workload_file
from tests.training.conftest import TINY

DATA = Path(__file__).resolve().parents[2] / "data"


def test_default_config_is_sb3_ppo_defaults() -> None:
    config = load_train_config(DATA / "train" / "default.json")
    assert (config.learning_rate, config.n_steps, config.batch_size, config.n_epochs) == (3e-4, 2048, 64, 10)
    assert (config.gamma, config.gae_lambda, config.clip_range, config.ent_coef) == (0.99, 0.95, 0.2, 0.0)
    assert (config.vf_coef, config.max_grad_norm, config.net_arch) == (0.5, 0.5, [64, 64])


@pytest.mark.parametrize("name", sorted(p.name for p in (DATA / "train").glob("*.json")))
def test_every_shipped_train_config_is_valid(name: str) -> None:
    load_train_config(DATA / "train" / name)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"learning_rate": -1}, "learning_rate"),
        ({"n_envs": 0}, "n_envs"),
        ({"vec_env": "ray"}, "vec_env"),
        ({"seed": TRAIN_SEED_LIMIT}, "held out for evaluation"),
        ({"batch_size": 10_000, "n_steps": 16, "n_envs": 2}, "batch_size"),
        ({"learning_rat": 0.1}, "learning_rat"),
    ],
)
def test_bad_config_names_file_field_and_value(tmp_path: Path, fields: dict[str, object], named: str) -> None:
    file = tmp_path / "bad.json"
    file.write_text(json.dumps(fields))
    with pytest.raises(ConfigError) as err:
        load_train_config(file)
    assert str(file) in str(err.value) and named in str(err.value)


def test_missing_and_malformed_config_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file; pass an existing JSON config file"):
        load_train_config(tmp_path / "none.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON at line 1"):
        load_train_config(tmp_path / "broken.json")


@pytest.mark.slow
def test_training_writes_artefact_curve_and_tensorboard(tiny_run: TrainResult) -> None:
    run_dir = tiny_run.artefact_dir.parent
    assert tiny_run.timesteps >= TINY.total_timesteps and not tiny_run.interrupted
    assert (run_dir / "training_curve.csv").read_text().startswith("wall_seconds,timesteps,fraction_of_best_known")
    assert any((run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert len(tiny_run.curve) >= 3
    assert tiny_run.best_fraction_of_best_known == max(p["fraction_of_best_known"] for p in tiny_run.curve)


@pytest.mark.slow
def test_tiny_policy_beats_random_on_7_21(tiny_run: TrainResult) -> None:
    policy = load_artefact(tiny_run.artefact_dir)
    env = CloudEdgeEnv(scenario_dir("7-21"), workload_file("aggregator_sequential"))
    policy_ms, random_ms = [], []
    for episode in range(30):
        seed = evaluation_seed(0, episode)
        state = start_state(env, "steady", seed)
        outcome = run_policy(env, state, policy.decide)
        assert outcome.invalid_actions == 0
        policy_ms.append(outcome.end_latency_ms)
        random_ms.append(
            run_random(Simulator(env.model, env.layout, *state), np.random.default_rng(seed)).end_latency_ms
        )
    assert np.mean(policy_ms) < np.mean(random_ms)


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_keeps_the_best_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.training import validation

    original = validation.ValidationCallback.validate
    calls = {"n": 0}

    def validate_then_interrupt(self: validation.ValidationCallback) -> None:
        original(self)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(validation.ValidationCallback, "validate", validate_then_interrupt)
    config = TINY.model_copy(update={"total_timesteps": 100_000, "eval_freq_steps": 2048})
    result = train(
        config,
        scenario_dir("7-21"),
        workload_file("aggregator_sequential"),
        tmp_path,
        progress=False,
        tensorboard=False,
    )
    assert result.interrupted and result.timesteps < 100_000
    assert load_artefact(result.artefact_dir).metadata.training_summary["interrupted"] is True


@pytest.mark.slow
def test_wall_clock_limit_stops_training(tmp_path: Path) -> None:
    config = TINY.model_copy(update={"total_timesteps": 10_000_000, "max_wall_seconds": 3.0})
    result = train(
        config,
        scenario_dir("7-21"),
        workload_file("aggregator_sequential"),
        tmp_path,
        progress=False,
        tensorboard=False,
    )
    assert result.stopped_by_wall_clock and result.timesteps < 10_000_000
    assert (result.artefact_dir / "policy.zip").is_file()


def test_train_config_overrides_are_validated() -> None:
    with pytest.raises(ConfigError, match="n_envs"):
        load_train_config(DATA / "train" / "default.json", n_envs=-3)
    assert load_train_config(DATA / "train" / "default.json", seed=7).seed == 7
    assert isinstance(TINY, TrainConfig)


def test_training_without_tensorboard_leaves_no_logger_folder_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SB3's default logger would create an empty SB3-<date> folder in the temp directory on every learn()."""
    import tempfile

    from flows.training.envs import make_vec_env
    from flows.training.trainer import build_model

    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    config = TINY.model_copy(update={"n_envs": 1, "n_steps": 64, "batch_size": 64, "n_epochs": 1})
    model = build_model(config, make_vec_env(scenario_dir("7-21"), workload_file("chain"), config), None)
    model.learn(64)
    assert list(temp.glob("SB3-*")) == []


@pytest.mark.slow
def test_the_learning_curve_file_grows_while_training_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """training_curve.csv is rewritten after every validation, so a long run can be watched as it goes."""
    import csv

    from flows.training import validation

    original = validation.ValidationCallback.validate
    rows_seen: list[int] = []

    def validate_then_read(self: validation.ValidationCallback) -> None:
        original(self)
        with (tmp_path / "training_curve.csv").open() as handle:
            rows_seen.append(len(list(csv.DictReader(handle))))

    monkeypatch.setattr(validation.ValidationCallback, "validate", validate_then_read)
    config = TINY.model_copy(update={"total_timesteps": 6144, "eval_freq_steps": 2048})
    train(config, scenario_dir("7-21"), workload_file("chain"), tmp_path, progress=False, tensorboard=False)
    assert rows_seen == list(range(1, len(rows_seen) + 1)) and len(rows_seen) >= 3
