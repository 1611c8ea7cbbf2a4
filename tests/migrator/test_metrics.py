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
