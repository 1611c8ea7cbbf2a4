"""Review fixes of the release flows: the recorded cluster survives a restart, rejected bentos stay out of the
automatic choice, refusals say what to do, and bad input is refused before any work.

No server is started and nothing is trained: the serving deployment is an endpoint file (pointing at this
live test process, or at it under another start time, which reads as a server that is down), the BentoML
store is a stand-in where a lookup would read it, and the pipeline and the redeploy of a retrain are
recorders. Each test has a private ``$REACH_HOME``.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from flows.local import processes
from flows.pipeline import PipelineParams
from flows.release import serving
from flows.release.selection import Cluster, cluster_of
from tests.conftest import scenario_dir, workload_file

ROOT = Path(__file__).resolve().parents[2]
SERVED = "reach-policy-service:served"
OLD, NEW = "reach-policy-service:old", "reach-policy-service:new"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private ``$REACH_HOME`` (endpoint file, rejected bentos, schedule, locks)."""
    folder = tmp_path / "reach-home"
    monkeypatch.setenv("REACH_HOME", str(folder))
    return folder


def _record(cluster: Cluster, bento: str = SERVED, alive: bool = True, url: str = "http://127.0.0.1:1") -> Any:
    """Write the endpoint file: ``bento`` serving ``cluster`` from this process, or (``alive=False``) a record
    whose server is down, as after ``reach down && reach up`` (the PID now belongs to another process)."""
    started = processes.process_start(os.getpid())
    assert started is not None
    pid_start = started if alive else started + 1
    fields: dict[str, Any] = serving.cluster_fields(cluster)
    endpoint = serving.Endpoint(url, bento, "blue", os.getpid(), 0.0, pid_start=pid_start, **fields)
    serving.switch(endpoint)
    return endpoint


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A stand-in of ``bentoml.bentos.get`` holding the served bento (raw policy: plan_k 0)."""
    import bentoml

    bentos = {SERVED: SimpleNamespace(info=SimpleNamespace(args={"model_tag": "reach-policy:x"}))}

    def get(tag: str) -> Any:
        if tag not in bentos:
            raise bentoml.exceptions.NotFound(f"no bento {tag}")
        return bentos[tag]

    monkeypatch.setattr(importlib.import_module("bentoml.bentos"), "get", get)
    return bentos


@pytest.fixture
def retrain_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The retrain's pipeline (passes, trains on the files it was given) and redeploy, as recorders."""
    from flows.local.paths import resolve_scenario, resolve_workload
    from flows.release import redeploy

    seen: dict[str, Any] = {}

    def pipeline(params: PipelineParams) -> dict[str, Any]:
        seen["pipeline"] = params
        scenario = resolve_scenario(params.scenario)
        workload = resolve_workload(params.workload, scenario)
        return {"passed": True, "bento": NEW, "scenario_dir": str(scenario), "workload_file": str(workload)}

    def switch(bento: str, scenario: str, workload: str, **options: Any) -> dict[str, Any]:
        seen["redeploy"] = (bento, scenario, workload)
        return {"bento": bento}

    monkeypatch.setattr(redeploy, "reach_pipeline", pipeline)
    monkeypatch.setattr(redeploy, "reach_redeploy", switch)
    return seen


def _copy_of_13_29(folder: Path, edit: bool) -> tuple[Path, Path]:
    """A copy of 13-29 / chain outside data/ (``edit``: its nodes.json one byte longer, so other files)."""
    cluster = shutil.copytree(scenario_dir("13-29"), folder / "13-29")
    if edit:
        nodes = cluster / "nodes.json"
        nodes.write_text(nodes.read_text() + "\n")
    workload = folder / "chain_call_patterns.json"
    shutil.copyfile(workload_file("chain"), workload)
    return cluster, workload


# 1. the recorded cluster, also while its server is down


