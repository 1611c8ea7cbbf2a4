"""Prometheus reads: empty results, failures and odd samples are 'unknown', never a crash."""

from __future__ import annotations

from typing import Any

from migrator.metrics import PrometheusMetrics


class FakePrometheus:
    def __init__(self, answer: Any):
        self.answer = answer

    def custom_query(self, query: str) -> Any:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def metrics_answering(answer: Any) -> PrometheusMetrics:
    metrics = PrometheusMetrics("http://127.0.0.1:9090", "reach_app_latency_ms", "reach_node_cpu_usage_millicores")
    metrics._connection = FakePrometheus(answer)  # type: ignore[assignment]
    return metrics


def test_a_sample_is_read_in_milliseconds() -> None:
    assert metrics_answering([{"metric": {}, "value": [1700000000.0, "123.5"]}]).latency_ms() == 123.5


def test_an_empty_result_right_after_start_is_unknown() -> None:
    metrics = metrics_answering([])
    assert metrics.latency_ms() is None and "no sample yet" in metrics.last_error


def test_an_unreachable_prometheus_is_unknown_with_the_reason() -> None:
    metrics = metrics_answering(ConnectionError("connection refused"))
    assert metrics.latency_ms() is None and "connection refused" in metrics.last_error


def test_nan_and_malformed_samples_are_skipped() -> None:
    assert metrics_answering([{"value": [0, "NaN"]}, {"value": "x"}]).latency_ms() is None


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
    utilization = [{"metric": {"node": "a"}, "value": [0, "0.25"]}, {"metric": {"node": "b"}, "value": [0, "1.5"]}]
    measured = measured_metrics(delays, utilization).measured_conditions()
    assert measured is not None
    assert measured.node_delay_ms == {"a": {"b": 12.5}}
    assert measured.node_utilization == {"a": 0.25}


def test_no_query_set_or_nothing_usable_means_no_measured_block() -> None:
    assert metrics_answering([{"metric": {"node": "a"}, "value": [0, "0.5"]}]).measured_conditions() is None
    failing = measured_metrics(ConnectionError("refused"), [])
    assert failing.measured_conditions() is None and failing.last_error
