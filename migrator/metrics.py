"""Prometheus reads of the migrator (application latency, node usage, measured network): the only module that imports prometheus_api_client.

Every failure mode is an answer, never a crash: an unreachable Prometheus, a query error, an empty
result (right after Prometheus starts, before the first scrape) or a non-numeric sample all give
``None`` (latency) or an empty mapping (node usage), with the reason kept in ``last_error`` for
the log; a measured delay or utilisation outside the payload's bounds is skipped the same way.
On the local cluster the latency comes from the project's own exporter and is simulated from the
live placement: label it so wherever it is shown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from prometheus_api_client import PrometheusConnect

from ceenv.schema import MAX_MEASURED_DELAY_MS, MeasuredConditions


@dataclass
class PrometheusMetrics:
    """Configurable PromQL reads; construct it only when a Prometheus URL is set."""

    url: str
    latency_query: str
    node_usage_query: str
    timeout_s: float = 5.0
    measured_delay_query: str | None = None
    node_utilization_query: str | None = None
    last_error: str = ""
    _connection: PrometheusConnect | None = field(default=None, repr=False)

    def _prometheus(self) -> PrometheusConnect:
        if self._connection is None:
            self._connection = PrometheusConnect(url=self.url, disable_ssl=False, timeout=self.timeout_s)
        return self._connection

    def _query(self, promql: str) -> list[dict[str, object]]:
        try:
            result = self._prometheus().custom_query(query=promql)
        except Exception as exc:  # the library raises many types (requests, its own, ValueError)
            self.last_error = f"Prometheus at {self.url} failed on {promql!r}: {exc}"
            return []
        if not result:
            self.last_error = f"Prometheus query {promql!r} returned no sample yet"
            return []
        self.last_error = ""
        return list(result)

    def latency_ms(self) -> float | None:
        """The first sample of the latency query, in ms; None when unknown."""
        for sample in self._query(self.latency_query):
            value = _sample_value(sample)
            if value is not None:
                return value
        return None

    def node_usage_millicores(self) -> dict[str, float]:
        usage: dict[str, float] = {}
        for sample in self._query(self.node_usage_query):
            metric = sample.get("metric")
            value = _sample_value(sample)
            if isinstance(metric, dict) and "node" in metric and value is not None:
                usage[str(metric["node"])] = value
        return usage

    def measured_conditions(self) -> MeasuredConditions | None:
        """The request's ``measured`` block from the configured queries; None when none is set or nothing usable came back."""
        delays: dict[str, dict[str, float]] = {}
        for labels, value in self._labelled(self.measured_delay_query, ("source_node", "target_node")):
            if 0.0 <= value <= MAX_MEASURED_DELAY_MS:
                delays.setdefault(labels[0], {})[labels[1]] = value
        utilization = {
            labels[0]: value
            for labels, value in self._labelled(self.node_utilization_query, ("node",))
            if 0.0 <= value < 1.0
        }
        if not delays and not utilization:
            return None
        return MeasuredConditions(node_delay_ms=delays, node_utilization=utilization)

    def _labelled(self, promql: str | None, names: tuple[str, ...]) -> list[tuple[tuple[str, ...], float]]:
        """Finite samples of ``promql`` that carry every label in ``names`` (none when the query is unset)."""
        found = []
        for sample in self._query(promql) if promql else []:
            metric, value = sample.get("metric"), _sample_value(sample)
            if isinstance(metric, dict) and all(n in metric for n in names) and value is not None:
                found.append((tuple(str(metric[n]) for n in names), value))
        return found


def _sample_value(sample: dict[str, object]) -> float | None:
    pair = sample.get("value")
    try:
        value = float(pair[1]) if isinstance(pair, (list, tuple)) and len(pair) == 2 else float("nan")
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
