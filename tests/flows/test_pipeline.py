"""The Prefect flows: parameters, tasks via .fn(), and end-to-end runs under one test harness.

The end-to-end tests train a tiny policy on 7-21, evaluate it, gate it, package it as a real bento,
serve it with ``bentoml serve`` on loopback, and switch to a second bento blue/green while a client
sends requests throughout; a bento that never becomes ready is rolled back.

The module has a BentoML store and a REACH_HOME of its own (:func:`private_state`): a gated bento
that another module left in the session's store, or a deployment recorded in its REACH_HOME, would
be the incumbent of these runs' gates (an incumbent evaluated on other groups makes the gate refuse).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from flows.pipeline import PipelineParams, validate_scenario
from tests.conftest import private_bentoml_store, scenario_dir, workload_file
from tests.release.conftest import remove_bentos, stored_models

PERMISSIVE_GATE = {
    "beat_noop": True,
    "beat_random": True,
    "beat_greedy": False,
    "min_fraction_of_best_known": 0.0,
    "max_invalid_actions": 0,
    "incumbent_tolerance_pct": 1000.0,
    "require_incumbent": False,
}
STRICT_GATE = {**PERMISSIVE_GATE, "beat_greedy": True, "min_fraction_of_best_known": 1.2}
TINY_TRAIN = {
    "total_timesteps": 4096,
    "n_envs": 4,
    "n_steps": 256,
    "batch_size": 256,
    "n_epochs": 4,
    "learning_rate": 0.001,
    "eval_freq_steps": 2048,
    "eval_episodes": 4,
}


@pytest.fixture(scope="module", autouse=True)
def private_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A BentoML store and a REACH_HOME of this module's own, as tests/bento/conftest.py's ``bentoml_home`` does it.

    BentoML's container is patched for this process (home, model store, bento store together, so no store
    object of the session's home is left in use) and ``BENTOML_HOME``/``REACH_HOME`` are set for the
    subprocesses (``bentoml serve``, a build); all is restored when the module ends. Module scope nests inside
    any package-scoped patch (tests/bento's ends with its package), so patches are always undone in reverse order.
    """
    root = tmp_path_factory.mktemp("pipeline-state")
    with private_bentoml_store(root / "bentoml") as home, pytest.MonkeyPatch.context() as env:
        env.setenv("REACH_HOME", str(root / "reach"))
        yield home


def test_default_parameters_are_valid_and_unknown_ones_are_refused() -> None:
    params = PipelineParams()
    assert (params.scenario, params.workload, len(params.eval_seeds)) == ("7-21", "aggregator_sequential", 5)
    with pytest.raises(ValidationError, match="extra"):
        PipelineParams.model_validate({"scenario": "7-21", "epochs": 3})
    with pytest.raises(ValidationError, match="families"):
        PipelineParams.model_validate({"families": ["earthquake"]})


