"""Jaeger traces: own execution time per call, tolerated damage (orphans, duplicates), hard errors."""

from __future__ import annotations

import json
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
    # aggregator on tb-edge-vm-4-1 (cpu_type 1): 100 ms minus its 40 ms outgoing client span [20, 60] ms,
    # minus the 5 ms child [1, 6] ms on process p9, which is missing from `processes`: that span's own time
    # goes to no service, but it is still an outgoing call of the aggregator → 100 - 40 - 5 = 55 ms
    assert times[("aggregator", 1)] == [55.0]
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


def _trace_file(tmp_path: Path, spans: list[dict[str, object]], host_tags: dict[str, str]) -> Path:
    tags = [{"key": k, "type": "string", "value": v} for k, v in host_tags.items()]
    doc = {
        "data": [{"traceID": "t1", "spans": spans, "processes": {"p1": {"serviceName": "aggregator", "tags": tags}}}]
    }
    path = tmp_path / "traces.json"
    path.write_text(json.dumps(doc))
    return path


def _raw_span(
    span_id: str, start_ms: float, duration_ms: float, parent: str | None = None, ref: str = "CHILD_OF"
) -> dict[str, object]:
    refs = [{"refType": ref, "traceID": "t1", "spanID": parent}] if parent else []
    return {
        "traceID": "t1",
        "spanID": span_id,
        "operationName": "op",
        "references": refs,
        "startTime": 1_700_000_000_000_000 + int(start_ms * 1000),
        "duration": int(duration_ms * 1000),
        "processID": "p1",
        "tags": [{"key": "span.kind", "type": "string", "value": "server" if parent is None else "internal"}],
    }


def test_a_same_service_follows_from_span_belongs_to_the_invocation_it_follows(
    tmp_path: Path, resolver: CpuTypeResolver
) -> None:
    # async work (3 ms) that FOLLOWS_FROM the aggregator's server span (10 ms) is no call of its own
    spans = [_raw_span("s1", 0, 10), _raw_span("s2", 12, 3, parent="s1", ref="FOLLOWS_FROM")]
    table, report = read_jaeger_profiles([_trace_file(tmp_path, spans, {"hostname": "cloud-1"})], resolver)
    assert list(table["execution_time_ms"]) == [10.0]
    assert (report.invocations, report.spans_used) == (1, 2)


def test_traces_without_host_tags_are_an_error_naming_the_reason_and_the_options(
    tmp_path: Path, resolver: CpuTypeResolver
) -> None:
    path = _trace_file(tmp_path, [_raw_span("s1", 0, 10)], {"ip": "10.0.0.7"})
    with pytest.raises(ProfileError) as err:
        read_jaeger_profiles([path], resolver)
    message = str(err.value)
    assert "traces.json: none of the 1 Jaeger spans gave a measurement" in message
    assert "no host tag (k8s.node.name, node.name, hostname, host.name) on the process: 1" in message
    assert "--host-tag KEY" in message and "--node-types" in message
    fixed = read_jaeger_profiles([path], CpuTypeResolver(user_table={"10.0.0.7": 0}), JaegerOptions(host_tags=("ip",)))
    assert list(fixed[0]["execution_time_ms"]) == [10.0]
