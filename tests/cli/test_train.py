"""``reach train``, ``reach evaluate`` and ``reach gate`` end to end on a tiny 7-21 policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from flows.cli import train as cli_train
from flows.training import TrainResult
from tests.conftest import scenario_dir, workload_file

pytestmark = pytest.mark.slow


def _app() -> typer.Typer:
    app = typer.Typer()
    cli_train.register(app)
    return app


def test_train_command_writes_an_artefact(tmp_path: Path) -> None:
    config = tmp_path / "tiny.json"
    config.write_text(
        json.dumps(
            {
                "total_timesteps": 1024,
                "n_envs": 2,
                "n_steps": 256,
                "batch_size": 128,
                "eval_freq_steps": 512,
                "eval_episodes": 2,
            }
        )
    )
    result = CliRunner().invoke(
        _app(),
        [
            "train",
            "--scenario",
            str(scenario_dir("7-21")),
            "--workload",
            str(workload_file("chain")),
            "--out",
            str(tmp_path / "run"),
            "--config",
            str(config),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "training finished" in result.output and (tmp_path / "run" / "policy" / "policy.zip").is_file()


def test_train_command_reports_a_bad_config_without_a_traceback(tmp_path: Path) -> None:
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"n_envs": 0}))
    result = CliRunner().invoke(
        _app(),
        [
            "train",
            "--scenario",
            str(scenario_dir("7-21")),
            "--workload",
            str(workload_file("chain")),
            "--out",
            str(tmp_path),
            "--config",
            str(config),
        ],
    )
    assert result.exit_code == 2 and "n_envs" in result.output


def test_evaluate_then_gate(tiny_run: TrainResult, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        _app(),
        [
            "evaluate",
            "--model",
            str(tiny_run.artefact_dir),
            "--scenario",
            str(scenario_dir("7-21")),
            "--episodes",
            "2",
            "--seeds",
            "0-1",
            "--family",
            "steady",
            "--out",
            str(out),
            "--no-store",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (out / "report.json").is_file() and (out / "latency_distribution.png").is_file()
    verdict_file = tmp_path / "verdict.json"
    gated = CliRunner().invoke(_app(), ["gate", "--report", str(out / "report.json"), "--out", str(verdict_file)])
    assert gated.exit_code in (0, 1) and ("passed all" in gated.output or "refused" in gated.output)
    assert json.loads(verdict_file.read_text())["passed"] == (gated.exit_code == 0)
    strict = tmp_path / "strict.json"
    strict.write_text(json.dumps({"min_fraction_of_best_known": 1.5}))
    refused = CliRunner().invoke(_app(), ["gate", "--report", str(out / "report.json"), "--rules", str(strict)])
    assert refused.exit_code == 1 and "FAIL min_fraction_of_best_known" in refused.output


GENERAL = Path(__file__).resolve().parents[2] / "data" / "policies" / "general-v4"


def test_evaluate_with_plan_k_plays_the_planner_and_leaves_the_stored_report_alone(tmp_path: Path) -> None:
    stored = json.loads((GENERAL / "metadata.json").read_text())
    result = CliRunner().invoke(
        _app(),
        [
            "evaluate", "--model", str(GENERAL), "--scenario", str(scenario_dir("13-29")),
            "--workload", str(workload_file("aggregator_sequential")), "--seeds", "1", "--episodes", "1",
            "--family", "steady", "--plan-k", "2", "--plan-horizon", "2", "--out", str(tmp_path),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["settings"]["plan_k"] == 2 and report["settings"]["plan_horizon"] == 2
    assert "report not stored" in result.output
    assert json.loads((GENERAL / "metadata.json").read_text()) == stored


def test_evaluate_with_plan_k_needs_a_model(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        _app(),
        [
            "evaluate", "--scenario", str(scenario_dir("7-21")), "--workload", str(workload_file("chain")),
            "--plan-k", "2", "--out", str(tmp_path),
        ],
    )  # fmt: skip
    assert result.exit_code != 0 and "--plan-k needs --model" in result.output


def test_a_smoke_run_or_another_workload_never_replaces_the_stored_report(tmp_path: Path) -> None:
    """The stored report is what `reach package` gates on: only a raw run as thorough, on the own cell, replaces it."""
    import shutil

    model = tmp_path / "general"
    shutil.copytree(GENERAL, model)
    stored = json.loads((model / "metadata.json").read_text())
    common = ["evaluate", "--model", str(model), "--seeds", "1", "--episodes", "1", "--family", "steady"]
    smoke = CliRunner().invoke(_app(), [*common, "--out", str(tmp_path / "smoke")])
    assert smoke.exit_code == 0, smoke.output
    assert "report not stored" in smoke.output and "more thorough" in smoke.output
    other = CliRunner().invoke(
        _app(),
        [*common, "--scenario", str(scenario_dir("13-29")), "--workload", str(workload_file("chain")),
         "--out", str(tmp_path / "other")],
    )  # fmt: skip
    assert other.exit_code == 0, other.output
    assert "report not stored" in other.output and "not the artefact's own (aggregator_sequential)" in other.output
    assert json.loads((model / "metadata.json").read_text()) == stored
    # As thorough as what is stored (here a one-episode report): stored.
    metadata = json.loads((model / "metadata.json").read_text())
    metadata["evaluation_report"]["settings"].update(seeds=[0], episodes=1, families=["steady"])
    (model / "metadata.json").write_text(json.dumps(metadata))
    again = CliRunner().invoke(_app(), [*common, "--out", str(tmp_path / "again")])
    assert again.exit_code == 0 and "stored the report" in again.output, again.output
    replaced = json.loads((model / "metadata.json").read_text())["evaluation_report"]
    assert replaced == json.loads((tmp_path / "again" / "report.json").read_text())


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--seeds", "0"], "no evaluation seeds"),
        (["--seeds", "99,100"], "outside 0..99"),
        (["--scenario", "/nonexistent/cluster"], "/nonexistent/cluster"),
        (["--model", "/nonexistent/policy"], "/nonexistent/policy"),
    ],
)
def test_evaluate_names_bad_input_without_a_traceback(tmp_path: Path, arguments: list[str], message: str) -> None:
    options = {"--model": str(GENERAL), "--episodes": "1", "--family": "steady", "--out": str(tmp_path / "out")}
    for flag, value in zip(arguments[::2], arguments[1::2], strict=True):
        options[flag] = value
    result = CliRunner().invoke(_app(), ["evaluate", *(x for kv in options.items() for x in kv)])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_evaluate_finds_the_artefacts_cluster_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        _app(), ["evaluate", "--model", str(GENERAL), "--seeds", "1", "--episodes", "1", "--family", "steady",
                 "--out", "here", "--no-store"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "here" / "report.json").is_file()


def _stored_report(tmp_path: Path) -> Path:
    """The shipped general policy's stored evaluation report as a report.json (no evaluation run needed)."""
    report = tmp_path / "report.json"
    report.write_text(json.dumps(json.loads((GENERAL / "metadata.json").read_text())["evaluation_report"]))
    return report


