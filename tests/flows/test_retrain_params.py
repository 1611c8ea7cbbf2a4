"""The scheduled retrain retrains and redeploys the cluster being served, never another one unless asked.

The flow's body runs as ``reach_retrain.fn`` (no Prefect server) with the pipeline and the redeploy
replaced by recorders: what is tested is which parameters the retrain gives the pipeline (the served
cluster's recorded files and the planning its bento serves with; the defaults when nothing serves) and
which files it redeploys (the ones the pipeline trained on, e.g. a profiled workload). The serving
deployment is an endpoint file pointing at this live test process; its bento's build arguments come from
a stand-in of the BentoML store.
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

from bento.planning_settings import PlanningSettings
from flows.pipeline import PipelineParams
from tests.conftest import scenario_dir, workload_file

PLANNED = "reach-policy-service:planned"
NEW = "reach-policy-service:new"


@pytest.fixture
def no_endpoint(reach_home: Path) -> Any:
    from flows.release import serving

    serving.endpoint_file().unlink(missing_ok=True)
    yield
    serving.endpoint_file().unlink(missing_ok=True)


@pytest.fixture
def served(no_endpoint: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """13-29 / chain served by a planning bento, from files outside data/ (as `reach demo` serves them)."""
    import bentoml

    from flows.release import serving
    from flows.release.selection import cluster_of

    cluster_dir = shutil.copytree(scenario_dir("13-29"), tmp_path / "demo" / "13-29")
    workload = tmp_path / "demo" / "dataset" / "chain_call_patterns.json"
    workload.parent.mkdir(parents=True)
    shutil.copyfile(workload_file("chain"), workload)
    fields: dict[str, Any] = serving.cluster_fields(cluster_of(str(cluster_dir), str(workload)))
    serving.switch(serving.Endpoint("http://127.0.0.1:1", PLANNED, "blue", os.getpid(), 0.0, **fields))
    built = {"model_tag": "reach-policy:x", **PlanningSettings.chosen().arguments()}
    stores = {PLANNED: SimpleNamespace(info=SimpleNamespace(args=built))}

    def get(tag: str) -> Any:
        if tag not in stores:
            raise bentoml.exceptions.NotFound(f"no bento {tag}")
        return stores[tag]

    monkeypatch.setattr(importlib.import_module("bentoml.bentos"), "get", get)  # not bentoml's lazy loader of it
    return SimpleNamespace(scenario_dir=cluster_dir, workload_file=workload, stores=stores)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """The pipeline and redeploy the retrain calls, as recorders; the pipeline passes and re-profiles the workload
    (its result names a new workload file of the same workload, as ingestion writes it)."""
    from flows.local.paths import resolve_scenario, resolve_workload
    from flows.release import redeploy

    seen: dict[str, Any] = {"redeploy": None}

    def pipeline(params: PipelineParams) -> dict[str, Any]:
        seen["pipeline"] = params
        scenario = resolve_scenario(params.scenario)
        source = resolve_workload(params.workload, scenario)
        ingested = tmp_path / "run" / "dataset" / source.name
        ingested.parent.mkdir(parents=True, exist_ok=True)
        ingested.write_text(json.dumps(json.loads(source.read_text()), indent=2))  # other bytes: a re-profiled file
        return {"passed": True, "bento": NEW, "scenario_dir": str(scenario), "workload_file": str(ingested)}

    def switch(bento: str, scenario: str, workload: str, **options: Any) -> dict[str, Any]:
        seen["redeploy"] = {"bento": bento, "scenario": scenario, "workload": workload, **options}
        return {"bento": bento}

    monkeypatch.setattr(redeploy, "reach_pipeline", pipeline)
    monkeypatch.setattr(redeploy, "reach_redeploy", switch)
    seen["run_pipeline"] = pipeline
    return seen


def test_a_scheduled_retrain_trains_the_served_cluster_with_its_planning(
    served: SimpleNamespace, calls: dict[str, Any]
) -> None:
    """Not the pipeline's 7-21 defaults: the files the deployment recorded, and plan_k=4 as its bento serves."""
    from flows.release.redeploy import reach_retrain

    reach_retrain.fn()
    params: PipelineParams = calls["pipeline"]
    assert (params.scenario, params.workload) == (
        str(served.scenario_dir.resolve()),
        str(served.workload_file.resolve()),
    )
    assert params.planning() == PlanningSettings.chosen().to_dict()
    redeployed = calls["redeploy"]
    assert redeployed["bento"] == NEW and Path(redeployed["scenario"]) == served.scenario_dir.resolve()