def test_validate_scenario_task_lists_every_problem(tmp_path: Path) -> None:
    assert "7 nodes" in validate_scenario.fn(scenario_dir("7-21"), workload_file("chain"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "nodes.json").write_text("{}")
    (broken / "services.json").write_text("[]")
    with pytest.raises(ValueError, match=r"nodes.json.*\n.*services.json"):
        validate_scenario.fn(broken, workload_file("chain"))


def test_eval_seeds_that_cannot_give_a_whole_evaluation_are_refused_with_the_parameters() -> None:
    with pytest.raises(ValidationError, match=r"eval_seeds \[0, 0, 150\] contain duplicates"):
        PipelineParams(eval_seeds=[0, 0, 150], families=["traffic_surge"])
    with pytest.raises(ValidationError, match=r"eval_seeds \[150\] are outside 0..99"):
        PipelineParams(eval_seeds=[0, 150])


class _Trained(Exception):
    """Raised by the stand-in training task: the run got as far as training."""


@pytest.fixture
def stop_at_training(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Path]:
    """Run the flow's body (``reach_pipeline.fn``, no Prefect server) up to training; return the run folders it
    reached training with. The default run folders go under ``tmp_path/out``."""
    from flows import pipeline

    reached: list[Path] = []

    def train_policy(params: PipelineParams, scenario_dir: Path, workload_file: Path, run_dir: Path) -> None:
        reached.append(run_dir)
        raise _Trained

    monkeypatch.setattr(pipeline, "validate_scenario", pipeline.check_files)  # the task's body, without Prefect
    monkeypatch.setattr(pipeline, "train_policy", train_policy)
    monkeypatch.setenv("REACH_OUT_DIR", str(tmp_path / "out"))
    return reached


def test_a_family_the_cluster_cannot_have_is_refused_before_the_run_folder_and_training(
    stop_at_training: list[Path], tmp_path: Path
) -> None:
    import shutil

    from flows.pipeline import reach_pipeline

    cluster = shutil.copytree(scenario_dir("7-21"), tmp_path / "single-aggregator")
    services = json.loads((cluster / "services.json").read_text())
    services["aggregator"]["max-replica"] = 1  # chain calls the aggregator first: nothing can surge
    (cluster / "services.json").write_text(json.dumps(services))
    params = PipelineParams(
        scenario=str(cluster), workload=str(workload_file("chain")), families=["steady", "traffic_surge"],
        run_dir=str(tmp_path / "run"),
    )  # fmt: skip
    with pytest.raises(ValueError, match="max-replica is 1"):
        reach_pipeline.fn(params)
    assert stop_at_training == [] and not (tmp_path / "run").exists()
    with pytest.raises(_Trained):  # the same run with a family the cluster can have gets to training
        reach_pipeline.fn(params.model_copy(update={"families": ["steady"]}))
    assert stop_at_training == [tmp_path / "run"]


def test_every_run_gets_a_folder_of_its_own(stop_at_training: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs in the same second do not share training/best_model.zip and policy/; an explicit run_dir holding
    another run's files is refused before training."""
    from flows import pipeline

    monkeypatch.setattr(pipeline.time, "strftime", lambda _format: "20260101-000000")
    params = PipelineParams(workload="chain")
    for _ in range(2):
        with pytest.raises(_Trained):
            pipeline.reach_pipeline.fn(params)
    first, second = stop_at_training
    assert first != second and first.is_dir() and second.is_dir()
    assert (first.name, second.name) == ("20260101-000000", "20260101-000000-2")
    (first / "training").mkdir()
    (first / "training" / "best_model.zip").write_bytes(b"the first run's model")
    with pytest.raises(ValueError, match=re.escape(f"run_dir {first} already exists and is not an empty folder")):
        pipeline.reach_pipeline.fn(params.model_copy(update={"run_dir": str(first)}))
    assert len(stop_at_training) == 2
    with pytest.raises(_Trained):  # an empty explicit folder is the run's own
        pipeline.reach_pipeline.fn(params.model_copy(update={"run_dir": str(first.parent / "empty")}))


GENERAL = Path(__file__).resolve().parents[2] / "data" / "policies" / "general-v4"
PLANNING = {"plan_k": 2, "plan_horizon": 2, "plan_width": 4, "plan_margin": 2.0}


def test_the_gate_reads_an_evaluation_of_the_planner_the_bento_serves(tmp_path: Path) -> None:
    """With plan_k the run's evaluation plays the planner its bento is built with; packaging refuses a bento
    whose stored evaluation (what the gate judged) played other decisions than the bento would serve."""
    import shutil

    from bento.artefact import write_evaluation
    from flows.evaluation import evaluate_unit, report_from_records
    from flows.pipeline import evaluation_units
    from flows.release.packaging import check_gated_as_served, package

    artefact = shutil.copytree(GENERAL, tmp_path / "policy")
    raw = PipelineParams(eval_seeds=[0], eval_episodes=1)
    planned = raw.model_copy(update=PLANNING)
    scenario, workload = scenario_dir("7-21"), workload_file("chain")
    assert {u.plan_k for u in evaluation_units(raw, scenario, workload, str(artefact))} == {0}
    units = evaluation_units(planned, scenario, workload, str(artefact))
    assert {(u.plan_k, u.plan_horizon, u.plan_width, u.plan_margin) for u in units} == {tuple(PLANNING.values())}

    def gate_reads(params: PipelineParams) -> None:  # what publish_evaluation stores and the gate reads
        records = [r for u in evaluation_units(params, scenario, workload, str(artefact)) for r in evaluate_unit(u)]
        report = report_from_records(artefact, records, params.evaluation_settings())
        write_evaluation(artefact, report.model_dump(mode="json"))

    gate_reads(raw)
    with pytest.raises(ValueError, match="judged the raw policy but the bento would serve planning"):
        package(artefact, True, "gated on the raw policy", planned.planning())
    check_gated_as_served(artefact, raw.planning())
    gate_reads(planned)
    check_gated_as_served(artefact, planned.planning())
    with pytest.raises(ValueError, match=r"judged planning \(plan_k=2.*would serve the raw policy"):
        package(artefact, True, "gated on planning", raw.planning())
    with pytest.raises(ValueError, match=r"plan_horizon=2.*plan_horizon=4"):
        check_gated_as_served(artefact, {**PLANNING, "plan_horizon": 4})


def _write(path: Path, content: dict[str, Any]) -> str:
    path.write_text(json.dumps(content))
    return str(path)


def _params(tmp_path: Path, gate: dict[str, Any], name: str) -> PipelineParams:
    base = json.loads((Path(__file__).resolve().parents[2] / "data" / "train" / "default.json").read_text())
    return PipelineParams(
        train_config=_write(tmp_path / "train.json", {**base, **TINY_TRAIN}),
        gate_rules=_write(tmp_path / f"gate-{name}.json", gate),
        eval_seeds=[0, 1, 2, 3, 4],
        eval_episodes=1,
        run_dir=str(tmp_path / name),
    )


def _artifact_keys(flow_run_id: Any) -> set[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key for a in artifacts if a.key}


@pytest.fixture(scope="module")
def passed_run(prefect_harness: None, private_state: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from flows.pipeline import reach_pipeline
    from flows.release.packaging import find_incumbent

    incumbent_before = find_incumbent("7-21", "aggregator_sequential")  # what the run's gate will compare with
    state = reach_pipeline(_params(tmp_path_factory.mktemp("pipeline"), PERMISSIVE_GATE, "passed"), return_state=True)
    return {"result": state.result(), "flow_run_id": state.state_details.flow_run_id, "before": incumbent_before}


@pytest.mark.e2e
def test_pipeline_run_trains_evaluates_gates_and_packages_a_bento(passed_run: dict[str, Any]) -> None:
    import bentoml

    before = passed_run["before"]
    assert before is None, (
        f"the run's gate had an incumbent, {before.bento if before else ''}, in a store that should be this "
        "module's own (private_state): a bento leaked in, and its report decides this gate"
    )
    result = passed_run["result"]
    assert result["passed"] and result["bento"]
    bento = bentoml.bentos.get(result["bento"])
    assert bento.info.labels["gate"] == "passed" and bento.info.labels["scenario"] == "7-21"
    model = bentoml.models.get(bento.info.labels["model"])
    assert model.info.metadata["evaluation"]["groups"]
    assert {"evaluation-table", "evaluation-plots", "gate-verdict", "gate-checks"} <= _artifact_keys(
        passed_run["flow_run_id"]
    )
    run_dir = Path(result["run_dir"])
    assert (run_dir / "evaluation" / "report.json").exists() and (run_dir / "pipeline.json").exists()


@pytest.mark.e2e
def test_a_refused_gate_stops_before_packaging(passed_run: dict[str, Any], tmp_path: Path) -> None:
    import bentoml

    from flows.pipeline import reach_pipeline

    before = {str(b.tag) for b in bentoml.bentos.list()}
    result = reach_pipeline(_params(tmp_path, STRICT_GATE, "refused"))
    assert not result["passed"] and result["bento"] is None and "refused" in result["gate"]
    assert {str(b.tag) for b in bentoml.bentos.list()} == before


def _traffic(stop: threading.Event, outcomes: list[int], body: dict[str, Any]) -> None:
    from flows.release.serving import current_endpoint, post_json

    while not stop.is_set():
        endpoint = current_endpoint()
        if endpoint is None:
            time.sleep(0.05)
            continue
        try:
            status, _ = post_json(f"{endpoint.url}/get_action", body, timeout_s=10)
        except OSError:
            status = -1
        outcomes.append(status)
        time.sleep(0.02)


@pytest.mark.e2e
def test_redeploy_switches_blue_green_without_failed_requests_and_rolls_back_a_broken_bento(
    passed_run: dict[str, Any],
) -> None:
    import bentoml

    from flows.release.packaging import BENTOFILE, REPO_ROOT, package
    from flows.release.redeploy import canary_requests, reach_redeploy
    from flows.release.serving import RedeployError, current_endpoint, undeploy

    first = passed_run["result"]["bento"]
    models_before = stored_models()
    left: list[str] = []  # bentos this test packages or builds: deleted at its end, whatever happened
    try:
        assert reach_redeploy(first)["bento"] == first
        serving = current_endpoint()
        assert serving is not None and serving.bento == first
        artefact = Path(passed_run["result"]["training"]["artefact_dir"])
        second = package(artefact, True, "re-packaged for the switch test")
        left.append(second)
        stop, outcomes = threading.Event(), []
        client = threading.Thread(
            target=_traffic, args=(stop, outcomes, canary_requests("7-21", "aggregator_sequential", 1)[0])
        )
        client.start()
        try:
            time.sleep(1.0)
            assert reach_redeploy()["bento"] == second  # the newest gated bento that is not serving
            time.sleep(1.0)
        finally:
            stop.set()
            client.join()
        assert outcomes and set(outcomes) == {200}, (
            f"failed requests during the switch: {[s for s in outcomes if s != 200]}"
        )
        switched = current_endpoint()
        assert switched is not None and switched.bento == second and switched.slot != serving.slot
        broken = bentoml.bentos.build_bentofile(
            str(BENTOFILE),
            build_ctx=str(REPO_ROOT),
            labels={
                "gate": "passed",
                "scenario": "7-21",
                "workload": "aggregator_sequential",
                "model": "reach-policy:missing",
            },
            args={"model_tag": "reach-policy:doesnotexist"},
        )
        left.append(str(broken.tag))  # gated (label) on a model that does not exist: never an incumbent to leave
        with pytest.raises(RedeployError, match="did not become ready"):
            reach_redeploy(str(broken.tag), ready_timeout_s=45)
        still = current_endpoint()
        assert still == switched
    finally:
        undeploy()
        remove_bentos(left, models_before)


@pytest.mark.parametrize(
    "name", sorted(p.name for p in (Path(__file__).resolve().parents[2] / "data" / "pipeline").glob("*.json"))
)
def test_every_shipped_pipeline_parameter_file_is_valid(name: str) -> None:
    from flows.evaluation.gate import load_gate_rules
    from flows.pipeline import _config_path
    from flows.training.config import load_train_config

    data = Path(__file__).resolve().parents[2] / "data"
    params = PipelineParams.model_validate_json((data / "pipeline" / name).read_text())
    load_train_config(_config_path(params.train_config, "train"))
    load_gate_rules(_config_path(params.gate_rules, "gate"))


@pytest.mark.e2e
def test_the_quickstart_pipeline_adopts_the_shipped_general_policy_without_training(
    prefect_harness: None, tmp_path: Path
) -> None:
    from flows.pipeline import reach_pipeline

    quickstart = Path(__file__).resolve().parents[2] / "data" / "pipeline" / "quickstart.json"
    params = PipelineParams.model_validate_json(quickstart.read_text())
    result = reach_pipeline(
        params.model_copy(update={"run_dir": str(tmp_path / "run"), "eval_episodes": 1, "package": False})
    )
    assert result["training"]["timesteps"] == 0
    assert result["training"]["adopted_from"].endswith("data/policies/general-v4")
    assert result["passed"], result["gate"]


@pytest.mark.e2e
def test_an_incumbent_evaluated_on_other_start_states_is_evaluated_again_on_the_run_s(
    passed_run: dict[str, Any], tmp_path: Path
) -> None:
    """The gate compares candidate and incumbent only like for like: the passed run's bento was evaluated on
    seeds 0-4; this run evaluates on seeds 5-9, so the pipeline plays the incumbent on those states too
    (without that, the permissive gate's incumbent check fails as not comparable)."""
    import bentoml

    from flows.evaluation.gate import not_comparable
    from flows.evaluation.report import EvaluationReport
    from flows.pipeline import reach_pipeline

    incumbent = bentoml.models.get(bentoml.bentos.get(passed_run["result"]["bento"]).info.labels["model"])
    stored = EvaluationReport.model_validate(incumbent.info.metadata["evaluation"])
    params = _params(tmp_path, PERMISSIVE_GATE, "other-seeds").model_copy(
        update={"eval_seeds": [5, 6, 7, 8, 9], "policy_from": str(GENERAL), "package": False}
    )
    result = reach_pipeline(params)
    candidate = EvaluationReport.model_validate_json(
        (Path(result["run_dir"]) / "evaluation" / "report.json").read_text()
    )
    assert not_comparable(candidate, stored)  # the stored report alone could not judge this candidate
    assert result["passed"], result["gate"]
