"""One pure function from a finished segment to the v3 ``SegmentObject`` (OAP 8+, sw8)."""

from __future__ import annotations

from collections.abc import Callable

from skywalking import Kind
from skywalking.protocol_v8.gen.common.Common_pb2 import KeyStringValuePair
from skywalking.protocol_v8.gen.language_agent.Tracing_pb2 import Log, SegmentObject, SegmentReference, SpanObject
from skywalking.trace.segment import Segment, SegmentRef
from skywalking.trace.span import Span

SPAN_TYPE = {Kind.Entry: 0, Kind.Exit: 1, Kind.Local: 2}
# the proto SpanType by Kind value (Local 0, Entry 1, Exit 2); members' ``_value_`` is read directly: the ``value``
# property and enum hashing are Python calls, several per span
_SPAN_TYPE_BY_VALUE = tuple(SPAN_TYPE[k] for k in sorted(Kind, key=lambda k: k.value))
REF_TYPE = {"CrossProcess": 0, "CrossThread": 1}


def encode(segment: Segment, service: str, instance: str) -> SegmentObject:
    obj = SegmentObject(traceId=segment.related_traces[0].value, traceSegmentId=segment.segment_id.value,
                        service=service, serviceInstance=instance, isSizeLimited=segment.is_size_limited)
    add = obj.spans.add  # spans are built in place: a span message passed to a constructor would be copied
    for span in segment.spans:
        _span(span, add)
    return obj


def _span(span: Span, add: Callable[..., SpanObject]) -> None:
    s = add(spanId=span.sid, parentSpanId=span.pid, startTime=span.start_time, endTime=span.end_time,
                   operationName=span.op or "", spanType=_SPAN_TYPE_BY_VALUE[span.kind._value_],
                   spanLayer=span.layer._value_, componentId=span.component._value_, isError=span.error_occurred)
    if span.peer:  # v3 keeps the caller's address on entry spans too
        s.peer = span.peer
    for tag in span.tags:
        s.tags.add(key=tag.key, value=tag.val)
    for log in span.logs:
        s.logs.append(Log(time=log.timestamp, data=[KeyStringValuePair(key=i.key, value=i.val) for i in log.items]))
    for ref in span.refs:
        r = _ref(ref)
        if r is not None:
            s.refs.append(r)


def _ref(ref: SegmentRef) -> SegmentReference | None:
    if not ref.service or not ref.service_instance:
        return None  # an sw6 caller: its service is an OAP 6 id, not a name (docs/protocol/sw6.md §9.5)
    return SegmentReference(refType=REF_TYPE[ref.ref_type], traceId=ref.trace_id.value,
                            parentTraceSegmentId=ref.segment_id.value, parentSpanId=ref.span_id,
                            parentService=ref.service, parentServiceInstance=ref.service_instance,
                            parentEndpoint=ref.endpoint, networkAddressUsedAtPeer=ref.client_address)
