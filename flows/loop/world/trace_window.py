"""A rolling trace log: the complete traces of the last N seconds, as a mesh's tracer keeps sending them.

:class:`TraceLog` keeps the first ``max_traces`` requests of a run (what ``reach world measure
--traces`` writes). A live world runs for hours, so :class:`RollingTraceLog` traces every request
and keeps only those whose root span ended within ``window_ms`` of the latest snapshot;
its snapshot method returns them as a :class:`TraceLog` for
:func:`flows.loop.world.traces.write_jaeger`. A trace is complete once its root span (the
endpoint's server span, appended last) is in it; incomplete ones are never written. Used by
:mod:`flows.loop.world_live` (``--traces FILE``), whose file the three stages of ``reach demo``
(:mod:`flows.loop.stages`) ingest as the app's profile. Pure Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flows.loop.world.traces import SpanRecord, TraceLog, write_jaeger


def root_end_ms(trace: list[SpanRecord]) -> float | None:
    """When the trace's root span ended (virtual ms), or None while the request is still running."""
    for span in reversed(trace):
        if span.parent_id is None:
            return span.end_ms
    return None


@dataclass
class RollingTraceLog(TraceLog):
    """Traces every request; a snapshot keeps the complete ones that ended in the last ``window_ms``."""

    window_ms: float = 20_000.0

    def __post_init__(self) -> None:
        if self.window_ms <= 0:
            raise ValueError(f"window_ms={self.window_ms}: the trace window must be positive (e.g. 20000)")

    def open(self) -> list[SpanRecord] | None:
        trace: list[SpanRecord] = []
        self.traces.append(trace)
        return trace

    def snapshot(self, now_ms: float) -> TraceLog:
        """Forget traces that ended before ``now_ms - window_ms``; the complete rest, oldest first."""
        since = now_ms - self.window_ms
        kept, complete = [], []
        for trace in self.traces:
            end = root_end_ms(trace)
            if end is None:
                kept.append(trace)
            elif end >= since:
                kept.append(trace)
                complete.append(list(trace))
        self.traces = kept
        return TraceLog(max_traces=len(complete), traces=complete)

    def write(self, path: Path, now_ms: float, epoch_s: int) -> int:
        """Write the window's complete traces as Jaeger query-API JSON (atomically); how many were written."""
        window = self.snapshot(now_ms)
        write_jaeger(window, path, epoch_s)
        return len(window.traces)
