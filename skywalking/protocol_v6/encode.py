"""One pure function from a finished segment to the bytes of the v2 ``UpstreamSegment`` OAP 6.6.0 accepts.

What OAP 6.6.0 needs (docs/protocol/sw6.md §8) and how it is met here:

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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from skywalking import Kind
from skywalking.protocol_v6.gen.common.common_pb2 import KeyStringValuePair
from skywalking.protocol_v6.gen.common.trace_common_pb2 import UniqueId
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


def encode(segment: Segment, ids: Ids) -> bytes:
    """``segment`` as the bytes of an ``UpstreamSegment``. Raises ``Unresolved`` if it names an identity without
    ids.

    The bytes are those protobuf would write for the same messages (fields in number order, proto3 defaults
    left out), assembled by hand around small protobuf-encoded parts: a span's fields that only depend on its
    name, peer, kind, layer and component are encoded once per distinct combination and reused."""
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
    own_parts = segment.segment_id.parts
    own_id = _message(1, _unique_id(own_parts))
    parts = [own_id]
    for span in segment.spans:
        body = _span(span, ids, endpoints)
        n = len(body)
        parts.append(b"\x12" + (_BYTE[n] if n < 0x80 else _varint(n)) + body)
    tail = _SEGMENT_TAIL.get((service_id, instance_id, segment.is_size_limited))
    if tail is None:
        tail = _remember(_SEGMENT_TAIL, (service_id, instance_id, segment.is_size_limited), SegmentObject(
            serviceId=service_id, serviceInstanceId=instance_id, isSizeLimited=segment.is_size_limited
        ).SerializeToString())
    parts.append(tail)
    traces = segment.related_traces  # the primary trace last: the OAP files the segment under the last one
    out = [own_id if t.parts == own_parts else _message(1, _unique_id(t.parts))  # a trace's first segment: the same id
           for t in (*traces[1:], traces[0]) if t.parts is not None]
    out.append(_message(2, b"".join(parts)))
    return b"".join(out)


_CACHE_MAX = 4096  # distinct entries per cache; cleared when full (names are bounded by the OAP's rules anyway)
_SPAN_CONST: dict[tuple[Any, ...], bytes] = {}  # fields 6-13 of a span
_SEGMENT_TAIL: dict[tuple[int, int, bool], bytes] = {}  # fields 3-5 of a segment
_TAG_KEY: dict[str, bytes] = {}  # a tag's key field
_ERROR = b"\x70\x01"  # isError = true (field 14)


def _remember(cache: dict[Any, bytes], key: Any, value: bytes) -> bytes:
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[key] = value
    return value


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _BYTE[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_BYTE = [bytes((i,)) for i in range(0x80)]


def _message(field: int, body: bytes) -> bytes:
    """A length-delimited field (field numbers below 16: a one-byte key)."""
    n = len(body)
    return _BYTE[(field << 3) | 2] + (_BYTE[n] if n < 0x80 else _varint(n)) + body


def _unique_id(parts: tuple[int, int, int] | None) -> bytes:
    return UniqueId(idParts=parts).SerializeToString()


def _span(span: Span, ids: Ids, endpoints: Mapping[str, int]) -> bytes:
    kind = span.kind
    op = span.op or ""
    op_id = endpoints.get(op, 0) if kind is _ENTRY else 0
    peer = span.peer if kind is _EXIT and span.peer else ""  # an entry span's peer would become an OAP 6 address
    peer_id = ids.addresses.get(peer, 0) if peer else 0
    key = (op_id, op, peer_id, peer, kind._value_, span.layer._value_, span.component._value_)
    const = _SPAN_CONST.get(key)
    if const is None:
        # an id and its name are exclusive, and proto3 leaves zero and "" out of the bytes
        const = _remember(_SPAN_CONST, key, SpanObjectV2(
            operationNameId=op_id, operationName="" if op_id else op, peerId=peer_id, peer="" if peer_id else peer,
            spanType=_SPAN_TYPE_BY_VALUE[kind._value_], spanLayer=span.layer._value_,
            componentId=span.component._value_).SerializeToString())
    out = [SpanObjectV2(spanId=span.sid, parentSpanId=span.pid, startTime=span.start_time,
                        endTime=span.end_time).SerializeToString()]
    for ref in span.refs:  # field 5
        r = _ref(ref, kind is _ENTRY, ids)
        if r is not None:
            out.append(_message(5, r.SerializeToString()))
    out.append(const)
    if span.error_occurred:
        out.append(_ERROR)
    for tag in span.tags:  # field 15: a KeyStringValuePair
        k = _TAG_KEY.get(tag.key)
        if k is None:
            k = _remember(_TAG_KEY, tag.key, _message(1, tag.key.encode()))
        body = k + _message(2, tag.val.encode()) if tag.val else k
        out.append(b"\x7a" + _varint(len(body)) + body)
    for log in span.logs:  # field 16: a two-byte key
        body = Log(time=log.timestamp, data=[KeyStringValuePair(key=i.key, value=i.val) for i in log.items]
                   ).SerializeToString()
        out.append(b"\x82\x01" + _varint(len(body)) + body)
    return b"".join(out)


def _instance_id(instance: InstanceRef, ids: Ids) -> int:
    if type(instance) is tuple:
        return ids.instances[instance[UUID]][1]
    return instance  # type: ignore[return-value]


def _ref(ref: SegmentRef, on_entry: bool, ids: Ids) -> SegmentReference | None:
    if not ref.parent_instance or ref.segment_id.parts is None:
        return None  # an sw8 caller: no OAP 6 instance id to point at (docs/protocol/sw6.md §9.5)
    if on_entry and not ref.client_address and not ref.peer_id:
        return None  # OAP 6.6.0 drops the whole segment for such a ref (docs/protocol/sw6.md §8.10)
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
