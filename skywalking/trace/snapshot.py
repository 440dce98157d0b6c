"""Snapshots: what another thread needs to continue a trace (``capture()`` / ``continued()``)."""

from __future__ import annotations

from typing import Any

from skywalking.trace.identity import NAME, SERVICE, Identity
from skywalking.trace.ids import ID
from skywalking.trace.propagation import link_entry_view
from skywalking.trace.segment import InstanceRef, Link, SegmentRef


class Snapshot:
    __slots__ = ("correlation", "endpoint", "entry_endpoint_raw", "entry_instance", "parent_endpoint_raw",
                 "segment_id", "span_id", "trace_id")

    def __init__(self, segment_id: ID | None = None, span_id: int = -1, trace_id: ID | None = None,
                 endpoint: str | None = None, correlation: dict[str, str] | None = None,
                 entry_instance: InstanceRef = 0, entry_endpoint_raw: str = "-1",
                 parent_endpoint_raw: str = "-1") -> None:
        self.segment_id = segment_id
        self.span_id = span_id
        self.trace_id = trace_id
        self.endpoint = endpoint  # first span's operation name (sw8 parent endpoint)
        self.correlation = correlation or {}
        self.entry_instance = entry_instance  # sw6 view, compressed endpoint forms
        self.entry_endpoint_raw = entry_endpoint_raw
        self.parent_endpoint_raw = parent_endpoint_raw

    @classmethod
    def of(cls, link: Link, span_id: int, identity: Identity,
           correlation: dict[str, str] | None = None) -> Snapshot:
        """A snapshot of span ``span_id`` of the segment ``link`` describes (``identity``: its process)."""
        return cls(link.segment_id, span_id, link.trace_id, link.first_op, correlation,
                   *link_entry_view(link, identity))

    def is_valid(self) -> bool:
        return self.segment_id is not None and self.span_id > -1 and self.trace_id is not None

    def is_from_current(self, context: Any) -> bool:
        seg = context.current_segment
        return seg is not None and seg.segment_id == self.segment_id

    def to_ref(self, identity: Identity) -> SegmentRef:
        """A CrossThread ref; the parent is this same process (``identity``)."""
        ref = SegmentRef("CrossThread", self.trace_id, self.segment_id, self.span_id)  # type: ignore[arg-type]
        ref.service = identity[SERVICE]
        ref.service_instance = identity[NAME]
        ref.endpoint = self.endpoint or ""
        ref.parent_instance = identity
        ref.entry_instance = self.entry_instance or identity
        ref.set_endpoints(self.entry_endpoint_raw, self.parent_endpoint_raw)  # sw6 ids win over names
        return ref
