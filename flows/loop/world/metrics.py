"""What a service mesh and a ping-mesh would report about the world, as plain counters.

:class:`MeshMetrics` keeps Istio's standard request metrics, ``istio_request_duration_milliseconds``
(a histogram with Istio's default buckets) and ``istio_requests_total``, once per reporter: the
*source* proxy sees a call from sending the request to getting the answer (network included), the
*destination* proxy from the request's arrival to the answer. Labels are Istio's
(``reporter``, ``source_workload``, ``destination_workload``, ``response_code``, namespaces,
``destination_service_name``, ``request_protocol``, ``response_flags``: ``UH`` for a 503 with no
endpoint, ``UF,URX`` for one whose every attempt failed to connect, ``-`` otherwise). It also keeps Goldpinger's
``goldpinger_peers_response_time_s`` histogram of node-to-node pings (labels ``goldpinger_instance``
= the probing node, ``call_type="ping"``, ``host_ip`` and ``pod_ip`` = the probed node's name: the
world's nodes have no addresses). :meth:`MeshMetrics.exposition` renders Prometheus' text format;
the live adapter serves the same families through ``prometheus_client``. Pure Python.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field

# Istio's default buckets for istio_request_duration_milliseconds (ms)
ISTIO_DURATION_BUCKETS_MS = (
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0, 60000.0,
    300000.0, 600000.0, 1800000.0, 3600000.0,
)  # fmt: skip
# Goldpinger's peers response-time histogram (seconds): Prometheus client's default buckets
GOLDPINGER_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

DURATION = "istio_request_duration_milliseconds"
REQUESTS = "istio_requests_total"
PING = "goldpinger_peers_response_time_s"
REQUEST_LABELS = (
    "reporter", "source_workload", "source_workload_namespace", "destination_workload",
    "destination_workload_namespace", "destination_service_name", "request_protocol", "response_code",
    "response_flags",
)  # fmt: skip
PING_LABELS = ("goldpinger_instance", "call_type", "host_ip", "pod_ip")
# Envoy's response flags (``response_flags``) of the world's two kinds of 503; "-" for every other answer
NO_HEALTHY_UPSTREAM = "UH"  # the service had no endpoint when the call (or its retry) was routed
CONNECT_FAILED_RETRIES_EXHAUSTED = "UF,URX"  # every attempt failed to connect and the retries ran out


@dataclass
class Histogram:
    """Cumulative-on-read histogram: per-bucket counts, sum and count."""

    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, cumulative count)`` pairs, ``+Inf`` last, as Prometheus exposes them."""
        out, running = [], 0
        for bound, n in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out


class MeshMetrics:
    """Istio's request metrics and Goldpinger's ping histogram, filled by the emulator."""

    def __init__(self, namespace: str = "default") -> None:
        self.namespace = namespace
        self.requests: dict[tuple[str, ...], Histogram] = {}
        self.pings: dict[tuple[str, ...], Histogram] = {}

    def _series(self, reporter: str, source: str, destination: str, code: int, flags: str) -> Histogram:
        key = (reporter, source, self.namespace, destination, self.namespace, destination, "http", str(code), flags)
        hist = self.requests.get(key)
        if hist is None:
            hist = self.requests[key] = Histogram(ISTIO_DURATION_BUCKETS_MS)
        return hist

    def observe_call(
        self,
        source: str,
        destination: str,
        code: int,
        source_ms: float,
        destination_ms: float | None,
        flags: str = "-",
    ) -> None:
        """One call as both proxies report it; ``destination_ms`` is None when it never reached a pod.

        ``flags`` is Envoy's ``response_flags``: :data:`NO_HEALTHY_UPSTREAM` or
        :data:`CONNECT_FAILED_RETRIES_EXHAUSTED` for the proxy's own 503s, "-" when a pod answered.
        """
        self._series("source", source, destination, code, flags).observe(source_ms)
        if destination_ms is not None:
            self._series("destination", source, destination, code, flags).observe(destination_ms)

    def observe_ping(self, source_node: str, target_node: str, seconds: float) -> None:
        key = (source_node, "ping", target_node, target_node)
        hist = self.pings.get(key)
        if hist is None:
            hist = self.pings[key] = Histogram(GOLDPINGER_BUCKETS_S)
        hist.observe(seconds)

    def families(self) -> Iterator[tuple[str, str, tuple[str, ...], dict[tuple[str, ...], Histogram]]]:
        """``(name, help, label names, series)`` of each histogram family."""
        yield (
            DURATION,
            "Histogram of request durations in milliseconds (world emulation).",
            REQUEST_LABELS,
            self.requests,
        )
        yield (
            PING,
            "Histogram of response times from other hosts, when making peer calls (world emulation).",
            (PING_LABELS),
            self.pings,
        )

    def exposition(self) -> str:
        """Prometheus text format 0.0.4 of every family (the counter is the histograms' counts)."""
        lines: list[str] = []
        for name, help_text, labels, series in self.families():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
            for key, hist in sorted(series.items()):
                base = ",".join(f'{k}="{v}"' for k, v in zip(labels, key, strict=True))
                for le, n in hist.cumulative():
                    lines.append(f'{name}_bucket{{{base},le="{le}"}} {n}')
                lines.append(f"{name}_sum{{{base}}} {hist.total!r}")
                lines.append(f"{name}_count{{{base}}} {hist.count}")
        lines += [f"# HELP {REQUESTS} Counter of requests (world emulation).", f"# TYPE {REQUESTS} counter"]
        for key, hist in sorted(self.requests.items()):
            base = ",".join(f'{k}="{v}"' for k, v in zip(REQUEST_LABELS, key, strict=True))
            lines.append(f"{REQUESTS}{{{base}}} {hist.count}")
        return "\n".join(lines) + "\n"
