"""Ingestion writes a complete, versioned dataset only after validation passes, and never overwrites."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ceenv.scenario import Scenario
from ceenv.workload import check_workload, load_workload
from flows.profiles.checks import CheckOptions
from flows.profiles.errors import ProfileError, ProfileValidationError
from flows.profiles.ingest import ProfileInputs, ingest_profiles
from tests.profiles.conftest import EXAMPLE_CSVS, EXAMPLES, FIXTURES, SCENARIO, workload

pytestmark = pytest.mark.slow  # imports great_expectations (~6 s once per session)

WORKLOADS = [workload("aggregator_sequential"), workload("chain")]
CSV_INPUTS = ProfileInputs(csv=EXAMPLE_CSVS)


def test_dataset_holds_updated_call_patterns_summary_report_and_manifest(tmp_path: Path, scenario: Scenario) -> None:
    out, run = ingest_profiles(CSV_INPUTS, SCENARIO, WORKLOADS, tmp_path / "ds", reports_dir=tmp_path / "reports")
    assert sorted(p.name for p in out.iterdir()) == [
        "aggregator_sequential_call_patterns.json",
        "chain_call_patterns.json",
        "manifest.json",
        "summary.csv",
        "summary.md",
        "validation.json",
        "validation.md",
    ]
    updated = load_workload(out / "chain_call_patterns.json", scenario)
    check_workload(updated, scenario, "chain")
    means = {(r["service"], r["cpu_type"]): r["mean_ms"] for r in run.report["summary"]}
    for call in updated.endpoints[0].calls():
        assert call.execution_ms[2] == pytest.approx(means[(call.service, 2)], rel=1e-5)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["version"] == manifest["content_sha256"][:12]
    assert {i["path"] for i in manifest["inputs"]} == {str(p) for p in EXAMPLE_CSVS}
    assert (out / "summary.csv").read_text().startswith("service,cpu_type,n,mean_ms,p50_ms,p95_ms\n")
    assert json.loads((out / "validation.json").read_text())["success"] is True
    assert not (tmp_path / "reports").exists()


def test_inputs_are_never_modified(tmp_path: Path) -> None:
    before = {p: p.read_bytes() for p in (*EXAMPLE_CSVS, *WORKLOADS)}
    ingest_profiles(CSV_INPUTS, SCENARIO, WORKLOADS, tmp_path / "ds")
    assert {p: p.read_bytes() for p in before} == before


def test_same_inputs_give_the_same_version_and_an_existing_dataset_is_never_overwritten(tmp_path: Path) -> None:
    out, _ = ingest_profiles(CSV_INPUTS, SCENARIO, WORKLOADS, tmp_path / "ds")
    manifest = (out / "manifest.json").read_text()
    again, _ = ingest_profiles(CSV_INPUTS, SCENARIO, WORKLOADS, tmp_path / "ds", options=CheckOptions(min_samples=2))
    assert again == out and (out / "manifest.json").read_text() == manifest
    with pytest.raises(ProfileError, match="never overwritten"):
        ingest_profiles(CSV_INPUTS, SCENARIO, WORKLOADS, tmp_path / "ds", percentiles=True)
    other = tmp_path / "not-a-dataset"
    other.mkdir()
    with pytest.raises(ProfileError, match="not a profile dataset"):
        ingest_profiles(CSV_INPUTS, SCENARIO, WORKLOADS, other)


@pytest.mark.parametrize(
    "csvs",
    [
        (*EXAMPLE_CSVS, FIXTURES / "negative_and_absurd.csv"),
        EXAMPLE_CSVS[:2],
        (*EXAMPLE_CSVS, FIXTURES / "unknown_service.csv"),
    ],
    ids=["negative-and-absurd-times", "cpu-type-missing", "unknown-service"],
)
def test_failed_validation_writes_only_the_report_and_no_dataset(tmp_path: Path, csvs: tuple[Path, ...]) -> None:
    out = tmp_path / "data" / "ds"
    with pytest.raises(ProfileValidationError) as err:
        ingest_profiles(ProfileInputs(csv=csvs), SCENARIO, WORKLOADS, out, reports_dir=tmp_path / "reports")
    assert not out.exists() and not out.parent.exists()
    assert "profile validation failed" in str(err.value) and "fix:" in str(err.value)
    assert sorted(p.suffix for p in err.value.report_paths) == [".json", ".md"]
    assert all(p.is_file() for p in err.value.report_paths)


@pytest.mark.parametrize(
    "inputs",
    [
        ProfileInputs(csv=(FIXTURES / "empty.csv",)),
        ProfileInputs(csv=(FIXTURES / "wrong_columns.csv",)),
        ProfileInputs(jaeger=(FIXTURES / "not_json.json",)),
        ProfileInputs(jaeger=(FIXTURES / "jaeger_cycle.json",), node_types=FIXTURES / "node_types.json"),
        ProfileInputs(),
    ],
    ids=["empty-csv", "wrong-columns", "non-json", "trace-cycle", "no-input"],
)
def test_unreadable_inputs_are_clear_errors_and_write_nothing(tmp_path: Path, inputs: ProfileInputs) -> None:
    with pytest.raises(ProfileError):
        ingest_profiles(inputs, SCENARIO, WORKLOADS, tmp_path / "ds", reports_dir=tmp_path / "reports")
    assert list(tmp_path.iterdir()) == []


def test_trace_with_orphans_reports_the_drops_and_fails_for_missing_cells(tmp_path: Path) -> None:
    inputs = ProfileInputs(jaeger=(FIXTURES / "jaeger_orphans.json",), node_types=FIXTURES / "node_types.json")
    with pytest.raises(ProfileValidationError) as err:
        ingest_profiles(inputs, SCENARIO, WORKLOADS, tmp_path / "ds", reports_dir=tmp_path / "reports")
    report = json.loads(next(p for p in err.value.report_paths if p.suffix == ".json").read_text())
    assert report["spans"]["dropped_by_reason"]["orphan (parent span missing: sampled or truncated trace)"] == 2
    assert not (tmp_path / "ds").exists()


def test_jaeger_ingest_with_percentiles_and_keep_current(tmp_path: Path, scenario: Scenario) -> None:
    inputs = ProfileInputs(jaeger=(EXAMPLES / "jaeger_traces.json",), node_types=EXAMPLES / "node_types.json")
    out, _ = ingest_profiles(inputs, SCENARIO, [workload("aggregator_parallel")], tmp_path / "ds", percentiles=True)
    doc = json.loads((out / "aggregator_parallel_call_patterns.json").read_text())
    aggregator = doc["aggregator_parallel"]["call-path"][0]["aggregator"]
    assert set(aggregator["execution-time-p95"]) == {"0", "1", "2"}
    load_workload(out / "aggregator_parallel_call_patterns.json", scenario)


def test_no_temporary_directory_is_left_behind(tmp_path: Path) -> None:
    ingest_profiles(CSV_INPUTS, SCENARIO, WORKLOADS, tmp_path / "ds")
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


def test_the_pipeline_validation_artifact_lists_each_check_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.pipeline as pipeline

    published: list[str] = []
    monkeypatch.setattr(pipeline, "create_markdown_artifact", lambda markdown, **_: published.append(markdown))
    params = pipeline.PipelineParams(profiles_csv=[str(p) for p in EXAMPLE_CSVS])
    pipeline.ingest_profiles.fn(params, SCENARIO, WORKLOADS[0], tmp_path)
    (markdown,) = published
    lines = markdown.splitlines()[2:]
    assert "- PASS at least one measurement" in lines
    assert "- PASS every (service, CPU type) cell of the workload is measured" in lines
    assert all(line.startswith("- PASS ") and "{" not in line for line in lines)
