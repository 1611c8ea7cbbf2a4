"""Read Jaeger query-API trace JSON into the profile table: each service call's own execution time.

Input is what ``GET /api/traces`` returns: ``{"data": [{"traceID", "spans": [{"traceID", "spanID",
"operationName", "references": [{"refType", "traceID", "spanID"}], "startTime" (µs), "duration"
(µs), "processID", "tags"}], "processes": {"p1": {"serviceName", "tags"}}}]}``. Spans are grouped
into *invocations*: an entry span (whose parent is in another service, or which has no parent)
plus its descendants in the same service, ``CHILD_OF`` or ``FOLLOWS_FROM`` alike (async work of a
service belongs to the call that started it). An invocation's own execution time is the entry
span's duration minus the union of the intervals of its outgoing calls (the nearest same-service
``span.kind=client`` span around a ``CHILD_OF`` child in another service, else that child span),
clipped to the entry span, so parallel calls are not counted twice and network time is not
charged to the caller. The host comes from the process tags (``k8s.node.name``, ``node.name``,
``hostname``, ``host.name``, or a chosen key) and maps to a CPU type through
:class:`CpuTypeResolver`. Duplicate span ids (first kept), spans of unknown processes, orphan
invocations (parent span missing, as in sampled or truncated traces) and non-positive own times
are dropped and counted in the :class:`SpanReport`. A span of an unknown process still stays in
its trace's tree: its own time is attributed to no service, but it is an outgoing call of its
parent (a span on another process than its parent's is a remote call in Jaeger's model), so the
parent's own time excludes it. Reference cycles, unmapped hosts, non-finite or negative times and
inputs whose spans are all dropped (say, for want of a host tag) are errors. Used by
:mod:`flows.profiles.ingest`.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.profiles.errors import ProfileError
from flows.profiles.hosts import CpuTypeResolver
from flows.profiles.table import make_table

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_HOST_TAGS = ("k8s.node.name", "node.name", "hostname", "host.name")


@dataclass(frozen=True)
class Span:
    """One span, reduced to what own-time derivation needs (times in µs)."""

    trace_id: str
    span_id: str
    service: str
    host: str | None
    start_us: float
    end_us: float
    parent_id: str | None
    child_of: bool
    kind: str
    source: str
    known_process: bool = True


UNKNOWN_PROCESS = "unknown process (processID not in processes)"


@dataclass
class SpanReport:
    """How many spans were read, used for a measurement, and dropped (by reason)."""

    files: list[str] = field(default_factory=list)
    traces: int = 0
    spans_total: int = 0
    spans_used: int = 0
    invocations: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "traces": self.traces,
            "spans_total": self.spans_total,
            "spans_used": self.spans_used,
            "spans_dropped": sum(self.dropped.values()),
            "invocations": self.invocations,
            "dropped_by_reason": dict(sorted(self.dropped.items())),
        }


def _fail(path: Path, where: str, problem: str, fix: str) -> ProfileError:
    return ProfileError(f"{path}: {where}: {problem}; {fix}")


def _tags(raw: object) -> dict[str, str]:
    if not isinstance(raw, list):
        return {}
    return {str(t["key"]): str(t.get("value")) for t in raw if isinstance(t, dict) and "key" in t}


def _load_traces(path: Path) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError(f"{path}: file not found; pass an existing Jaeger JSON export") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ProfileError(f"{path}: cannot read file ({err})") from None
    if not text.strip():
        raise _fail(
            path,
            "$",
            "file is empty",
            'export traces with Jaeger\'s query API (GET /api/traces), which returns {"data": [...]}',
        )
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise _fail(
            path,
            "$",
            f"not valid JSON ({err.msg} at line {err.lineno} column {err.colno})",
            "pass the JSON body returned by Jaeger's query API",
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise _fail(
            path,
            "$.data",
            "missing or not a list",
            'expected Jaeger\'s query-API layout {"data": [{"traceID", "spans", "processes"}]}',
        )
    traces: list[Any] = doc["data"]
    return traces


def _parent(refs: object, where: str, path: Path) -> tuple[str | None, bool]:
    if refs is None:
        return None, False
    if not isinstance(refs, list):
        raise _fail(path, f"{where}.references", "not a list", 'write [{"refType": "CHILD_OF", "traceID", "spanID"}]')
    valid = [r for r in refs if isinstance(r, dict) and isinstance(r.get("spanID"), str)]
    for ref in valid:
        if ref.get("refType", "CHILD_OF") == "CHILD_OF":
            return ref["spanID"], True
    return (valid[0]["spanID"], False) if valid else (None, False)


def _number(span: Mapping[str, Any], key: str, where: str, path: Path) -> float:
    value = span.get(key)
    # json.loads accepts NaN and Infinity (and 1e400 becomes inf); NaN < 0 is False, so test finiteness
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise _fail(
            path,
            f"{where}.{key}",
            f"expected a finite number of microseconds >= 0, got {value!r}",
            "fix or re-export the trace",
        )
    return float(value)


def _parse_span(
    raw: object, processes: Mapping[str, Any], trace_id: str, where: str, path: Path, host_tags: Sequence[str]
) -> Span:
    if not isinstance(raw, dict) or not isinstance(raw.get("spanID"), str):
        raise _fail(path, where, "expected a span object with a string spanID", "fix or re-export the trace")
    process_id = str(raw.get("processID"))
    found = processes.get(process_id)
    process: dict[str, Any] = found if isinstance(found, dict) else {}
    known = isinstance(process.get("serviceName"), str)
    # A span of an unknown process is a service of its own (one per missing processID): never part
    # of its parent's invocation, so the parent subtracts it as an outgoing call (see _entry_of).
    service = process["serviceName"] if known else f"<unknown process {process_id}>"
    process_tags = _tags(process.get("tags")) if known else {}
    host = next((process_tags[k] for k in host_tags if k in process_tags), None)
    start = _number(raw, "startTime", where, path)
    parent_id, child_of = _parent(raw.get("references"), where, path)
    return Span(
        str(raw.get("traceID") or trace_id),
        raw["spanID"],
        service,
        host,
        start,
        start + _number(raw, "duration", where, path),
        parent_id,
        child_of,
        _tags(raw.get("tags")).get("span.kind", ""),
        f"{path}#{trace_id}/{raw['spanID']}",
        known,
    )


def read_spans(path: Path, report: SpanReport, host_tags: Sequence[str], seen: set[tuple[str, str]]) -> list[Span]:
    """Every span of one file; duplicates (also across files, via ``seen``) are counted and dropped.
    Spans of unknown processes are kept (``known_process=False``) for their parents' own times."""
    spans: list[Span] = []
    for t, trace in enumerate(_load_traces(path)):
        where = f"$.data[{t}]"
        if not isinstance(trace, dict) or not isinstance(trace.get("spans"), list):
            raise _fail(path, f"{where}.spans", "missing or not a list", "each trace needs a list of spans")
        processes: dict[str, Any] = trace["processes"] if isinstance(trace.get("processes"), dict) else {}
        report.traces += 1
        for s, raw in enumerate(trace["spans"]):
            report.spans_total += 1
            span = _parse_span(raw, processes, str(trace.get("traceID", "")), f"{where}.spans[{s}]", path, host_tags)
            if (span.trace_id, span.span_id) in seen:
                report.dropped["duplicate span id (first kept)"] += 1
            else:
                seen.add((span.trace_id, span.span_id))
                spans.append(span)
    return spans


