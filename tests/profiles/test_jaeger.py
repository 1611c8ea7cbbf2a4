"""Jaeger traces: own execution time per call, tolerated damage (orphans, duplicates), hard errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.profiles.errors import ProfileError
from flows.profiles.hosts import CpuTypeResolver
from flows.profiles.jaeger import JaegerOptions, Span, own_time_us, read_jaeger_profiles
from tests.profiles.conftest import EXAMPLES, FIXTURES

IGNORE_CLIENT = JaegerOptions(ignore_services=frozenset({"client"}))


def _times(path: Path, resolver: CpuTypeResolver) -> dict[tuple[str, int], list[float]]:
    table, _ = read_jaeger_profiles([path], resolver, IGNORE_CLIENT)
    out: dict[tuple[str, int], list[float]] = {}
    for row in table.itertuples():
        out.setdefault((row.service, int(row.cpu_type)), []).append(round(row.execution_time_ms, 6))
    return out


def test_parallel_children_are_subtracted_once_as_a_union(resolver: CpuTypeResolver) -> None:
    times = _times(FIXTURES / "jaeger_parallel_and_wrapped.json", resolver)
    # aggregator: 100 ms span, children cover [11, 71] and [81, 91] ms → 30 ms of its own
    assert times[("aggregator", 0)] == [30.0]
    assert times[("db", 0)] == [40.0]
    assert times[("detection", 0)] == [10.0]


def test_same_service_child_spans_belong_to_the_callers_own_time(resolver: CpuTypeResolver) -> None:
    times = _times(FIXTURES / "jaeger_parallel_and_wrapped.json", resolver)
    assert times[("machine-learning", 0)] == [50.0]


def test_client_kind_wrapper_span_charges_network_time_to_the_call_not_the_caller(resolver: CpuTypeResolver) -> None:
    times = _times(FIXTURES / "jaeger_parallel_and_wrapped.json", resolver)
    # aggregator on tb-edge-vm-4-1 (cpu_type 1): 100 ms minus its 40 ms outgoing client span
    assert times[("aggregator", 1)] == [60.0]
    assert times[("machine-learning", 1)] == [30.0]


def test_span_report_counts_used_and_dropped_spans_by_reason(resolver: CpuTypeResolver) -> None:
    _, report = read_jaeger_profiles([FIXTURES / "jaeger_parallel_and_wrapped.json"], resolver, IGNORE_CLIENT)
    summary = report.to_json()
    assert summary["traces"] == 2
    assert summary["spans_total"] == 11
    assert summary["spans_used"] == 8
    assert summary["spans_dropped"] == 3
    assert summary["dropped_by_reason"] == {
        "duplicate span id (first kept)": 1,
        "ignored service (client or --ignore-service)": 1,
        "unknown process (processID not in processes)": 1,
    }


def test_orphan_spans_are_dropped_and_counted_not_fatal(resolver: CpuTypeResolver) -> None:
    table, report = read_jaeger_profiles([FIXTURES / "jaeger_orphans.json"], resolver, IGNORE_CLIENT)
    assert list(table["service"]) == ["aggregator"]
    assert report.dropped["orphan (parent span missing: sampled or truncated trace)"] == 2


def test_the_same_trace_in_two_files_is_counted_once(resolver: CpuTypeResolver) -> None:
    path = FIXTURES / "jaeger_orphans.json"
    table, report = read_jaeger_profiles([path, path], resolver, IGNORE_CLIENT)
    assert len(table) == 1
    assert report.dropped["duplicate span id (first kept)"] == 3


def test_reference_cycle_is_a_clear_error_naming_file_trace_and_spans(resolver: CpuTypeResolver) -> None:
    with pytest.raises(ProfileError) as err:
        read_jaeger_profiles([FIXTURES / "jaeger_cycle.json"], resolver, IGNORE_CLIENT)
    message = str(err.value)
    assert "jaeger_cycle.json" in message and "4d5e6f7a8b9c0d1e" in message
    assert "a000000000000005 -> b000000000000005 -> a000000000000005" in message


def test_unmapped_host_is_a_clear_error_asking_for_the_node_table(resolver: CpuTypeResolver) -> None:
    with pytest.raises(ProfileError, match=r"'mystery-host'.*--node-types"):
        read_jaeger_profiles([FIXTURES / "jaeger_unmapped_host.json"], resolver, IGNORE_CLIENT)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("not_json.json", "not valid JSON"),
        ("node_types.json", "$.data: missing or not a list"),
        ("nope.json", "not found"),
    ],
)
def test_unreadable_or_non_jaeger_files_are_clear_errors(name: str, message: str, resolver: CpuTypeResolver) -> None:
    with pytest.raises(ProfileError) as err:
        read_jaeger_profiles([FIXTURES / name], resolver)
    assert message in str(err.value) and name in str(err.value)


def test_malformed_span_field_names_its_json_path(tmp_path: Path, resolver: CpuTypeResolver) -> None:
    bad = tmp_path / "traces.json"
    bad.write_text(
        '{"data": [{"traceID": "t", "processes": {"p1": {"serviceName": "db"}}, '
        '"spans": [{"spanID": "s", "processID": "p1", "startTime": 1, "duration": "long"}]}]}'
    )
    with pytest.raises(ProfileError, match=r"\$\.data\[0\]\.spans\[0\]\.duration"):
        read_jaeger_profiles([bad], resolver)


def test_shipped_example_traces_give_twelve_samples_per_cell(resolver: CpuTypeResolver) -> None:
    table, report = read_jaeger_profiles(
        [EXAMPLES / "jaeger_traces.json"],
        CpuTypeResolver(user_table={"cloud-host-a": 0, "edge4-host-a": 1, "edge2-host-a": 2}),
        IGNORE_CLIENT,
    )
    counts = table.groupby(["service", "cpu_type"]).size()
    assert len(counts) == 12 and (counts == 12).all()
    assert report.spans_used + sum(report.dropped.values()) == report.spans_total


def _span(span_id: str, start: float, end: float, parent: str | None, service: str = "a", kind: str = "") -> Span:
    return Span("t", span_id, service, "h", start, end, parent, True, kind, "x")


def test_children_outside_the_parent_are_clipped_to_it() -> None:
    entry = _span("p", 0, 100, None)
    kid = _span("k", 90, 150, "p", service="b")
    spans = {s.span_id: s for s in (entry, kid)}
    assert own_time_us(entry, [entry], {"p": [kid]}, spans) == 90
