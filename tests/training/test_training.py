"""Training: config validation, the run's outputs, Ctrl-C and the wall clock keeping the best model.

Whether training improves a policy beyond its untrained network is tests/training/test_learning.py (the untrained
gain-biased network already beats random, so "beats random" would prove nothing).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bento.artefact import load_artefact
from flows.evaluation.seeds import TRAIN_SEED_LIMIT
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
def test_ctrl_c_stops_cleanly_and_keeps_the_best_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Interrupted after a PPO update, the artefact holds the best validated weights, not the ones training stopped
    with. The validator's real scores are re-ranked so that the first point (the untrained network) is the best,
    so the best and the final weights differ and the test can tell which one was saved."""
    import dataclasses

    import torch

    from flows.training import validation

    original_score = validation.Validator.score
    original_validate = validation.ValidationCallback.validate
    weights: list[dict[str, torch.Tensor]] = []  # the policy's weights at each validation

    def declining_score(self: validation.Validator, decide: Any) -> validation.Score:
        return dataclasses.replace(original_score(self, decide), fraction_of_best_known=1.0 - 0.1 * len(weights))

    def validate_then_interrupt(self: validation.ValidationCallback) -> None:
        original_validate(self)
        weights.append({k: v.detach().clone() for k, v in self.model.policy.state_dict().items()})
        if len(weights) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(validation.Validator, "score", declining_score)
    monkeypatch.setattr(validation.ValidationCallback, "validate", validate_then_interrupt)
    # 4 envs x 256 steps per rollout: the second validation (2048 steps) comes after one PPO update.
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
    assert [p["timesteps"] for p in result.curve] == [0, result.timesteps]
    assert (result.best_timesteps, result.best_fraction_of_best_known) == (0, 1.0)
    artefact = load_artefact(result.artefact_dir)
    summary = artefact.metadata.training_summary
    assert summary["interrupted"] is True and summary["best_timesteps"] == 0
    best, final = weights  # the untrained network (the best point) and the weights training stopped with
    assert not all(torch.equal(final[k], best[k]) for k in best)  # one PPO update moved them: the two differ
    saved = artefact.model.policy.state_dict()
    assert saved.keys() == best.keys() and all(torch.equal(saved[k], best[k]) for k in best)


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


def test_each_validation_says_its_score_on_stderr_when_no_progress_bar_shows_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run written to a log (or --no-progress) says how it goes at every validation, as its curve file does."""
    import csv
    import sys

    from flows.training import trainer

    config = TINY.model_copy(update={"total_timesteps": 4096, "eval_freq_steps": 2048})
    train(config, scenario_dir("7-21"), workload_file("chain"), tmp_path, progress=False, tensorboard=False)
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("validation at ")]
    with (tmp_path / "training_curve.csv").open() as handle:
        curve = list(csv.DictReader(handle))
    assert len(lines) == len(curve) >= 3
    for line, point in zip(lines, curve, strict=True):
        assert line.startswith(f"validation at {int(point['timesteps']):,} steps (")
        assert f"): {float(point['fraction_of_best_known']):.3f} of the best-known reduction, " in line
        assert f"{float(point['moves_per_episode']):.1f} moves per episode (greedy " in line
        assert "; the model kept so far: " in line
    assert "validation at" not in out

    class Terminal:
        def __init__(self, tty: bool) -> None:
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    monkeypatch.setattr(sys, "stderr", Terminal(True))
    assert trainer.validation_report(progress=True) is None  # the bar shows the run
    assert trainer.validation_report(progress=False) is not None
    monkeypatch.setattr(sys, "stderr", Terminal(False))
    assert trainer.validation_report(progress=True) is not None  # a log file gets the lines