def _trace_cycle(spans: Mapping[str, Span]) -> list[str] | None:
    done: set[str] = set()
    for start in spans:
        trail: list[str] = []
        on_trail: set[str] = set()
        current: str | None = start
        while current is not None and current in spans and current not in done:
            if current in on_trail:
                return [*trail[trail.index(current) :], current]
            trail.append(current)
            on_trail.add(current)
            current = spans[current].parent_id
        done.update(trail)
    return None


def _entry_of(span: Span, spans: Mapping[str, Span], memo: dict[str, str]) -> str:
    trail: list[str] = []
    current = span
    while current.span_id not in memo:
        parent = spans.get(current.parent_id or "")
        if parent is None or (parent.service, parent.known_process) != (current.service, current.known_process):
            memo[current.span_id] = current.span_id
            break
        trail.append(current.span_id)
        current = parent
    for span_id in trail:
        memo[span_id] = memo[current.span_id]
    return memo[span.span_id]


def _union_us(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for lo, hi in sorted(i for i in intervals if i[1] > i[0]):
        if hi > end:
            total += hi - max(lo, end)
            end = hi
    return total


def _outgoing(child: Span, spans: Mapping[str, Span], entry_id: str) -> Span:
    """The interval an outgoing call occupies in the caller: its nearest ``span.kind=client`` wrapper."""
    current = spans.get(child.parent_id or "")
    while current is not None and current.span_id != entry_id:
        if current.kind == "client":
            return current
        current = spans.get(current.parent_id or "")
    return child


def own_time_us(
    entry: Span, members: Sequence[Span], children: Mapping[str, list[Span]], spans: Mapping[str, Span]
) -> float:
    """Entry duration minus the union of the outgoing calls' intervals, clipped to the entry span."""
    member_ids = {m.span_id for m in members}
    intervals = []
    for member in members:
        for kid in children.get(member.span_id, []):
            if kid.span_id in member_ids or not kid.child_of:
                continue
            call = _outgoing(kid, spans, entry.span_id)
            intervals.append((max(entry.start_us, call.start_us), min(entry.end_us, call.end_us)))
    return (entry.end_us - entry.start_us) - _union_us(intervals)


@dataclass(frozen=True)
class Invocation:
    """One call of a service as seen in a trace: its entry span and same-service descendants."""

    entry: Span
    members: tuple[Span, ...]
    orphan: bool


def invocations(
    trace_spans: Sequence[Span], path: str
) -> tuple[list[Invocation], dict[str, list[Span]], dict[str, Span]]:
    """Group one trace's spans into invocations; a reference cycle is a :class:`ProfileError`."""
    spans = {s.span_id: s for s in trace_spans}
    cycle = _trace_cycle(spans)
    if cycle is not None:
        trace_id = trace_spans[0].trace_id
        raise ProfileError(
            f"{path}: trace {trace_id}: span references form a cycle {' -> '.join(cycle)}; "
            "a parent cannot descend from its child: re-export the trace or delete it from the file"
        )
    memo: dict[str, str] = {}
    groups: dict[str, list[Span]] = defaultdict(list)
    children: dict[str, list[Span]] = defaultdict(list)
    for span in trace_spans:
        groups[_entry_of(span, spans, memo)].append(span)
        if span.parent_id in spans:
            children[span.parent_id].append(span)
    found = [
        Invocation(spans[e], tuple(m), spans[e].parent_id is not None and spans[e].parent_id not in spans)
        for e, m in groups.items()
    ]
    return found, children, spans


@dataclass(frozen=True)
class JaegerOptions:
    """What to ignore and where to find the host of a process."""

    ignore_services: frozenset[str] = frozenset()
    host_tags: tuple[str, ...] = DEFAULT_HOST_TAGS


def _measure(
    inv: Invocation,
    children: Mapping[str, list[Span]],
    spans: Mapping[str, Span],
    resolver: CpuTypeResolver,
    options: JaegerOptions,
    unmapped: dict[str, str],
) -> tuple[dict[str, Any] | None, str]:
    if not inv.entry.known_process:
        return None, UNKNOWN_PROCESS
    if inv.entry.service in options.ignore_services:
        return None, "ignored service (client or --ignore-service)"
    if inv.orphan:
        return None, "orphan (parent span missing: sampled or truncated trace)"
    if inv.entry.host is None:
        return None, f"no host tag ({', '.join(options.host_tags)}) on the process"
    cpu_type = resolver.cpu_type_of(inv.entry.host)
    if cpu_type is None:
        unmapped.setdefault(inv.entry.host, inv.entry.source)
        return None, "unmapped host"
    own_us = own_time_us(inv.entry, inv.members, children, spans)
    if own_us <= 0:
        return None, "non-positive own time (clock skew or children outlast the parent)"
    row = {
        "service": inv.entry.service,
        "cpu_type": cpu_type,
        "execution_time_ms": own_us / 1000.0,
        "count": 1.0,
        "source": inv.entry.source,
    }
    return row, ""


def read_jaeger_profiles(
    paths: Sequence[Path], resolver: CpuTypeResolver, options: JaegerOptions | None = None
) -> tuple[pd.DataFrame, SpanReport]:
    """Jaeger JSON files → profile table (one row per invocation) and the span accounting."""
    options = options or JaegerOptions()
    report = SpanReport(files=[str(p) for p in paths])
    seen: set[tuple[str, str]] = set()
    by_trace: dict[str, list[Span]] = defaultdict(list)
    for path in paths:
        for span in read_spans(path, report, options.host_tags, seen):
            by_trace[span.trace_id].append(span)
    rows: list[dict[str, Any]] = []
    unmapped: dict[str, str] = {}
    for trace_spans in by_trace.values():
        found, children, spans = invocations(trace_spans, trace_spans[0].source.rsplit("#", 1)[0])
        for inv in found:
            row, reason = _measure(inv, children, spans, resolver, options, unmapped)
            if row is None:
                report.dropped[reason] += len(inv.members)
            else:
                rows.append(row)
                report.spans_used += len(inv.members)
                report.invocations += 1
    if unmapped:
        shown = ", ".join(f"{host!r} (e.g. {src})" for host, src in sorted(unmapped.items()))
        raise ProfileError(
            f"Jaeger hosts without a CPU type: {shown}; add them to the --node-types table "
            f'(JSON {{"host": cpu_type}}) or name hosts as scenario nodes {resolver.known_names()}'
        )
    if report.spans_total and not report.spans_used:
        reasons = "; ".join(f"{reason}: {n}" for reason, n in sorted(report.dropped.items()))
        raise ProfileError(
            f"{', '.join(report.files)}: none of the {report.spans_total} Jaeger spans gave a measurement "
            f"(dropped spans by reason: {reasons}); if the processes name their host under another tag than "
            f"{', '.join(options.host_tags)}, pass --host-tag KEY, and map those hosts to CPU types with "
            "--node-types"
        )
    return make_table(rows), report
