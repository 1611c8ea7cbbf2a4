"""``reach train-general`` checks its input before any work, as ``reach train`` does.

Training itself is replaced by a stub that fails the test: every refusal here must come before it
(before ``--out`` is created and validation computes the best-known reductions, which takes minutes).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from flows.cli import train as cli_train
from flows.training import load_train_config

DATA = Path(__file__).resolve().parents[2] / "data"
GENERAL = DATA / "policies" / "general-v4"


def _app() -> typer.Typer:
    app = typer.Typer()
    cli_train.register(app)
    return app


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.training import trainer

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("training started; the input should have been refused before")

    monkeypatch.setattr(trainer, "train", refuse)


def _train_general(tmp_path: Path, *options: str, config: dict[str, Any] | None = None) -> tuple[int, str]:
    arguments = ["train-general", "--out", str(tmp_path / "run"), "--no-progress", "--no-tensorboard", *options]
    if config is not None:
        file = tmp_path / "config.json"
        file.write_text(json.dumps({**json.loads((DATA / "train" / "general.json").read_text()), **config}))
        arguments += ["--config", str(file)]
    result = CliRunner().invoke(_app(), arguments)
    return result.exit_code, result.output


@pytest.mark.usefixtures("no_training")
def test_train_general_refuses_more_generated_clusters_than_the_config_has_envs(tmp_path: Path) -> None:
    code, output = _train_general(tmp_path, "--generated", "10")  # 9 + 10 clusters, data/train/general.json: 16 envs
    assert code == 2, output
    assert "19 training clusters but n_envs 16" in output and "--generated 7 or fewer" in output
    assert "Traceback" not in output and not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["general.json", "general-soft.json"])
def test_the_shipped_general_configs_train_on_every_cluster_of_their_documented_command(name: str) -> None:
    """``reach train-general`` with its default --generated 7 (README, docs/training.md, benchmarks)."""
    from flows.training.general import check_general

    config = load_train_config(DATA / "train" / name)
    check_general(config, 7)
    with pytest.raises(ValueError, match="pass --generated 7 or fewer"):
        check_general(config, 8)


@pytest.mark.usefixtures("no_training")
@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"init_from": "/nonexistent/policy"}, "init_from /nonexistent/policy: "),
        ({"init_from": str(GENERAL), "hidden": 16}, "hidden 32 in the artefact but 16 in the config"),
    ],
)
def test_train_general_refuses_a_bad_init_from_before_creating_out(
    tmp_path: Path, config: dict[str, Any], message: str
) -> None:
    code, output = _train_general(tmp_path, config=config)
    assert code == 2, output
    assert message in output and "Traceback" not in output
    assert not (tmp_path / "run").exists()


@pytest.mark.usefixtures("no_training")
def test_train_general_refuses_an_out_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "run").write_text("not a folder")
    code, output = _train_general(tmp_path)
    assert code == 2, output
    assert "is a file" in output and "Traceback" not in output
    assert (tmp_path / "run").read_text() == "not a folder"


def test_train_general_removes_the_empty_out_it_created_when_training_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.training import trainer

    def refuse_after_mkdir(config: Any, scenario: Any, workload: Any, out: Path, **kwargs: Any) -> Any:
        Path(out).mkdir(parents=True)
        raise ValueError("refused as the model was built")

    monkeypatch.setattr(trainer, "train", refuse_after_mkdir)
    monkeypatch.setattr("flows.training.general.training_clusters", lambda count: [])
    monkeypatch.setattr("flows.training.general.validation_clusters", lambda count: [])
    code, output = _train_general(tmp_path)
    assert code == 2, output
    assert "refused as the model was built" in output and not (tmp_path / "run").exists()
