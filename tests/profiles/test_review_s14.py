"""Review findings on profile ingestion: unknown-process spans still count as calls, non-finite span
times, CSV line numbers and plain numbers, node tables with extra fields, muBench repeats, and a
dataset ``--out`` that appears while it is written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import flows.profiles.dataset as dataset
from ceenv.mubench import parse_workmodel, workmodel_to_workload
from ceenv.validation import ScenarioError
from ceenv.workload import Call, Endpoint, Workload, workload_to_json
from flows.cli import app
from flows.profiles.csv_profiles import read_csv_profile
from flows.profiles.errors import ProfileError
from flows.profiles.hosts import CpuTypeResolver, load_node_types
from flows.profiles.jaeger import UNKNOWN_PROCESS, JaegerOptions, read_jaeger_profiles

HOST = [{"key": "hostname", "type": "string", "value": "cloud-1"}]  # cpu_type 0 in the test resolver


def _span(span_id: str, process: str, start_ms: float, duration_ms: float, parent: str | None = None) -> dict[str, Any]:
    refs = [{"refType": "CHILD_OF", "traceID": "t1", "spanID": parent}] if parent else []
    return {
        "traceID": "t1",
        "spanID": span_id,
        "operationName": "op",
        "references": refs,
        "startTime": int(start_ms * 1000),
        "duration": int(duration_ms * 1000),
        "processID": process,
        "tags": [],
    }


def _trace_file(tmp_path: Path, spans: list[dict[str, Any]], processes: dict[str, str]) -> Path:
    doc = {
        "data": [
            {
                "traceID": "t1",
                "spans": spans,
                "processes": {p: {"serviceName": name, "tags": HOST} for p, name in processes.items()},
            }
        ]
    }
    path = tmp_path / "traces.json"
    path.write_text(json.dumps(doc))
    return path


# Finding 5: a span whose processID is missing from `processes` is still its parent's outgoing call.


def test_a_child_on_an_unknown_process_is_subtracted_from_its_callers_own_time(
    tmp_path: Path, resolver: CpuTypeResolver
) -> None:
    path = _trace_file(
        tmp_path,
        [_span("a1", "p1", 0, 100), _span("x1", "p9", 5, 90, parent="a1")],
        {"p1": "aggregator"},
    )
    table, report = read_jaeger_profiles([path], resolver)
    assert list(table["service"]) == ["aggregator"]
    assert list(table["execution_time_ms"]) == [10.0]  # 100 ms minus the 90 ms call, not 100 ms
    assert report.dropped == {UNKNOWN_PROCESS: 1}  # the unknown span's own time goes to no service
    assert report.spans_used == 1


def test_a_span_below_an_unknown_process_span_is_measured_not_an_orphan(
    tmp_path: Path, resolver: CpuTypeResolver
) -> None:
    # db's entry span d1 is a child of x1 on the unknown process p9; its own span d2 is in-process work
    path = _trace_file(
        tmp_path,
        [_span("x1", "p9", 0, 100), _span("d1", "p2", 10, 40, parent="x1"), _span("d2", "p2", 20, 10, parent="d1")],
        {"p2": "db"},
    )
    table, report = read_jaeger_profiles([path], resolver)
    assert list(table["service"]) == ["db"] and list(table["execution_time_ms"]) == [40.0]
    assert report.dropped == {UNKNOWN_PROCESS: 1}


# Finding 9: json.loads accepts NaN and Infinity; a span time must be finite.


@pytest.mark.parametrize(("key", "literal"), [("duration", "NaN"), ("duration", "Infinity"), ("startTime", "1e400")])
def test_non_finite_span_times_are_an_error_with_the_json_path(
    tmp_path: Path, resolver: CpuTypeResolver, key: str, literal: str
) -> None:
    path = _trace_file(tmp_path, [_span("a1", "p1", 0, 100)], {"p1": "aggregator"})
    doc = json.loads(path.read_text())
    doc["data"][0]["spans"][0][key] = "PLACEHOLDER"
    path.write_text(json.dumps(doc).replace('"PLACEHOLDER"', literal))
    with pytest.raises(ProfileError) as err:
        read_jaeger_profiles([path], resolver, JaegerOptions())
    assert f"traces.json: $.data[0].spans[0].{key}: expected a finite number of microseconds >= 0" in str(err.value)


# Finding 6: a --node-types CSV row with an extra field.


def test_a_node_table_row_with_an_extra_field_names_file_and_line(tmp_path: Path) -> None:
    table = tmp_path / "nodes.csv"
    table.write_text("node,cpu_type\nhost-b,0\n\nhost-a,1,extra\n")
    with pytest.raises(ProfileError, match=r"nodes.csv:4: 3 fields but the header names 2 columns"):
        load_node_types(table)


def test_node_table_errors_count_blank_lines(tmp_path: Path) -> None:
    table = tmp_path / "nodes.csv"
    table.write_text("node,cpu_type\n\n\nhost-a,fast\n")
    with pytest.raises(ProfileError, match=r"nodes.csv:4: cpu_type: CPU type must be an integer"):
        load_node_types(table)


# Finding 7: CSV line numbers are the file's lines, blank lines included.


def test_a_bad_row_after_blank_lines_is_reported_on_its_real_line(tmp_path: Path, resolver: CpuTypeResolver) -> None:
    file = tmp_path / "p.csv"
    file.write_text("service,cpu_type,execution_time_ms\naggregator,0,5\n\n\n   \ndb,0,2\naggregator,0,fast\n")
    with pytest.raises(ProfileError, match=r"p.csv:7: column 'execution_time_ms': not a number: 'fast'"):
        read_csv_profile(file, resolver)


def test_row_sources_carry_real_line_numbers(tmp_path: Path, resolver: CpuTypeResolver) -> None:
    file = tmp_path / "p.csv"
    file.write_text('\nservice,cpu_type,execution_time_ms\n\n"aggre\ngator",0,5\n\ndb,0,2\n')
    table = read_csv_profile(file, resolver)
    assert [s.rsplit(":", 1)[1] for s in table["source"]] == ["4", "7"]  # a quoted value's record: its first line


def test_broken_quoting_is_a_clear_error_naming_the_line(tmp_path: Path, resolver: CpuTypeResolver) -> None:
    file = tmp_path / "p.csv"
    file.write_text('service,cpu_type,execution_time_ms\n\naggregator,0,"5"x\n')
    with pytest.raises(ProfileError, match=r"p.csv:3: not a readable CSV record"):
        read_csv_profile(file, resolver)


def test_a_used_column_named_twice_is_refused(tmp_path: Path, resolver: CpuTypeResolver) -> None:
    file = tmp_path / "p.csv"
    file.write_text("service,cpu_type,execution_time_ms,Service\naggregator,0,5,db\n")
    with pytest.raises(ProfileError, match=r"names the column\(s\) \['service'\] more than once"):
        read_csv_profile(file, resolver)


# Finding 11: only plain numbers.


@pytest.mark.parametrize(
    ("row", "column", "text"),
    [
        ("aggregator,0,1_000", "execution_time_ms", "1_000"),
        ("aggregator,1_0,5", "cpu_type", "1_0"),
        ("aggregator,0,\u0665", "execution_time_ms", "\u0665"),
    ],
)
def test_numbers_with_separators_or_non_ascii_digits_are_refused(
    tmp_path: Path, resolver: CpuTypeResolver, row: str, column: str, text: str
) -> None:
    file = tmp_path / "p.csv"
    file.write_text(f"service,cpu_type,execution_time_ms\n{row}\n", encoding="utf-8")
    with pytest.raises(ProfileError) as err:
        read_csv_profile(file, resolver)
    assert f"p.csv:2: column {column!r}: not a plain number: {text!r}" in str(err.value)


def test_plain_numbers_are_still_accepted(tmp_path: Path, resolver: CpuTypeResolver) -> None:
    file = tmp_path / "p.csv"
    file.write_text("service,cpu_type,execution_time_ms,count\naggregator,0, 12.5 ,2\ndb,+1,.5e1,1.\n")
    table = read_csv_profile(file, resolver)
    assert list(table["execution_time_ms"]) == [12.5, 5.0]
    assert list(table["cpu_type"]) == [0, 1]


def test_node_table_cpu_types_with_separators_are_refused(tmp_path: Path) -> None:
    table = tmp_path / "nodes.json"
    table.write_text('{"host-a": "1_0"}')
    with pytest.raises(ProfileError, match=r"CPU type must be an integer >= 0, got '1_0'"):
        load_node_types(table)


# Finding 10: a muBench callee listed twice in one group.

TIMES_MS = {"s0": {0: 1.0}, "s1": {0: 2.0}, "s2": {0: 3.0}}


def test_a_callee_listed_twice_in_a_group_is_refused_with_its_json_path() -> None:
    doc = {"s0": {"external_services": [{"services": ["s1", "s1"], "seq_len": 2}]}, "s1": {}}
    with pytest.raises(ScenarioError) as err:
        parse_workmodel(doc, "wm.json")
    message = str(err.value)
    assert message.startswith("wm.json: $.s0.external_services[0].services[1]: service listed twice in one group")
    assert "(got 's1')" in message


def test_a_repeat_beyond_seq_len_is_not_called_and_is_accepted() -> None:
    doc = {"s0": {"external_services": [{"services": ["s1", "s2", "s1"], "seq_len": 2}]}, "s1": {}, "s2": {}}
    workload = workmodel_to_workload(parse_workmodel(doc, "wm.json"), "wm.json", TIMES_MS)
    assert [c.service for c in workload.endpoints[0].calls()] == ["s0", "s1", "s2"]


def test_a_double_underscore_name_is_an_unknown_service_with_a_hint() -> None:
    doc = {"s0": {"external_services": [{"services": ["s1__2"]}]}, "s1": {}}
    with pytest.raises(ScenarioError, match=r'"__" escape of trace files; a work model names the service itself, "s1"'):
        parse_workmodel(doc, "wm.json")


def test_writing_a_group_that_calls_a_service_twice_is_refused() -> None:
    s1 = Call("s1", 1.0, {0: 1.0}, (), "$.e.call-path[0].s0.call-path[0].s1")
    root = Call("s0", 1.0, {0: 1.0}, ((s1, s1),), "$.e.call-path[0].s0")
    workload = Workload("w", (Endpoint("e", "client", 1.0, None, ((root,),)),))
    with pytest.raises(ScenarioError, match=r"service called twice in one group"):
        workload_to_json(workload)


def test_import_mubench_with_a_repeated_callee_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    workmodel, times, out = tmp_path / "wm.json", tmp_path / "times.json", tmp_path / "x_call_patterns.json"
    workmodel.write_text(json.dumps({"s0": {"external_services": [{"services": ["s1", "s1"]}]}, "s1": {}}))
    times.write_text(json.dumps({"s0": {"0": "1ms"}, "s1": {"0": "2ms"}}))
    result = CliRunner().invoke(
        app, ["sim", "import-mubench", "--workmodel", str(workmodel), "--times", str(times), "--out", str(out)]
    )
    assert result.exit_code == 2
    assert "listed twice" in " ".join(result.output.split())
    assert not out.exists()


# Finding 12: an empty --out directory that appears while the dataset is written is not replaced.


def _someone_creates(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def report_markdown(report: Any) -> str:  # runs after write_dataset's existence check
        out.mkdir()
        return "report\n"

    monkeypatch.setattr(dataset, "report_markdown", report_markdown)


@pytest.mark.parametrize("renameat2", [True, False], ids=["renameat2", "mkdir-fallback"])
def test_an_empty_out_directory_that_appears_while_writing_is_not_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, renameat2: bool
) -> None:
    out = tmp_path / "dataset"
    _someone_creates(out, monkeypatch)
    if not renameat2:
        monkeypatch.setattr(dataset, "_rename_noreplace_linux", lambda src, dst: False)
    with pytest.raises(ProfileError, match=r"appeared while the dataset was being written"):
        dataset.write_dataset(out, {"summary.csv": "x\n"}, {}, {"content_sha256": "0"})
    assert out.is_dir() and list(out.iterdir()) == []  # theirs, untouched
    assert [p.name for p in tmp_path.iterdir()] == ["dataset"]  # no temporary directory left


@pytest.mark.parametrize("renameat2", [True, False], ids=["renameat2", "mkdir-fallback"])
def test_write_dataset_still_writes_a_new_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, renameat2: bool
) -> None:
    if not renameat2:
        monkeypatch.setattr(dataset, "_rename_noreplace_linux", lambda src, dst: False)
    monkeypatch.setattr(dataset, "report_markdown", lambda report: "report\n")
    out = tmp_path / "dataset"
    dataset.write_dataset(out, {"summary.csv": "x\n"}, {}, {"content_sha256": "0"})
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "summary.csv", "validation.json", "validation.md"]
    assert [p.name for p in tmp_path.iterdir()] == ["dataset"]
