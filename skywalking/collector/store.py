"""Accepted segments (bounded, grouped into traces), would-be drops and pending segments.

Not thread-safe: ``app.Collector`` holds its lock around every call.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TraceState:
    segment_ids: list[str] = field(default_factory=list)
    changed_at: float = 0.0  # monotonic time of the last segment
    version: int = 0  # bumped per segment
    printed_version: int = 0


@dataclass
class Pending:
    """A v6 segment OAP would hold in its buffer and re-read (docs/protocol/sw6.md §8.2)."""

    key: int
    upstream: Any  # parsed UpstreamSegment
    segment: Any  # parsed SegmentObject
    received_at: float  # monotonic
    received_ms: int
    deadline: float  # monotonic
    reasons: list[dict[str, Any]]
    summary: dict[str, Any]


class Store:
    def __init__(self, max_segments: int = 100_000, max_drops: int = 10_000) -> None:
        self.max_segments = max_segments
        self.segments: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.traces: dict[str, TraceState] = {}
        self.drops: deque[dict[str, Any]] = deque(maxlen=max_drops)
        self.pending: dict[int, Pending] = {}
        self.evicted = 0

    # -- segments and traces --

    def add_segment(self, doc: dict[str, Any], now: float) -> None:
        """Store ``doc`` (replacing a segment with the same id) and evict the oldest beyond the bound."""
        seg_id = doc["segmentId"]
        if seg_id in self.segments:
            self._unlink(self.segments.pop(seg_id))
        self.segments[seg_id] = doc
        state = self.traces.setdefault(doc["traceId"], TraceState())
        state.segment_ids.append(seg_id)
        state.changed_at = now
        state.version += 1
        while len(self.segments) > self.max_segments:
            _, old = self.segments.popitem(last=False)
            self._unlink(old)
            self.evicted += 1

    def _unlink(self, doc: dict[str, Any]) -> None:
        state = self.traces.get(doc["traceId"])
        if state is None:
            return
        if doc["segmentId"] in state.segment_ids:
            state.segment_ids.remove(doc["segmentId"])
        if not state.segment_ids:
            del self.traces[doc["traceId"]]

    def query(self, service: str | None = None, trace: str | None = None) -> list[dict[str, Any]]:
        if trace is not None:
            docs = self.trace_segments(trace)
        else:
            docs = list(self.segments.values())
        if service is not None:
            docs = [d for d in docs if d.get("service") == service]
        return docs

    def trace_segments(self, trace_id: str) -> list[dict[str, Any]]:
        state = self.traces.get(trace_id)
        return [self.segments[s] for s in state.segment_ids] if state else []

    def trace_summaries(self) -> list[dict[str, Any]]:
        out = []
        for trace_id, state in self.traces.items():
            docs = [self.segments[s] for s in state.segment_ids]
            starts = [sp["startTime"] for d in docs for sp in d["spans"]]
            out.append({"traceId": trace_id, "segments": len(docs),
                        "services": sorted({d.get("service") or "?" for d in docs}),
                        "startTime": min(starts) if starts else None})
        out.sort(key=lambda t: (t["startTime"] is None, t["startTime"] or 0, t["traceId"]))
        return out

    def due_traces(self, now: float, quiet: float) -> list[tuple[str, list[dict[str, Any]], bool]]:
        """Traces quiet for ``quiet`` seconds with segments not printed yet: (traceId, segments, is_reprint)."""
        due = []
        for trace_id, state in self.traces.items():
            if state.version != state.printed_version and now - state.changed_at >= quiet:
                due.append((trace_id, self.trace_segments(trace_id), state.printed_version != 0))
                state.printed_version = state.version
        return due

    # -- drops --

    def add_drop(self, record: dict[str, Any]) -> None:
        self.drops.append(record)

    def clear(self) -> None:
        """Forget stored segments and drops (pending segments and the inventory stay)."""
        self.segments.clear()
        self.traces.clear()
        self.drops.clear()
