"""Bad input to ``reach`` commands is refused with one line naming the thing and the fix, before anything starts;
a failure after a start says what keeps running; the shipped policy's stored report is never replaced by default."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.conftest import DATA, scenario_dir

GENERAL = DATA / "policies" / "general-v4"
runner = CliRunner()


def _never(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("called although the input was bad")


# ---- reach cluster up ------------------------------------------------------------------------------------


def test_cluster_up_refuses_a_missing_scenario_before_starting_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.local.cluster import LocalCluster

    monkeypatch.setattr(LocalCluster, "up", _never)
    result = runner.invoke(app, ["cluster", "up", "--scenario", "/nonexistent/cluster"])
    assert result.exit_code == 2, result.output
    assert "/nonexistent/cluster" in result.output and "7-21" in result.output
    assert isinstance(result.exception, SystemExit)  # no traceback


def test_cluster_up_takes_a_scenario_name_as_the_other_commands_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from flows.local.cluster import LocalCluster

    started: list[Path] = []

    def up(self: object, scenario: Path) -> Path:
        started.append(scenario)
        return tmp_path / "kubeconfig"

    monkeypatch.setattr(LocalCluster, "up", up)
    result = runner.invoke(app, ["cluster", "up", "--scenario", "13-29", "--state-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert [p.resolve() for p in started] == [scenario_dir("13-29").resolve()]


def test_cluster_up_names_a_missing_build_and_exits_1(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from flows.local.cluster import LocalCluster

    def missing(self: object, scenario: Path) -> Path:
        raise FileNotFoundError("/x/kubemark is missing: run deploy/local/install.sh first")

    monkeypatch.setattr(LocalCluster, "up", missing)
    result = runner.invoke(app, ["cluster", "up", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "error: /x/kubemark is missing: run deploy/local/install.sh first" in result.output
    assert isinstance(result.exception, SystemExit)  # no traceback


# ---- reach migrate -----------------------------------------------------------------------------------------


def test_migrate_names_a_missing_kubeconfig_before_running(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import migrator.app

    monkeypatch.setattr(migrator.app, "run_migrator", _never)
    missing = tmp_path / "nonexist"
    result = runner.invoke(app, ["migrate", "--kubeconfig", str(missing), "--once", "--dry-run"])
    assert result.exit_code == 2, result.output
    assert f"kubeconfig {missing}: no such file" in result.output and isinstance(result.exception, SystemExit)


def test_migrate_names_a_kubeconfig_the_client_cannot_load(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The real Kubernetes client's ConfigException, raised where the migrator builds its client."""
    import migrator.app
    from migrator.kube import make_api_client

    monkeypatch.setattr(migrator.app, "run_migrator", lambda settings: make_api_client(settings.kubeconfig) and 0)
    broken = tmp_path / "kubeconfig"
    broken.write_text("{}\n")
    result = runner.invoke(app, ["migrate", "--kubeconfig", str(broken), "--once", "--dry-run"])
    assert result.exit_code == 2, result.output
    assert f"kubeconfig {broken}:" in result.output and "pass --kubeconfig" in result.output
    assert isinstance(result.exception, SystemExit)


def test_migrate_refuses_a_missing_env_file_it_was_given(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import migrator.app

    monkeypatch.setattr(migrator.app, "run_migrator", _never)
    missing = tmp_path / "nonexist.env"
    result = runner.invoke(app, ["migrate", "--env-file", str(missing), "--once", "--dry-run"])
    assert result.exit_code == 2, result.output
    assert "nonexist.env" in result.output and "no such file" in result.output


# ---- reach demo ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "named"),
    [(["--scenario", "7-12"], "7-12"), (["--workload", "chian"], "chian")],
)
def test_demo_refuses_an_unknown_scenario_or_workload_before_starting_anything(
    monkeypatch: pytest.MonkeyPatch, arguments: list[str], named: str
) -> None:
    import flows.loop.stages

    monkeypatch.setattr(flows.loop.stages, "demo", _never)
    result = runner.invoke(app, ["demo", "--no-prefect", *arguments])
    assert result.exit_code == 2, result.output
    assert named in result.output and isinstance(result.exception, SystemExit)