def test_gate_refuses_an_out_path_in_a_missing_folder_before_gating(tmp_path: Path) -> None:
    report = _stored_report(tmp_path)
    missing = tmp_path / "nodir" / "verdict.json"
    result = CliRunner().invoke(_app(), ["gate", "--report", str(report), "--out", str(missing)])
    assert result.exit_code == 2, result.output  # 1 means "refused by the gate"; this is bad input
    assert f"folder {missing.parent} does not exist" in result.output and "Traceback" not in result.output
    assert "checks" not in result.output and not missing.parent.exists()  # refused before gating
    folder = CliRunner().invoke(_app(), ["gate", "--report", str(report), "--out", str(tmp_path)])
    assert folder.exit_code == 2 and "is a folder" in folder.output
    written = tmp_path / "verdict.json"
    gated = CliRunner().invoke(_app(), ["gate", "--report", str(report), "--out", str(written)])
    assert gated.exit_code in (0, 1), gated.output
    assert json.loads(written.read_text())["passed"] == (gated.exit_code == 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "verdict.json"]  # no temporary file left


def _train(tmp_path: Path, scenario: Path, config: dict[str, object]) -> tuple[int, str]:
    file = tmp_path / "config.json"
    file.write_text(json.dumps(config))
    result = CliRunner().invoke(
        _app(),
        ["train", "--scenario", str(scenario), "--workload", str(workload_file("chain")),
         "--out", str(tmp_path / "run"), "--config", str(file), "--no-progress"],
    )  # fmt: skip
    return result.exit_code, result.output


