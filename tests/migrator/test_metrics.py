"""Prometheus reads: empty results, failures, stale and odd samples are 'unknown' with a reason, never a crash."""

from __future__ import annotations

from typing import Any

import pytest

from migrator.metrics import EMPTY, NOT_A_NUMBER, PART_LABEL, STALE, UNREACHABLE, PrometheusMetrics, paired_query
from migrator.snapshot import MeasurementUnavailable

NOW = 1_700_000_000.0


def paired_answer(answer: list[dict[str, Any]], ages_s: list[float]) -> list[dict[str, Any]]:
    """What Prometheus answers :func:`migrator.metrics.paired_query` with: each series of ``answer`` once with its
    value (``reach_read_part="value"``, its name kept) and once with its sample's timestamp, ``ages_s`` before
    the evaluation (``"timestamp"``, its name dropped, as ``timestamp()`` does)."""
    values = [{**s, "metric": {**s.get("metric", {}), PART_LABEL: "value"}} for s in answer]
    stamps = [
        {"metric": {**{k: v for k, v in s.get("metric", {}).items() if k != "__name__"}, PART_LABEL: "timestamp"},
         "value": [NOW, str(NOW - age)]}
        for s, age in zip(answer, ages_s, strict=True)
    ]  # fmt: skip
    return values + stamps


class FakePrometheus:
    """Answers the paired latency query with ``answer``, each sample ``age_s`` old."""

    def __init__(self, answer: Any, age_s: float = 2.0):
        self.answer = answer
        self.age_s = age_s
        self.queries: list[str] = []

    def custom_query(self, query: str) -> Any:
        self.queries.append(query)
        if isinstance(self.answer, Exception):
            raise self.answer
        if query.startswith("label_replace("):
            return paired_answer(self.answer, [self.age_s] * len(self.answer))
        return self.answer


def metrics_answering(answer: Any, age_s: float = 2.0, max_age_s: float = 90.0) -> PrometheusMetrics:
    metrics = PrometheusMetrics(
        "http://127.0.0.1:9090", "reach_app_latency_ms", "reach_node_cpu_usage_millicores", max_age_s=max_age_s
    )
    metrics._connection = FakePrometheus(answer, age_s)  # type: ignore[assignment]
    return metrics


def test_a_fresh_sample_is_read_in_milliseconds() -> None:
    metrics = metrics_answering([{"metric": {}, "value": [NOW, "123.5"]}])
    reading = metrics.read_latency()
    assert reading.value_ms == 123.5 and reading.sampled_at_s == NOW - 2.0
    # One query: the value and its sample's timestamp from one evaluation, never two that a scrape could split.
    assert metrics._connection.queries == [paired_query("reach_app_latency_ms")]  # type: ignore[union-attr]


def test_an_empty_result_right_after_start_is_unknown() -> None:
    reading = metrics_answering([]).read_latency()
    assert reading.value_ms is None and reading.problem == EMPTY and "no sample" in reading.detail


def test_an_unreachable_prometheus_is_unknown_with_the_reason() -> None:
    reading = metrics_answering(ConnectionError("connection refused")).read_latency()
    assert reading.value_ms is None and reading.problem == UNREACHABLE and "connection refused" in reading.detail


def test_a_sample_older_than_the_max_age_is_stale() -> None:
    reading = metrics_answering([{"metric": {}, "value": [NOW, "123.5"]}], age_s=300.0, max_age_s=90.0).read_latency()
    assert reading.value_ms is None and reading.problem == STALE and "300 s old" in reading.detail


def test_nan_and_malformed_samples_are_not_a_number() -> None:
    reading = metrics_answering([{"value": [0, "NaN"]}, {"value": "x"}]).read_latency()
    assert reading.value_ms is None and reading.problem == NOT_A_NUMBER


def test_node_usage_is_keyed_by_the_node_label() -> None:
    answer = [{"metric": {"node": "edge-1"}, "value": [0, "1500"]}, {"metric": {}, "value": [0, "9"]}]
    assert metrics_answering(answer).node_usage_millicores() == {"edge-1": 1500.0}


