"""What the pipeline refuses before any work, how ``reach pipeline run`` reports it, and what packaging retries.

- planning (``plan_k`` > 0) of a policy that is not general (observation version 4) is refused by
  :func:`flows.pipeline.check_run`, naming the field and the fix, before the run folder or training;
- ``reach pipeline run`` answers bad parameters with exit 2 and the message, without starting the flow;
- the packaging task retries I/O errors, never a refusal (``ValueError``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest

from flows.pipeline import PipelineParams
from tests.conftest import scenario_dir, workload_file

SCENARIO, WORKLOAD = scenario_dir("7-21"), workload_file("aggregator_sequential")


def test_planning_with_a_config_that_trains_no_general_policy_is_refused_before_the_run(tmp_path: Path) -> None:
    from flows.pipeline import check_run, reach_pipeline

    params = PipelineParams(train_config="default", plan_k=2, run_dir=str(tmp_path / "run"))
    with pytest.raises(ValueError, match=r"plan_k=2 .*train_config default trains observation version 3.*plan_k to 0"):
        check_run(params, SCENARIO, WORKLOAD)
    with pytest.raises(ValueError, match="plan_k=2"):
        reach_pipeline.fn(params)
    assert not (tmp_path / "run").exists()
    check_run(params.model_copy(update={"train_config": "finetune"}), SCENARIO, WORKLOAD)  # general: accepted
    check_run(params.model_copy(update={"plan_k": 0}), SCENARIO, WORKLOAD)  # the raw policy: any config


def test_planning_with_an_adopted_policy_that_is_not_general_is_refused(tmp_path: Path) -> None:
    from bento.artefact import describe
    from ceenv.layout import layout_from_scenario
    from ceenv.scenario import load_scenario
    from flows.pipeline import check_run

    artefact = tmp_path / "policy"
    artefact.mkdir()
    metadata = describe(
        layout_from_scenario(load_scenario(SCENARIO)), SCENARIO, WORKLOAD, step_cost_ms=1.0, max_steps=100
    )
    (artefact / "metadata.json").write_text(metadata.model_dump_json())
    params = PipelineParams(policy_from=str(artefact), plan_k=4)
    with pytest.raises(ValueError, match=rf"policy_from {artefact} is observation version 3"):
        check_run(params, SCENARIO, WORKLOAD)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"scenario": "nope"}, "nope"),
        ({"train_config": "no-such-config"}, "no-such-config"),
        ({"train_config": "default", "plan_k": 2}, "plan_k=2"),
    ],
)
def test_reach_pipeline_run_answers_bad_parameters_with_exit_2_before_the_flow(
    params: dict[str, Any], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from flows import pipeline
    from flows.cli import app

    def flow(_: PipelineParams) -> dict[str, Any]:
        raise AssertionError("the flow started with bad parameters")

    monkeypatch.setattr(pipeline, "reach_pipeline", flow)
    file = tmp_path / "params.json"
    file.write_text(json.dumps(params))
    result = CliRunner().invoke(app, ["pipeline", "run", "--params", str(file)])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_the_packaging_retry_condition_retries_io_errors_only() -> None:
    from prefect.states import Failed

    from flows.pipeline import package_bento, retry_on_io_error

    assert package_bento.retry_condition_fn is retry_on_io_error
    assert retry_on_io_error(package_bento, cast(Any, None), Failed(data=OSError("disk full")))
    assert not retry_on_io_error(package_bento, cast(Any, None), Failed(data=ValueError("gate judged the raw policy")))


def test_the_packaging_task_does_not_retry_a_refusal_but_retries_an_io_error(
    prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect import flow

    from flows.evaluation.gate import Verdict
    from flows.pipeline import package_bento
    from flows.release import packaging

    calls: list[str] = []
    failure: list[BaseException] = []

    def package(*args: Any) -> str:
        calls.append("package")
        raise failure[0]

    monkeypatch.setattr(packaging, "package", package)
    task = package_bento.with_options(retry_delay_seconds=0)

    @flow
    def packages() -> str:
        return task("artefact", Verdict(passed=True, checks=[]), {})

    failure.append(ValueError("refused"))
    with pytest.raises(ValueError, match="refused"):
        packages()
    assert calls == ["package"]
    calls.clear()
    failure[0] = OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        packages()
    assert calls == ["package"] * 3