def test_demo_says_what_keeps_running_when_a_stage_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.loop.stages

    def fail(settings: object, options: object, say: object) -> None:
        raise RuntimeError("stage 1 captured 3 traces, too few: raise --world-rps or --trace-window-s")

    monkeypatch.setattr(flows.loop.stages, "demo", fail)
    result = runner.invoke(app, ["demo", "--no-prefect"])
    assert result.exit_code == 1, result.output
    assert "raise --world-rps" in result.output and "until `reach down`" in result.output
    assert isinstance(result.exception, SystemExit)


def test_demo_experiment_checks_its_workloads_and_reports_a_missing_build(monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.loop.experiments

    monkeypatch.setattr(flows.loop.experiments, "experiment", _never)
    refused = runner.invoke(app, ["demo", "experiment", "surge", "--workload", "chian"])
    assert refused.exit_code == 2 and "chian" in refused.output, refused.output

    def missing(*args: object) -> None:
        raise FileNotFoundError("/x/kube-apiserver is missing: run deploy/local/install.sh first")

    monkeypatch.setattr(flows.loop.experiments, "experiment", missing)
    failed = runner.invoke(app, ["demo", "experiment", "surge", "--workload", "chain"])
    assert failed.exit_code == 1, failed.output
    assert "install.sh" in failed.output and "reach down" in failed.output and isinstance(failed.exception, SystemExit)


# ---- reach package, reach images build, reach pipeline run ---------------------------------------------------


def test_package_refuses_a_mistyped_rules_name_before_evaluating_the_incumbent(monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.release.packaging

    monkeypatch.setattr(flows.release.packaging, "find_incumbent", _never)
    result = runner.invoke(app, ["package", "--artefact", str(GENERAL), "--rules", "defualt"])
    assert result.exit_code == 2, result.output
    assert "defualt" in result.output and "default" in result.output and "quickstart" in result.output


def test_release_artefact_loads_the_rules_before_the_incumbent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import flows.release.packaging
    from flows.training.config import ConfigError

    monkeypatch.setattr(flows.release.packaging, "find_incumbent", _never)
    with pytest.raises(ConfigError, match=r"rules\.json: no such file"):
        flows.release.packaging.release_artefact(GENERAL, tmp_path / "rules.json")


def test_images_build_refuses_an_unknown_bento_before_building(monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.release.images

    monkeypatch.setattr(flows.release.images, "build_images", _never)
    result = runner.invoke(app, ["images", "build", "--bento", "reach-policy-service:nosuchversion"])
    assert result.exit_code == 2, result.output
    assert "reach-policy-service:nosuchversion" in result.output and isinstance(result.exception, SystemExit)


def test_pipeline_run_turns_a_failed_step_into_one_line_naming_the_run_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.pipeline
    from flows.local.paths import out_dir

    made: list[Path] = []

    def fail(params: object) -> None:
        folder = out_dir() / "runs" / "20990101-000000"
        folder.mkdir(parents=True)
        made.append(folder)
        raise ValueError("profiles failed Great Expectations: 2 of 9 checks failed\nsee reports/")

    monkeypatch.setattr(flows.pipeline, "reach_pipeline", fail)
    try:
        result = runner.invoke(app, ["pipeline", "run"])
    finally:
        for folder in made:
            shutil.rmtree(folder)
    assert result.exit_code == 1, result.output
    assert "failed Great Expectations" in result.output and str(made[0]) in result.output
    assert "see reports/" not in result.output and isinstance(result.exception, SystemExit)


# ---- reach sim, reach gate, reach down -------------------------------------------------------------------


def test_sim_demo_refuses_a_negative_seed_naming_the_flag() -> None:
    result = runner.invoke(app, ["sim", "demo", "--seed", "-1"])
    assert result.exit_code == 2 and "--seed" in result.output and isinstance(result.exception, SystemExit)


def test_sim_generate_names_the_max_replica_flag(tmp_path: Path) -> None:
    result = runner.invoke(app, ["sim", "generate", "--out", str(tmp_path / "gen"), "--max-replica", "0"])
    assert result.exit_code == 2 and "--max-replica" in result.output
    assert not (tmp_path / "gen").exists()


def test_gate_on_a_metadata_json_prints_a_short_excerpt_and_the_fix() -> None:
    result = runner.invoke(app, ["gate", "--report", str(GENERAL / "metadata.json")])
    assert result.exit_code == 2, result.output
    assert len(result.output) < 1500 and "tb-edge-vm-2-1" not in result.output
    assert "not a report" in result.output and "reach evaluate --model" in result.output


def test_down_help_names_everything_it_stops() -> None:
    result = runner.invoke(app, ["down", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for part in ("migrator", "bento", "world", "Prometheus", "cluster", "Prefect server"):
        assert part in result.output, part


# ---- reach evaluate ------------------------------------------------------------------------------------------


def test_evaluate_on_a_train_run_folder_names_its_policy_folder(tmp_path: Path) -> None:
    shutil.copytree(GENERAL, tmp_path / "run" / "policy")
    result = runner.invoke(app, ["evaluate", "--model", str(tmp_path / "run"), "--out", str(tmp_path / "eval")])
    assert result.exit_code == 2, result.output
    assert f"--model {tmp_path / 'run' / 'policy'}" in result.output and not (tmp_path / "eval").exists()


QUICK = ["--seeds", "1", "--episodes", "1", "--family", "steady"]


@pytest.mark.slow
def test_evaluate_uses_the_recorded_files_of_a_renamed_cluster(tmp_path: Path) -> None:
    model = tmp_path / "renamed"
    shutil.copytree(GENERAL, model)
    metadata = json.loads((model / "metadata.json").read_text())
    metadata["scenario_name"] = "my-renamed-cluster"  # no data/scenarios/my-renamed-cluster
    (model / "metadata.json").write_text(json.dumps(metadata))
    result = runner.invoke(app, ["evaluate", "--model", str(model), *QUICK, "--out", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    assert "evaluating on the recorded files" in result.output
    [group] = json.loads((tmp_path / "eval" / "report.json").read_text())["groups"]
    assert (group["scenario"], group["workload"]) == ("my-renamed-cluster", "aggregator_sequential")


@pytest.mark.slow
def test_evaluate_never_replaces_a_shipped_policys_report_unless_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A policy under the data folder's policies/ (git-tracked in a checkout) keeps its report; --store replaces it."""
    data = tmp_path / "data"
    for part in ("scenarios", "workloads"):
        shutil.copytree(DATA / part, data / part)
    shipped = data / "policies" / "general"
    shutil.copytree(GENERAL, shipped)
    metadata = json.loads((shipped / "metadata.json").read_text())
    metadata["evaluation_report"]["settings"].update(seeds=[0], episodes=1, families=["steady"])  # easy to beat
    (shipped / "metadata.json").write_text(json.dumps(metadata))
    before = (shipped / "metadata.json").read_text()
    monkeypatch.setenv("REACH_DATA_DIR", str(data))
    kept = runner.invoke(app, ["evaluate", "--model", str(shipped), *QUICK, "--out", str(tmp_path / "a")])
    assert kept.exit_code == 0, kept.output
    assert "report not stored" in kept.output and "--store" in kept.output
    assert (shipped / "metadata.json").read_text() == before
    stored = runner.invoke(app, ["evaluate", "--model", str(shipped), *QUICK, "--store", "--out", str(tmp_path / "b")])
    assert stored.exit_code == 0 and "stored the report" in stored.output, stored.output
    assert (shipped / "metadata.json").read_text() != before
