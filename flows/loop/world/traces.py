"""Per-request traces of the world, written as Jaeger query-API JSON (what ``GET /api/traces`` returns).

Each call leaves two spans, as a meshed service instrumented with OpenTelemetry would: a
``span.kind=client`` span in the caller (from sending the request to getting the answer, network
included) and a ``span.kind=server`` span in the callee, its child (from the request's arrival to
the answer, queueing included). The root is a server span of the endpoint's client service. A
process is one (service, node) pair and carries the node name in the ``hostname`` and
``k8s.node.name`` tags, so that ``reach profiles ingest --jaeger`` maps it to a CPU type.
Virtual time (ms) becomes epoch microseconds from ``epoch_s``. Used by the emulator
(:class:`TraceLog` collects) and ``reach world measure --traces``. Pure Python.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_EPOCH_S = 1_700_000_000  # fixed, so that traces of a seeded run are byte-identical


@dataclass(frozen=True)
class SpanRecord:
    """One span in virtual time (ms)."""

    span_id: int
    parent_id: int | None
    service: str
    node: str
    kind: str  # "server" or "client"
    operation: str
    start_ms: float
    end_ms: float
    status_code: int


@dataclass
class TraceLog:
    """Traces of the first ``max_traces`` requests (0 = none); each trace is a list of spans."""

    max_traces: int = 0
    traces: list[list[SpanRecord]] = field(default_factory=list)
    next_span: int = 1

    def open(self) -> list[SpanRecord] | None:
        """A new trace to fill, or None when the log is full."""
        if len(self.traces) >= self.max_traces:
            return None
        trace: list[SpanRecord] = []
        self.traces.append(trace)
        return trace

    def span_id(self) -> int:
        self.next_span += 1
        return self.next_span


def _span_json(trace_id: str, span: SpanRecord, process_id: str, epoch_us: int) -> dict[str, Any]:
    references = (
        []
        if span.parent_id is None
        else [{"refType": "CHILD_OF", "traceID": trace_id, "spanID": f"{span.parent_id:016x}"}]
    )
    return {
        "traceID": trace_id,
        "spanID": f"{span.span_id:016x}",
        "flags": 1,
        "operationName": span.operation,
        "references": references,
        "startTime": epoch_us + round(span.start_ms * 1000),
        "duration": max(0, round((span.end_ms - span.start_ms) * 1000)),
        "tags": [
            {"key": "span.kind", "type": "string", "value": span.kind},
            {"key": "http.status_code", "type": "int64", "value": span.status_code},
        ],
        "logs": [],
        "processID": process_id,
        "warnings": None,
    }


def to_jaeger(log: TraceLog, epoch_s: int = DEFAULT_EPOCH_S) -> dict[str, Any]:
    """The whole log as one Jaeger query-API document ``{"data": [trace, ...]}``."""
    data = []
    epoch_us = epoch_s * 1_000_000
    for t, spans in enumerate(log.traces):
        trace_id = f"{t + 1:032x}"
        processes: dict[tuple[str, str], str] = {}
        out = []
        for span in spans:
            pid = processes.setdefault((span.service, span.node), f"p{len(processes) + 1}")
            out.append(_span_json(trace_id, span, pid, epoch_us))
        data.append(
            {
                "traceID": trace_id,
                "spans": out,
                "processes": {
                    pid: {
                        "serviceName": service,
                        "tags": [
                            {"key": "hostname", "type": "string", "value": node},
                            {"key": "k8s.node.name", "type": "string", "value": node},
                        ],
                    }
                    for (service, node), pid in processes.items()
                },
                "warnings": None,
            }
        )
    return {"data": data, "total": 0, "limit": 0, "offset": 0, "errors": None}


def write_jaeger(log: TraceLog, path: Path, epoch_s: int = DEFAULT_EPOCH_S) -> None:
    """Write :func:`to_jaeger` atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(to_jaeger(log, epoch_s)), encoding="utf-8")
    tmp.replace(path)