def test_a_scheduled_retrain_after_a_restart_retrains_and_redeploys_the_recorded_cluster_not_the_defaults(
    home: Path, store: dict[str, Any], retrain_calls: dict[str, Any], tmp_path: Path
) -> None:
    from flows.release.redeploy import reach_retrain

    cluster_dir, workload = _copy_of_13_29(tmp_path / "demo", edit=False)
    _record(cluster_of(str(cluster_dir), str(workload)), alive=False)
    assert serving.current_endpoint() is None  # its server is down: `reach down && reach up`
    reach_retrain.fn()
    params: PipelineParams = retrain_calls["pipeline"]
    assert (params.scenario, params.workload) == (str(cluster_dir.resolve()), str(workload.resolve()))
    bento, scenario, _ = retrain_calls["redeploy"]
    assert bento == NEW and Path(scenario) == cluster_dir.resolve()


def test_a_retrain_naming_another_cluster_is_refused_while_the_recorded_server_is_down(
    home: Path, store: dict[str, Any], retrain_calls: dict[str, Any]
) -> None:
    from flows.release.redeploy import reach_retrain

    _record(cluster_of("13-29", "chain"), alive=False)
    with pytest.raises(ValueError, match=r"serves 13-29 / chain, not 7-21 / aggregator_sequential.*switch_cluster"):
        reach_retrain.fn(PipelineParams(scenario="7-21", workload="aggregator_sequential"))
    assert "pipeline" not in retrain_calls


def test_a_deploy_naming_no_cluster_serves_the_recorded_cluster_while_its_server_is_down(home: Path) -> None:
    from flows.release.redeploy import target_cluster

    recorded = cluster_of("13-29", "chain")
    _record(recorded, alive=False)
    assert target_cluster.fn(None, None, None) == recorded  # not "which cluster is this deployment for?"


# 3. the recorded files are gone: the refusal says so, and how to fix it


def test_a_retrain_whose_recorded_files_are_gone_says_so_and_how_to_restore_them(
    home: Path, store: dict[str, Any], retrain_calls: dict[str, Any], tmp_path: Path
) -> None:
    from flows.release.redeploy import reach_retrain

    cluster_dir, workload = _copy_of_13_29(tmp_path / "demo", edit=True)
    _record(cluster_of(str(cluster_dir), str(workload)))
    shutil.rmtree(tmp_path / "demo")
    with pytest.raises(ValueError) as refused:
        reach_retrain.fn()
    message = str(refused.value)
    assert f"{cluster_dir.resolve()}, is gone" in message and f"restore {cluster_dir.resolve()}" in message
    assert "switch_cluster=true" in message and str(scenario_dir("13-29").resolve()) in message
    assert "not 13-29 / chain" not in message and "leave params.scenario and params.workload unset" not in message
    assert "pipeline" not in retrain_calls


def test_a_retrain_whose_recorded_files_were_edited_says_they_changed(
    home: Path, store: dict[str, Any], retrain_calls: dict[str, Any], tmp_path: Path
) -> None:
    from flows.release.redeploy import reach_retrain

    cluster_dir, workload = _copy_of_13_29(tmp_path / "demo", edit=False)
    _record(cluster_of(str(cluster_dir), str(workload)))
    (cluster_dir / "nodes.json").write_text((cluster_dir / "nodes.json").read_text() + "\n")
    with pytest.raises(ValueError, match=r"changed since it was deployed.*restore them.*switch_cluster=true"):
        reach_retrain.fn()


def test_a_retrain_whose_recorded_files_are_gone_and_whose_names_resolve_to_nothing_names_the_recorded_files(
    home: Path, store: dict[str, Any], retrain_calls: dict[str, Any], tmp_path: Path
) -> None:
    from flows.release.redeploy import reach_retrain

    cluster_dir = shutil.copytree(scenario_dir("13-29"), tmp_path / "demo" / "my-edge-site")
    _record(cluster_of(str(cluster_dir), "chain"))
    shutil.rmtree(tmp_path / "demo")
    with pytest.raises(ValueError, match=r"served cluster my-edge-site / chain.*recorded files.*are gone.*restore"):
        reach_retrain.fn()
    assert "pipeline" not in retrain_calls


