"""Segments (the spans of one context in one thread) and their references to parent segments."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from skywalking.trace._record import SlotRecord
from skywalking.trace.identity import NO_IDENTITY, Identity
from skywalking.trace.ids import ID

if TYPE_CHECKING:
    from skywalking.trace.span import Span

# An instance as a ref names it: an id the OAP issued (from an sw6 header), an identity still to be
# registered (from a call inside Ray, or this process), or 0 (unknown: an sw8 caller).
InstanceRef = int | Identity


class SegmentRef(SlotRecord):
    """A link to the parent segment, from a header (CrossProcess) or a snapshot (CrossThread).

    Wire-neutral: it keeps the sw6 view (instances as ``InstanceRef``, ``#``-free names or ids) and the sw8
    view (service and instance names); each encoder uses what its protocol can express.
    """

    __slots__ = ("client_address", "endpoint", "endpoint_id", "entry_endpoint", "entry_endpoint_id",
                 "entry_instance", "parent_instance", "peer_id", "ref_type", "segment_id", "service",
                 "service_instance", "span_id", "trace_id")

    def __init__(self, ref_type: str, trace_id: ID, segment_id: ID, span_id: int) -> None:
        self.ref_type = ref_type  # 'CrossProcess' or 'CrossThread'
        self.trace_id = trace_id
        self.segment_id = segment_id
        self.span_id = span_id
        self.service = ""  # parent service name (sw8 view)
        self.service_instance = ""  # parent instance name (sw8 view)
        self.endpoint = ""  # parent endpoint name
        self.endpoint_id = 0  # parent endpoint id: 0 = use the name, -1 = no real endpoint
        self.client_address = ""  # network address used by the caller (peer)
        self.peer_id = 0  # the same as an OAP network-address id (sw6)
        self.parent_instance: InstanceRef = 0  # sw6 view
        self.entry_instance: InstanceRef = 0
        self.entry_endpoint = ""
        self.entry_endpoint_id = 0

    def set_endpoints(self, entry_raw: str, parent_raw: str) -> None:
        """Set the sw6 endpoint fields from their compressed forms (``#name``, an id, or ``-1``)."""
        if entry_raw.startswith("#"):
            self.entry_endpoint = entry_raw[1:]
        else:
            self.entry_endpoint_id = int(entry_raw)
        if parent_raw.startswith("#"):
            self.endpoint = parent_raw[1:]
        else:
            self.endpoint_id = int(parent_raw)



class Link(NamedTuple):
    """What a context continuing a segment (another thread, a later task, an outbound call) needs of it."""

    trace_id: ID
    segment_id: ID
    first_op: str | None  # the segment's first span's operation name
    first_is_entry: bool
    first_ref: SegmentRef | None  # the first span's first ref (the caller's entry view)


def __getattr__(name: str) -> object:  # upstream's name for the segment of an untraced context
    if name == "NoopSegment":
        from skywalking.trace.noop import _NoopSegment

        return _NoopSegment
    raise AttributeError(name)


class Segment:
    """Finished spans of one context, in finish order (children first, as the Java agent sends)."""

    __slots__ = ("identity", "is_size_limited", "related_traces", "segment_id", "spans", "spool_seq", "timestamp")

    def __init__(self, segment_id: ID, trace_id: ID, timestamp: int, identity: Identity = NO_IDENTITY) -> None:
        self.segment_id = segment_id
        self.related_traces: list[ID] = [trace_id]
        self.spans: list[Span] = []
        self.timestamp = timestamp  # epoch ms
        self.is_size_limited = False
        self.identity = identity  # the process identity when the segment started
        self.spool_seq = 0  # its record in the reporter's spool (0: none)

    def relate(self, trace_id: ID) -> None:
        """Adopt a propagated trace id in place of the generated one."""
        self.related_traces[0] = trace_id

    def archive(self, span: Span) -> None:
        self.spans.append(span)

    def __repr__(self) -> str:
        return f"Segment({self.segment_id}, trace={self.related_traces[0]}, spans={len(self.spans)})"