def test_the_retrain_redeploys_the_workload_the_pipeline_ingested_not_the_unprofiled_one(
    served: SimpleNamespace, calls: dict[str, Any], tmp_path: Path
) -> None:
    from flows.release.redeploy import reach_retrain

    reach_retrain.fn(PipelineParams(profiles_jaeger=["traces.json"]))
    assert calls["redeploy"]["workload"] == str(tmp_path / "run" / "dataset" / "chain_call_patterns.json")
    assert calls["redeploy"]["scenario"] == str(served.scenario_dir.resolve())


def test_with_nothing_serving_the_retrain_uses_the_pipeline_defaults(no_endpoint: None, calls: dict[str, Any]) -> None:
    from flows.release.redeploy import reach_retrain

    reach_retrain.fn()
    params: PipelineParams = calls["pipeline"]
    assert (params.scenario, params.workload, params.plan_k) == ("7-21", "aggregator_sequential", 0)
    assert Path(calls["redeploy"]["scenario"]).name == "7-21"
    assert Path(calls["redeploy"]["workload"]).name == "aggregator_sequential_call_patterns.json"


def test_a_retrain_naming_another_cluster_is_refused_before_any_work_unless_asked_to_switch(
    served: SimpleNamespace, calls: dict[str, Any]
) -> None:
    from flows.release.redeploy import reach_retrain

    with pytest.raises(ValueError, match=r"serves 13-29 / chain, not 7-21 / aggregator_sequential.*switch_cluster"):
        reach_retrain.fn(PipelineParams(scenario="7-21"))
    assert "pipeline" not in calls and calls.get("redeploy") is None
    reach_retrain.fn(PipelineParams(scenario="7-21"), switch_cluster=True)
    assert Path(calls["redeploy"]["scenario"]).name == "7-21"


def test_explicit_planning_is_kept_and_the_rest_still_comes_from_what_serves(
    served: SimpleNamespace, calls: dict[str, Any]
) -> None:
    from flows.release.redeploy import reach_retrain

    reach_retrain.fn(PipelineParams(plan_k=0, eval_episodes=2))
    params: PipelineParams = calls["pipeline"]
    assert (params.plan_k, params.eval_episodes) == (0, 2)
    assert params.workload == str(served.workload_file.resolve())


def test_a_serving_bento_missing_from_the_store_stops_the_retrain_naming_plan_k(
    served: SimpleNamespace, calls: dict[str, Any]
) -> None:
    from flows.release.redeploy import reach_retrain

    served.stores.clear()
    with pytest.raises(ValueError, match=r"not in the BentoML store.*params.plan_k"):
        reach_retrain.fn()
    assert "pipeline" not in calls


def test_an_endpoint_switched_to_another_cluster_during_the_run_is_not_switched_back(
    served: SimpleNamespace, calls: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.release import redeploy, serving
    from flows.release.selection import cluster_of

    trained = calls["run_pipeline"]

    def pipeline_then_another_deploy(params: PipelineParams) -> dict[str, Any]:
        result: dict[str, Any] = trained(params)
        other: dict[str, Any] = serving.cluster_fields(cluster_of("7-21", "aggregator_sequential"))
        serving.switch(serving.Endpoint("http://127.0.0.1:2", "other:x", "green", os.getpid(), 1.0, **other))
        return result

    monkeypatch.setattr(redeploy, "reach_pipeline", pipeline_then_another_deploy)
    result = redeploy.reach_retrain.fn()
    assert result["redeploy"] is None and calls["redeploy"] is None
    assert "not redeployed" in result["reason"] and "serves 7-21 / aggregator_sequential" in result["reason"]


def test_the_retrain_redeploys_with_the_settings_reach_deploy_reads(
    served: SimpleNamespace, calls: dict[str, Any]
) -> None:
    from flows.release.redeploy import reach_retrain

    reach_retrain.fn()
    assert calls["redeploy"]["from_settings"] is True