# 2. rejected bentos: a failed canary or a rollback keeps a bento out of the automatic choice


def _gated(*tags: str) -> list[Any]:
    """Stand-ins of gated bentos of 7-21 / chain, newest first."""
    labels = {"gate": "passed", "scenario": "7-21", "workload": "chain"}
    return [SimpleNamespace(tag=tag, info=SimpleNamespace(labels=labels)) for tag in tags]


@pytest.fixture
def gated(monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.release import packaging

    monkeypatch.setattr(packaging, "gated_bentos", lambda: _gated(NEW, OLD))
    monkeypatch.setattr(packaging, "bento_labels", lambda tag: dict(_gated(tag)[0].info.labels))


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """``start_bento`` and the registry's stop replaced (no process); the canary answers as ``canary["failures"]``."""
    canary: dict[str, Any] = {"failures": []}
    record = processes.ProcessRecord("bento-green", os.getpid(), 2, ["x"], "x.log", 0.0)
    monkeypatch.setattr(serving, "start_bento", lambda *args, **kwargs: record)
    monkeypatch.setattr(processes, "stop", lambda *args, **kwargs: True)
    monkeypatch.setattr(
        serving, "canary",
        lambda *args: serving.CanaryResult(2, 0, list(canary["failures"]), sum(" HTTP " in f for f in canary["failures"])),
    )  # fmt: skip
    return canary


def test_a_bento_that_failed_its_canary_is_skipped_by_the_next_automatic_choice_and_readmitted_when_named(
    home: Path, gated: None, servers: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.release import redeploy
    from flows.release.packaging import gated_bento_for

    cluster = cluster_of("7-21", "chain")
    _record(cluster, bento=OLD)
    servers["failures"] = ["request 0: HTTP 500: boom"]
    with pytest.raises(serving.RedeployError, match=r"failed 1 of 2 canary requests.*skips it"):
        serving.redeploy(NEW, [{}], drain_s=0.0, cluster=cluster)
    assert serving.current_endpoint() is not None and serving.current_endpoint().bento == OLD  # type: ignore[union-attr]
    assert gated_bento_for(cluster) == OLD
    choose = redeploy.choose_bento.fn
    assert choose(None, cluster) is None  # the old one serves: nothing to deploy
    logged: list[str] = []
    monkeypatch.setattr(redeploy, "get_run_logger", lambda: SimpleNamespace(info=lambda f, *a: logged.append(f % a)))
    for name in ("target_cluster", "choose_bento"):  # the tasks' bodies: no Prefect server
        monkeypatch.setattr(redeploy, name, getattr(redeploy, name).fn)
    result = redeploy.reach_redeploy.fn()
    assert result["bento"] is None and NEW in result["reason"] and "canary" in result["reason"]
    assert f"reach deploy --bento {NEW}" in result["reason"] and logged == [result["reason"]]

    servers["failures"] = []  # named explicitly, it is deployed, and eligible again once it serves
    assert choose(NEW, cluster) == NEW
    serving.redeploy(NEW, [{}], drain_s=0.0, cluster=cluster)
    assert gated_bento_for(cluster) == NEW
    assert json.loads((home / "rejected-bentos.json").read_text()) == {}


def test_a_canary_that_got_no_answer_fails_the_deploy_but_does_not_reject_the_bento(
    home: Path, gated: None, servers: dict[str, Any]
) -> None:
    """A timeout on a busy machine is not the bento's verdict (found by the review of this session's diff):
    rejecting it made `reach demo --policy auto` build a new bento after every slow canary."""
    from flows.release.packaging import gated_bento_for

    cluster = cluster_of("7-21", "chain")
    _record(cluster, bento=OLD)
    servers["failures"] = ["request 0: no usable answer: timed out"]
    with pytest.raises(serving.RedeployError, match=r"failed 1 of 2 canary requests.*stays eligible"):
        serving.redeploy(NEW, [{}], drain_s=0.0, cluster=cluster)
    assert serving.current_endpoint().bento == OLD  # type: ignore[union-attr]
    assert gated_bento_for(cluster) == NEW
    assert not (home / "rejected-bentos.json").exists()


def test_the_canary_counts_only_wrong_answers_as_the_bentos(home: Path) -> None:
    """Nothing listens on the port: no answer at all, so no wrong answer."""
    result = serving.canary(f"http://127.0.0.1:{processes.free_port()}", None, [{}])
    assert len(result.failures) == 1 and result.answered_wrongly == 0


def _switched(cluster: Cluster) -> serving.RedeployResult:
    """NEW switched in over OLD (both endpoint records), the endpoint file naming NEW."""
    fields: dict[str, Any] = serving.cluster_fields(cluster)
    old = serving.Endpoint("http://127.0.0.1:1", OLD, "blue", os.getpid(), 0.0, **fields)
    new = serving.Endpoint("http://127.0.0.1:2", NEW, "green", os.getpid(), 1.0, **fields)
    serving.switch(new)
    return serving.RedeployResult(new, old, serving.CanaryResult(1, 1, []))


@pytest.fixture
def worse(monkeypatch: pytest.MonkeyPatch) -> Any:
    """An analysis that measures the new policy twice as slow (no Prometheus, no artifact)."""
    from flows.release import redeploy
    from flows.release.analysis import AnalysisParams

    monkeypatch.setattr(redeploy, "measure_periods", lambda *args: ([100.0] * 10, [200.0] * 10))
    monkeypatch.setattr(redeploy, "create_markdown_artifact", lambda *args, **kwargs: None)
    return AnalysisParams(prometheus_url="http://127.0.0.1:9")


def test_a_rolled_back_bento_is_skipped_by_the_next_automatic_choice(
    home: Path, gated: None, worse: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.release import redeploy
    from flows.release.packaging import gated_bento_for

    cluster = cluster_of("7-21", "chain")
    result = _switched(cluster)
    assert result.previous is not None
    monkeypatch.setattr(serving, "roll_back", lambda *args, **kwargs: result.previous)
    with pytest.raises(redeploy.RolledBack):
        redeploy.analyse_release(result, worse, 1.0)
    assert gated_bento_for(cluster) == OLD, "the rolled-back bento, still gated and newest, was chosen again"
    rejected = json.loads((home / "rejected-bentos.json").read_text())
    assert list(rejected) == [NEW] and "rolled back" in rejected[NEW]["reason"] and rejected[NEW]["since"] > 0


# 6. a refused rollback says what serves now


def test_a_rollback_refused_because_another_deploy_replaced_the_endpoint_names_what_serves_now(
    home: Path, worse: Any
) -> None:
    from flows.release import redeploy

    cluster = cluster_of("7-21", "chain")
    result = _switched(cluster)
    _record(cluster, bento="reach-policy-service:other", url="http://127.0.0.1:3")  # another deploy, meanwhile
    with pytest.raises(redeploy.RollbackFailed) as failed:
        redeploy.analyse_release(result, worse, 1.0)
    assert "reach-policy-service:other serves at http://127.0.0.1:3" in str(failed.value)
    assert f"{NEW} still serves" not in str(failed.value)


# 4. a cron that never fires


@pytest.mark.parametrize("cron", ["0 0 30 2 *", "0 0 31 4 *"])
def test_a_cron_that_never_fires_is_refused_naming_it_and_an_example(home: Path, cron: str) -> None:
    from flows.cli import app
    from flows.release import deployments

    with pytest.raises(ValueError, match=r"never fires.*'0 3 \* \* 0'") as refused:
        deployments.save_retrain_cron(cron)
    assert repr(cron) in str(refused.value)
    result = CliRunner().invoke(app, ["retrain", "schedule", "--cron", cron], env={"COLUMNS": "250"})
    assert result.exit_code == 2 and cron in result.output, result.output
    assert not deployments.schedule_file().exists()
    deployments.schedule_file().parent.mkdir(parents=True, exist_ok=True)
    deployments.schedule_file().write_text(json.dumps({"cron": cron}))  # written by hand: the runner refuses it too
    with pytest.raises(ValueError, match="holds no retraining schedule"):
        deployments.retrain_cron()


def test_a_schedule_that_fires_is_saved_and_its_next_fire_time_is_said(home: Path) -> None:
    import datetime

    from flows.cli import app
    from flows.release import deployments

    after = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    assert deployments.next_fire_time("0 3 * * 0", after) == datetime.datetime(2026, 1, 4, 3, tzinfo=datetime.UTC)
    assert deployments.next_fire_time("0 0 29 2 *", after) == datetime.datetime(2028, 2, 29, tzinfo=datetime.UTC)
    result = CliRunner().invoke(app, ["retrain", "schedule", "--cron", "0 3 * * 0"], env={"COLUMNS": "250"})
    assert result.exit_code == 0 and "next at" in result.output, result.output
    assert deployments.retrain_cron() == "0 3 * * 0"


# 5. no switch without a canary


@pytest.mark.parametrize("size", [0, -3])
def test_a_redeploy_without_canary_requests_is_refused_before_any_work(
    home: Path, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.release import redeploy

    def no_work(*args: Any) -> Any:
        raise AssertionError("the redeploy went on to choose a cluster")

    monkeypatch.setattr(redeploy, "target_cluster", no_work)
    with pytest.raises(ValueError, match=rf"canary_size={size}.*at least 1"):
        redeploy.reach_redeploy.fn(canary_size=size)


# 7. a run_dir holding another run's files: refused by the pre-flight check, exit 2


def test_a_run_dir_holding_files_is_refused_before_the_flow_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows import pipeline
    from flows.cli import app

    taken = tmp_path / "earlier-run"
    taken.mkdir()
    (taken / "pipeline.json").write_text("{}")
    params = PipelineParams(workload="chain", run_dir=str(taken))
    with pytest.raises(ValueError, match=r"run_dir .*earlier-run already exists and is not an empty folder"):
        pipeline.check_params(params)

    def flow(_: PipelineParams) -> dict[str, Any]:
        raise AssertionError("the flow started with a run_dir holding another run's files")

    monkeypatch.setattr(pipeline, "reach_pipeline", flow)
    file = tmp_path / "params.json"
    file.write_text(params.model_dump_json(exclude_defaults=True))
    result = CliRunner().invoke(app, ["pipeline", "run", "--params", str(file)], env={"COLUMNS": "250"})
    assert result.exit_code == 2, result.output
    assert "already exists and is not an empty folder" in result.output and "Traceback" not in result.output
    pipeline.check_params(params.model_copy(update={"run_dir": str(tmp_path / "new-run")}))  # a new folder: fine


# 8. the docs say how the switching deployments are serialised


def test_the_docs_say_the_switch_lock_not_the_deployments_serialises_switches() -> None:
    for doc in (ROOT / "README.md", ROOT / "docs" / "release.md"):
        text = " ".join(doc.read_text().split())
        assert "run one at a time." not in text and "Both deployments run one at a time" not in text, doc
        assert "SwitchBusy" in text and "180 s" in text, doc


def test_the_gates_incumbent_is_never_a_rejected_bento(
    home: Path, gated: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The candidate is judged against the bento serving, else the newest gated one no deploy rejected: a bento
    just rolled back is no bar for its successor (found by the review of this session's diff)."""
    import bentoml

    from flows.release import rejections
    from flows.release.packaging import find_incumbent

    looked_up: list[str] = []

    def not_found(tag: str) -> Any:
        looked_up.append(str(tag))
        raise bentoml.exceptions.NotFound(f"{tag} (stand-in)")

    monkeypatch.setattr(importlib.import_module("bentoml.bentos"), "get", not_found)
    rejections.reject(NEW, "rolled back: test")
    assert find_incumbent("7-21", "chain") is None
    assert looked_up == [OLD]