def measured_metrics(delays: Any, utilization: Any) -> PrometheusMetrics:
    class Answers:
        def custom_query(self, query: str) -> Any:
            answer = delays if query == "delay_q" else utilization
            if isinstance(answer, Exception):
                raise answer
            return answer

    metrics = PrometheusMetrics(
        "http://127.0.0.1:9090", "lat", "usage", measured_delay_query="delay_q", node_utilization_query="util_q"
    )
    metrics._connection = Answers()  # type: ignore[assignment]
    return metrics


def test_measured_delays_and_utilisation_become_the_measured_block_and_bad_samples_are_skipped() -> None:
    delays = [
        {"metric": {"source_node": "a", "target_node": "b"}, "value": [0, "12.5"]},
        {"metric": {"source_node": "a", "target_node": "c"}, "value": [0, "-3"]},  # out of range
        {"metric": {"source_node": "b"}, "value": [0, "4"]},  # no target label
        {"metric": {"source_node": "b", "target_node": "a"}, "value": [0, "NaN"]},
    ]
    utilization = [
        {"metric": {"node": "a"}, "value": [0, "0.25"]},
        {"metric": {"node": "b"}, "value": [0, "1.5"]},  # out of range
        {"metric": {"node": "c"}, "value": [0, "1"]},  # fully busy: kept
    ]
    measured = measured_metrics(delays, utilization).measured_conditions()
    assert measured is not None
    assert measured.node_delay_ms == {"a": {"b": 12.5}}
    assert measured.node_utilization == {"a": 0.25, "c": 1.0}


def test_no_measurement_query_set_means_no_measured_block() -> None:
    assert metrics_answering([{"metric": {"node": "a"}, "value": [0, "0.5"]}]).measured_conditions() is None


GOOD_DELAY = [{"metric": {"source_node": "a", "target_node": "b"}, "value": [0, "12.5"]}]
GOOD_UTILIZATION = [{"metric": {"node": "a"}, "value": [0, "0.25"]}]


@pytest.mark.parametrize(
    ("delays", "utilization", "named"),
    [
        (ConnectionError("refused"), GOOD_UTILIZATION, "refused"),  # Prometheus away
        ([], GOOD_UTILIZATION, "delay_q"),  # no sample yet
        (GOOD_DELAY, [{"metric": {"node": "a"}, "value": [0, "7"]}], "util_q"),  # nothing in range
        (GOOD_DELAY, [{"metric": {}, "value": [0, "0.5"]}], "util_q"),  # the label is missing
    ],
)
def test_a_configured_measurement_that_fails_or_gives_nothing_usable_is_unavailable(
    delays: Any, utilization: Any, named: str
) -> None:
    """The migrator was told to decide on measured conditions: without them it must not act on nominal ones."""
    with pytest.raises(MeasurementUnavailable, match=named):
        measured_metrics(delays, utilization).measured_conditions()


class SeriesPrometheus:
    """Two series of the latency query, each with its own value and age."""

    def __init__(self, series: list[tuple[dict[str, str], str, float]]):
        self.series = series

    def custom_query(self, query: str) -> Any:
        answer = [{"metric": m, "value": [NOW, value]} for m, value, _ in self.series]
        return paired_answer(answer, [age for _, _, age in self.series])


def test_a_stale_series_is_not_read_as_current_because_another_series_is_fresh() -> None:
    metrics = metrics_answering([])
    metrics._connection = SeriesPrometheus(  # type: ignore[assignment]
        [({"__name__": "lat", "pod": "old"}, "400", 250.0), ({"__name__": "lat", "pod": "new"}, "NaN", 2.0)]
    )
    reading = metrics.read_latency()
    assert reading.value_ms is None and reading.problem == STALE and "250 s old" in reading.detail


def test_the_first_series_that_is_finite_and_fresh_is_read() -> None:
    metrics = metrics_answering([])
    metrics._connection = SeriesPrometheus(  # type: ignore[assignment]
        [({"pod": "old"}, "400", 250.0), ({"pod": "new"}, "120", 2.0)]
    )
    assert metrics.read_latency().value_ms == 120.0
