"""The Great Expectations checks on profile tables: each rule passes good data and names bad rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.profiles.checks import CheckOptions, ValidationOutcome
from flows.profiles.ingest import ProfileInputs, validate_profiles
from tests.profiles.conftest import EXAMPLE_CSVS, EXAMPLES, FIXTURES, SCENARIO, workload

pytestmark = pytest.mark.slow  # the first test of a session imports great_expectations (~6 s)

SEQUENTIAL = [workload("aggregator_sequential")]


def _validate(csvs: tuple[Path, ...], options: CheckOptions | None = None) -> ValidationOutcome:
    return validate_profiles(ProfileInputs(csv=csvs), SCENARIO, SEQUENTIAL, options, reports_dir=None).outcome


def _failed(outcome: ValidationOutcome) -> dict[str, tuple[str, ...]]:
    return {c.check: c.offending for c in outcome.failures}


def test_shipped_csv_examples_pass_every_check() -> None:
    outcome = _validate(EXAMPLE_CSVS)
    assert outcome.success, _failed(outcome)
    assert len(outcome.summary) == 12


def test_no_check_is_one_that_cannot_fail() -> None:
    # the readers refuse files without the required columns, and the table always has them, so a GX column
    # check would always pass and only pad the report
    outcome = _validate(EXAMPLE_CSVS)
    assert "expect_table_columns_to_match_set" not in {c.expectation for c in outcome.checks}
    assert not any("columns" in c.check for c in outcome.checks)


def test_shipped_jaeger_example_passes_with_its_node_table() -> None:
    inputs = ProfileInputs(jaeger=(EXAMPLES / "jaeger_traces.json",), node_types=EXAMPLES / "node_types.json")
    run = validate_profiles(inputs, SCENARIO, SEQUENTIAL, reports_dir=None)
    assert run.outcome.success, _failed(run.outcome)
    assert run.report["spans"]["spans_used"] == 252


def test_negative_and_absurd_times_fail_with_file_line_and_value() -> None:
    failed = _failed(_validate((*EXAMPLE_CSVS, FIXTURES / "negative_and_absurd.csv")))
    rows = failed["execution times are > 0 ms and <= 60000 ms"]
    assert any("negative_and_absurd.csv:2" in r and "execution_time_ms=-5.0" in r for r in rows)
    assert any("negative_and_absurd.csv:3" in r and "execution_time_ms=1000000000.0" in r for r in rows)


def test_missing_cpu_type_fails_coverage_and_names_each_cell() -> None:
    failed = _failed(_validate(EXAMPLE_CSVS[:2]))
    cells = failed["every (service, CPU type) cell of the workload is measured"]
    assert "aggregator@cpu_type=2: no measurements" in cells
    assert len(cells) == 4


def test_keep_current_lets_unmeasured_cells_keep_the_workload_value() -> None:
    outcome = _validate(EXAMPLE_CSVS[:2], CheckOptions(keep_current=True))
    assert outcome.success, _failed(outcome)
    assert ("aggregator", 2) in outcome.kept_cells and len(outcome.kept_cells) == 4


def test_unknown_service_fails_and_is_named() -> None:
    failed = _failed(_validate((*EXAMPLE_CSVS, FIXTURES / "unknown_service.csv")))
    (row,) = failed["no unknown services (every service is called by the workload)"]
    assert "service='payment'" in row


def test_too_few_samples_per_cell_fails_with_the_count() -> None:
    failed = _failed(_validate(EXAMPLE_CSVS, CheckOptions(min_samples=13)))
    cells = failed["at least 13 samples per measured cell"]
    assert "aggregator@cpu_type=0: n=12 (need >= 13)" in cells
    assert not any("cpu_type=2" in c for c in cells)  # 3 aggregate rows x count 5 = 15 samples


def test_empty_cells_fail_the_not_null_checks() -> None:
    failed = _failed(_validate((*EXAMPLE_CSVS, FIXTURES / "empty_cells.csv")))
    assert any("empty_cells.csv:3" in r for r in failed["column 'cpu_type' has no empty cells"])
    assert any("empty_cells.csv:4" in r for r in failed["column 'service' has no empty cells"])


def test_a_slower_cpu_type_measuring_much_faster_fails_the_heterogeneity_check() -> None:
    csvs = (EXAMPLE_CSVS[0], EXAMPLE_CSVS[1], FIXTURES / "edge2_aggregator_too_fast.csv")
    outcome = _validate(csvs, CheckOptions(keep_current=True))
    failed = _failed(outcome)
    rows = failed["heterogeneity: a slower CPU type is not more than 25% faster"]
    assert any(r.startswith("aggregator: cpu_type 2 measures") for r in rows)
    assert all(c.fix for c in outcome.failures)


def test_heterogeneity_tolerance_and_speed_order_are_configurable() -> None:
    csvs = (EXAMPLE_CSVS[0], EXAMPLE_CSVS[1], FIXTURES / "edge2_aggregator_too_fast.csv")
    assert _validate(csvs, CheckOptions(keep_current=True, heterogeneity_tolerance=0.95)).success
    assert _validate(
        csvs, CheckOptions(keep_current=True, cpu_speed_order=(2, 1, 0), heterogeneity_tolerance=0.5)
    ).success


def test_a_failed_validation_report_is_saved_as_json_and_markdown(tmp_path: Path) -> None:
    run = validate_profiles(ProfileInputs(csv=EXAMPLE_CSVS[:1]), SCENARIO, SEQUENTIAL, reports_dir=tmp_path / "reports")
    assert not run.outcome.success
    json_path, md_path = run.report_paths
    assert json_path.suffix == ".json" and md_path.suffix == ".md"
    assert "# Profile validation FAILED" in md_path.read_text()
    assert "Fix: measure the missing cells" in md_path.read_text()
