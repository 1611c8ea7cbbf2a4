"""Prometheus reads of the migrator (application latency, node usage, measured network): the only module that imports prometheus_api_client.

The latency and the age of its sample come from one query (:func:`paired_query`: the value and its
``timestamp()``, told apart by a label), so both are read from one evaluation of Prometheus' head:
two queries could straddle a scrape and pair a sample's value with the next sample's age.

Every failure mode is an answer, never a crash: an unreachable Prometheus, a query error, an empty
result (right after Prometheus starts, before the first scrape), a non-numeric sample or a stale
one (its newest sample, read with PromQL's ``timestamp()``, older than ``max_age_s``) all give an
unknown ``LatencyReading`` with the reason (``read_latency``), ``None`` (``latency_ms``) or an empty
mapping (node usage), with the reason also kept in ``last_error`` for the log; a measured delay
or utilisation outside the payload's bounds is skipped, and a configured measurement query that
fails or leaves nothing usable raises ``MeasurementUnavailable`` (the controller's cycle is blind). On the local cluster the latency comes from the project's own exporter and is simulated
from the live placement: label it so wherever it is shown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from prometheus_api_client import PrometheusConnect

from ceenv.schema import MAX_MEASURED_DELAY_MS, MeasuredConditions
from migrator.snapshot import LatencyReading, MeasurementUnavailable

UNREACHABLE, EMPTY, NOT_A_NUMBER, STALE = (
    "prometheus-unreachable",
    "latency-empty",
    "latency-not-a-number",
    "latency-stale",
)  # the same strings as migrator.controller.LATENCY_PROBLEMS (this module stays out of the controller's imports)


PART_LABEL = "reach_read_part"  # tells a sample's value from its timestamp() in paired_query's answer
VALUE_PART, TIMESTAMP_PART = "value", "timestamp"


def paired_query(promql: str) -> str:
    """One PromQL query answering every series of ``promql`` twice: its value, and its sample's ``timestamp()``,
    labelled ``reach_read_part="value"`` / ``"timestamp"``. One evaluation reads both from the same samples;
    ``or`` keeps both halves, whose label sets differ in that label."""
    return (
        f'label_replace(({promql}), "{PART_LABEL}", "{VALUE_PART}", "", "") or '
        f'label_replace(timestamp(({promql})), "{PART_LABEL}", "{TIMESTAMP_PART}", "", "")'
    )


@dataclass
class PrometheusMetrics:
    """Configurable PromQL reads; construct it only when a Prometheus URL is set."""

    url: str
    latency_query: str
    node_usage_query: str
    timeout_s: float = 5.0
    max_age_s: float = 90.0
    measured_delay_query: str | None = None
    node_utilization_query: str | None = None
    last_error: str = ""
    last_problem: str = ""
    _connection: PrometheusConnect | None = field(default=None, repr=False)

    def _prometheus(self) -> PrometheusConnect:
        if self._connection is None:
            self._connection = PrometheusConnect(url=self.url, disable_ssl=False, timeout=self.timeout_s)
        return self._connection

    def latency_series_ms(self, start_s: float, end_s: float, step_s: float) -> list[float]:
        """The latency query evaluated every ``step_s`` seconds from ``start_s`` to ``end_s`` (Unix times).

        The finite values of its first series, oldest first (the redeploy's analysis compares two such
        periods); an empty list when unknown, the reason in ``last_error``.
        """
        from datetime import UTC, datetime

        try:
            result = self._prometheus().custom_query_range(
                query=self.latency_query,
                start_time=datetime.fromtimestamp(start_s, UTC),
                end_time=datetime.fromtimestamp(end_s, UTC),
                step=f"{step_s:g}s",
            )
        except Exception as exc:  # the library raises many types (requests, its own, ValueError)
            self.last_error = f"Prometheus at {self.url} failed on the range of {self.latency_query!r}: {exc}"
            return []
        series = [s for s in result if isinstance(s, dict) and isinstance(s.get("values"), list)]
        if not series:
            self.last_error = f"Prometheus query {self.latency_query!r} had no sample in the range"
            return []
        values = [_sample_value({"value": pair}) for pair in series[0]["values"]]
        return [v for v in values if v is not None]

    def _query(self, promql: str) -> list[dict[str, object]]:
        try:
            result = self._prometheus().custom_query(query=promql)
        except Exception as exc:  # the library raises many types (requests, its own, ValueError)
            self.last_error, self.last_problem = f"Prometheus at {self.url} failed on {promql!r}: {exc}", UNREACHABLE
            return []
        if not result:
            self.last_error, self.last_problem = f"Prometheus query {promql!r} returned no sample", EMPTY
            return []
        self.last_error = self.last_problem = ""
        return list(result)

    def read_latency(self) -> LatencyReading:
        """The first series of the latency query whose sample is finite *and* fresh, in ms; else why not.

        Each value is paired with the age of its own series (``timestamp()`` keeps the labels), so a
        stale series is never read as current because another series (even a NaN one) is fresh; and
        both come from one query (:func:`paired_query`), so a value is never paired with the age of a
        sample scraped after it was read.
        """
        answer = self._query(paired_query(self.latency_query))
        parts: dict[str, list[dict[str, object]]] = {VALUE_PART: [], TIMESTAMP_PART: []}
        for sample in answer:
            metric = sample.get("metric")
            part = metric.get(PART_LABEL) if isinstance(metric, dict) else None
            parts.setdefault(str(part), []).append(sample)
        values = [(_series_key(s), v) for s in parts[VALUE_PART] if (v := _sample_value(s)) is not None]
        if not values:
            if not self.last_problem:
                self.last_error = f"Prometheus query {self.latency_query!r} gave no finite number"
                self.last_problem = NOT_A_NUMBER
            return LatencyReading(None, self.last_problem, self.last_error)
        stamps = {_series_key(s): s for s in parts[TIMESTAMP_PART]}
        ages_s = {key: _sample_age_s(s) for key, s in stamps.items()}
        for key, value in values:
            age_s = ages_s.get(key)
            if age_s is not None and age_s <= self.max_age_s:
                return LatencyReading(value, sampled_at_s=_sample_value(stamps[key]))
        known_ages = [a for a in (ages_s.get(key) for key, _ in values) if a is not None]
        newest = f"{min(known_ages):.0f} s old" if known_ages else "of unknown age"
        self.last_error = f"the newest finite sample of {self.latency_query!r} is {newest} (> {self.max_age_s:.0f} s)"
        self.last_problem = STALE
        return LatencyReading(None, STALE, self.last_error)

    def latency_ms(self) -> float | None:
        """The latency in ms; None when unknown (``last_error`` says why)."""
        return self.read_latency().value_ms

    def by_label(self, promql: str, label: str) -> dict[str, float]:
        """Each finite sample of ``promql`` by the value of its ``label`` ('' for a sample without it); {} when unknown."""
        values: dict[str, float] = {}
        for sample in self._query(promql):
            metric = sample.get("metric")
            value = _sample_value(sample)
            if isinstance(metric, dict) and value is not None:
                values[str(metric.get(label, ""))] = value
        return values

    def node_usage_millicores(self) -> dict[str, float]:
        usage: dict[str, float] = {}
        for sample in self._query(self.node_usage_query):
            metric = sample.get("metric")
            value = _sample_value(sample)
            if isinstance(metric, dict) and "node" in metric and value is not None:
                usage[str(metric["node"])] = value
        return usage

    def measured_conditions(self) -> MeasuredConditions | None:
        """The request's ``measured`` block from the configured queries; None when no query is set.

        Samples that are not finite or out of range are skipped. A configured query that fails or
        leaves no usable sample raises :class:`MeasurementUnavailable` (naming the query): the
        migrator was told to decide on measured conditions and cannot see them, so it does not act.
        """
        if not self.measured_delay_query and not self.node_utilization_query:
            return None
        delays: dict[str, dict[str, float]] = {}
        for labels, value in self._usable(self.measured_delay_query, ("source_node", "target_node")):
            if 0.0 <= value <= MAX_MEASURED_DELAY_MS:
                delays.setdefault(labels[0], {})[labels[1]] = value
        self._require(self.measured_delay_query, bool(delays), f"a delay in [0, {MAX_MEASURED_DELAY_MS:g}] ms")
        utilization = {
            labels[0]: value
            for labels, value in self._usable(self.node_utilization_query, ("node",))
            if 0.0 <= value <= 1.0  # a fully busy NIC (1.0) is a measurement, not a broken probe
        }
        self._require(self.node_utilization_query, bool(utilization), "a utilisation in [0, 1]")
        return MeasuredConditions(node_delay_ms=delays, node_utilization=utilization)

    def _usable(self, promql: str | None, names: tuple[str, ...]) -> list[tuple[tuple[str, ...], float]]:
        found = self._labelled(promql, names)
        if promql and self.last_problem:
            raise MeasurementUnavailable(self.last_error)
        return found

    def _require(self, promql: str | None, usable: bool, what: str) -> None:
        if promql and not usable:
            self.last_error, self.last_problem = f"Prometheus query {promql!r} gave no sample with {what}", EMPTY
            raise MeasurementUnavailable(self.last_error)

    def _labelled(self, promql: str | None, names: tuple[str, ...]) -> list[tuple[tuple[str, ...], float]]:
        """Finite samples of ``promql`` that carry every label in ``names`` (none when the query is unset)."""
        found = []
        for sample in self._query(promql) if promql else []:
            metric, value = sample.get("metric"), _sample_value(sample)
            if isinstance(metric, dict) and all(n in metric for n in names) and value is not None:
                found.append((tuple(str(metric[n]) for n in names), value))
        return found


def _series_key(sample: dict[str, object]) -> tuple[tuple[str, str], ...]:
    """A series' labels without its name (``timestamp()`` drops the name and keeps the rest) and without
    :func:`paired_query`'s part label."""
    metric = sample.get("metric")
    if not isinstance(metric, dict):
        return ()
    return tuple(sorted((str(k), str(v)) for k, v in metric.items() if k not in ("__name__", PART_LABEL)))


def _sample_age_s(sample: dict[str, object]) -> float | None:
    """Evaluation time minus the sample's own timestamp (both Prometheus' clock) of a ``timestamp()`` sample."""
    pair = sample.get("value")
    try:
        return float(pair[0]) - float(pair[1]) if isinstance(pair, (list, tuple)) and len(pair) == 2 else None
    except (TypeError, ValueError):
        return None


def _sample_value(sample: dict[str, object]) -> float | None:
    pair = sample.get("value")
    try:
        value = float(pair[1]) if isinstance(pair, (list, tuple)) and len(pair) == 2 else float("nan")
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
