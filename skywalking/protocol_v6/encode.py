"""One pure function from a finished segment to the v2 ``UpstreamSegment`` OAP 6.6.0 accepts.

What OAP 6.6.0 needs (spec §0.1, §2.10, §8) and how it is met here:

* only the integer ``componentId`` is sent, never the ``component`` string;
* ids are the segment's three int64 parts; one global trace id, or several for a segment that joined
  several traces (a batch), the primary one last (the OAP files the segment under the last);
* ``serviceId`` / ``serviceInstanceId`` and the instances refs point at are ids the OAP issued (``Ids``),
  looked up from the identities the segment names at the time it is encoded; a segment naming an identity
  without ids yet is not encoded (``Unresolved``, which lists them: the reporter registers them and
  encodes the segment again);
* names are sent as strings unless the OAP has issued an id for them: entry-span operation names
  (endpoints) and exit-span peers (network addresses);
* refs that cannot be expressed in v2 (made from an sw8 header: no instance id) are left out, and an
  entry span never carries a ref without a network address;
* operation names are at most 500 characters (the core cuts them), times are epoch milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from skywalking import Kind
from skywalking.protocol_v6.gen.common.common_pb2 import KeyStringValuePair
from skywalking.protocol_v6.gen.common.trace_common_pb2 import UniqueId, UpstreamSegment
from skywalking.protocol_v6.gen.language_agent_v2.trace_pb2 import Log, SegmentObject, SegmentReference, SpanObjectV2
from skywalking.trace.identity import UUID, Identity, Unresolved
from skywalking.trace.segment import InstanceRef, Segment, SegmentRef
from skywalking.trace.span import Span

SPAN_TYPE = {Kind.Entry: 0, Kind.Exit: 1, Kind.Local: 2}  # proto SpanType
# the same by Kind value (Local 0, Entry 1, Exit 2); members' ``_value_`` is read directly: the ``value`` property
# and enum hashing are Python calls, several per span
_SPAN_TYPE_BY_VALUE = tuple(SPAN_TYPE[k] for k in sorted(Kind, key=lambda k: k.value))
_ENTRY, _EXIT = Kind.Entry, Kind.Exit
REF_TYPE = {"CrossProcess": 0, "CrossThread": 1}


@dataclass(frozen=True)
class Ids:
    """What the OAP has issued: instance UUID -> (service id, instance id); names issued for the endpoints
    of ``endpoint_service_id`` and for network addresses."""

    instances: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    endpoint_service_id: int = 0
    endpoints: Mapping[str, int] = field(default_factory=dict)  # entry-span operation name -> endpoint id
    addresses: Mapping[str, int] = field(default_factory=dict)  # exit-span peer -> network address id


def encode(segment: Segment, ids: Ids) -> UpstreamSegment:
    """``segment`` as an ``UpstreamSegment``. Raises ``Unresolved`` if it names an identity without ids."""
    missing: list[Identity] = []
    own = ids.instances.get(segment.identity[UUID])
    if own is None:
        missing.append(segment.identity)
    for span in segment.spans:
        for ref in span.refs:
            for instance in (ref.parent_instance, ref.entry_instance):
                if type(instance) is tuple and instance[UUID] not in ids.instances and instance not in missing:
                    missing.append(instance)
    if missing:
        raise Unresolved(missing)
    service_id, instance_id = own  # type: ignore[misc]
    endpoints = ids.endpoints if service_id == ids.endpoint_service_id else {}
    obj = SegmentObject(traceSegmentId=UniqueId(idParts=segment.segment_id.parts), serviceId=service_id,
                        serviceInstanceId=instance_id, isSizeLimited=segment.is_size_limited)
    add = obj.spans.add  # spans are built in place: a span message passed to a constructor would be copied
    for span in segment.spans:
        _span(span, ids, endpoints, add)
    traces = segment.related_traces  # the primary trace last: the OAP files the segment under the last one
    ids = [UniqueId(idParts=t.parts) for t in (*traces[1:], traces[0]) if t.parts is not None]
    return UpstreamSegment(globalTraceIds=ids,
                           segment=obj.SerializeToString())


def _span(span: Span, ids: Ids, endpoints: Mapping[str, int], add: Callable[..., SpanObjectV2]) -> None:
    kind = span.kind
    op = span.op or ""
    op_id = endpoints.get(op, 0) if kind is _ENTRY else 0
    peer = span.peer if kind is _EXIT and span.peer else ""  # an entry span's peer would become an OAP 6 address
    peer_id = ids.addresses.get(peer, 0) if peer else 0
    # one call with every field: an id and its name are exclusive, and proto3 leaves zero and "" out of the bytes
    s = add(spanId=span.sid, parentSpanId=span.pid, startTime=span.start_time, endTime=span.end_time,
            spanType=_SPAN_TYPE_BY_VALUE[kind._value_], spanLayer=span.layer._value_,
            componentId=span.component._value_, isError=span.error_occurred, operationNameId=op_id,
            operationName="" if op_id else op, peerId=peer_id, peer="" if peer_id else peer)
    for tag in span.tags:
        s.tags.add(key=tag.key, value=tag.val)
    for log in span.logs:
        s.logs.append(Log(time=log.timestamp, data=[KeyStringValuePair(key=i.key, value=i.val) for i in log.items]))
    for ref in span.refs:
        r = _ref(ref, kind is _ENTRY, ids)
        if r is not None:
            s.refs.append(r)


def _instance_id(instance: InstanceRef, ids: Ids) -> int:
    if type(instance) is tuple:
        return ids.instances[instance[UUID]][1]
    return instance  # type: ignore[return-value]


def _ref(ref: SegmentRef, on_entry: bool, ids: Ids) -> SegmentReference | None:
    if not ref.parent_instance or ref.segment_id.parts is None:
        return None  # an sw8 caller: no OAP 6 instance id to point at (spec §4.4)
    if on_entry and not ref.client_address and not ref.peer_id:
        return None  # OAP 6.6.0 drops the whole segment for such a ref (§0.1 item 9, §8.5)
    parent = _instance_id(ref.parent_instance, ids)
    r = SegmentReference(refType=REF_TYPE[ref.ref_type], parentTraceSegmentId=UniqueId(idParts=ref.segment_id.parts),
                         parentSpanId=ref.span_id, parentServiceInstanceId=parent,
                         entryServiceInstanceId=_instance_id(ref.entry_instance, ids) if ref.entry_instance
                         else parent)
    if ref.peer_id:
        r.networkAddressId = ref.peer_id
    elif ref.client_address:
        r.networkAddress = ref.client_address
    if ref.entry_endpoint_id:
        r.entryEndpointId = ref.entry_endpoint_id
    elif ref.entry_endpoint:
        r.entryEndpoint = ref.entry_endpoint
    else:
        r.entryEndpointId = -1
    if ref.endpoint_id:
        r.parentEndpointId = ref.endpoint_id
    elif ref.endpoint:
        r.parentEndpoint = ref.endpoint
    else:
        r.parentEndpointId = -1
    return r


def names_to_register(segments: Iterable[Segment]) -> tuple[set[str], set[str]]:
    """(entry-span operation names, exit-span peers) of segments: what the agent registers."""
    endpoints: set[str] = set()
    peers: set[str] = set()
    for segment in segments:
        for s in segment.spans:
            if s.kind is _ENTRY:
                if s.op:
                    endpoints.add(s.op)
            elif s.kind is _EXIT and s.peer:
                peers.add(s.peer)
    return endpoints, peers