TINY_CLI = {"total_timesteps": 64, "n_envs": 1, "n_steps": 64, "batch_size": 64, "eval_episodes": 1}


@pytest.mark.parametrize(
    ("scenario", "config", "message"),
    [
        ("nope", TINY_CLI, "nope: $: not a directory"),
        ("7-21", {**TINY_CLI, "init_from": "/nonexistent/policy"}, "init_from /nonexistent/policy: "),
    ],
)
def test_train_refuses_a_bad_scenario_or_init_from_before_creating_out(
    tmp_path: Path, scenario: str, config: dict[str, object], message: str
) -> None:
    code, output = _train(tmp_path, tmp_path / scenario if scenario == "nope" else scenario_dir(scenario), config)
    assert code == 2, output
    assert message in output and "Traceback" not in output
    assert not (tmp_path / "run").exists()


def test_train_refuses_an_init_from_network_that_does_not_fit_and_leaves_no_out_behind(tmp_path: Path) -> None:
    """The artefact loads (checked up front) but its pod_node network does not fit a gain_biased config: that shows
    only when training builds the model, after it created --out; the empty folder is removed."""
    code, output = _train(tmp_path, scenario_dir("7-21"), {**TINY_CLI, "init_from": str(GENERAL)})
    assert code == 2, output
    assert "does not fit this config" in output and "Traceback" not in output
    assert not (tmp_path / "run").exists()


def test_evaluate_takes_a_scenario_and_a_workload_by_name_as_deploy_does(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        _app(),
        [
            "evaluate", "--scenario", "7-21", "--workload", "chain", "--seeds", "1", "--episodes", "1",
            "--family", "steady", "--out", str(tmp_path),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [group] = json.loads((tmp_path / "report.json").read_text())["groups"]
    assert (group["scenario"], group["workload"]) == ("7-21", "chain")


def test_evaluate_names_an_unknown_workload_and_the_known_ones(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        _app(), ["evaluate", "--scenario", "7-21", "--workload", "chian", "--out", str(tmp_path)]
    )  # fmt: skip
    assert result.exit_code != 0 and "chian" in result.output and "aggregator_parallel" in result.output


def test_evaluate_shows_each_finished_unit_on_stderr_and_no_progress_silences_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a terminal each unit (workload, family, seed) says it is done; the report stays on stdout."""
    args = [
        "evaluate", "--scenario", "7-21", "--workload", "chain", "--seeds", "0,3", "--episodes", "1",
        "--family", "steady", "--family", "traffic_surge",
    ]  # fmt: skip
    result = CliRunner().invoke(_app(), [*args, "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    lines = [line.split(" after ")[0] for line in result.stderr.splitlines()]
    assert lines == [
        "evaluated 1/4 units (chain_call_patterns / steady / seed 0)",
        "evaluated 2/4 units (chain_call_patterns / steady / seed 3)",
        "evaluated 3/4 units (chain_call_patterns / traffic_surge / seed 0)",
        "evaluated 4/4 units (chain_call_patterns / traffic_surge / seed 3)",
    ]
    assert "evaluated" not in result.stdout and "wrote " in result.stdout
    quiet = CliRunner().invoke(_app(), [*args, "--no-progress", "--out", str(tmp_path / "b")])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == ""

    def scores(folder: str) -> str:  # the report without its timings (decision seconds differ run to run)
        text = (tmp_path / folder / "report.json").read_text()
        return "\n".join(line for line in text.splitlines() if "decision" not in line)

    assert scores("a") == scores("b")


def test_evaluate_progress_draws_a_bar_on_a_terminal_and_removes_it_when_done(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    from flows.evaluation.units import EvalUnit

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    unit = EvalUnit("7-21", "data/workloads/chain_call_patterns.json", "steady", 0, 1)
    with cli_train.EvaluationProgress(True) as shown:
        shown(0, 2, None)
        assert shown.bar is not None and shown.bar.live.is_started
        shown(1, 2, unit)
        assert (
            shown.bar.tasks[0].completed == 1
            and "chain_call_patterns / steady / seed 0" in shown.bar.tasks[0].description
        )
    assert not shown.bar.live.is_started  # stopped (and, transient, erased) on leaving
    assert "evaluated 1/2 units" not in terminal.getvalue()  # the bar, not the log lines
