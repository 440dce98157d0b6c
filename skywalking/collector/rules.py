"""Acceptance rules: would OAP 6.6.0 drop this v6 segment, and is this v3 segment well formed?

Each check is a small pure function over the parsed messages and the inventory (read only) that
yields ``Reason``s; each reason names its section of docs/protocol/sw6.md.
A ``retryable`` reason is one OAP answers by buffering the segment and re-reading it for ~6 s
(docs/protocol/sw6.md §8.2); every other reason drops the segment at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from skywalking.collector.components import COMPONENT_IDS
from skywalking.collector.inventory import DOMAIN_ENDPOINT, Inventory
from skywalking.protocol_v6.gen.common import trace_common_pb2 as tc6
from skywalking.protocol_v6.gen.language_agent_v2 import trace_pb2 as tr6

ENTRY, EXIT = tc6.Entry, tc6.Exit
MQ = tc6.MQ
KNOWN_SPAN_TYPES = frozenset(tc6.SpanType.values())
OPERATION_NAME_THRESHOLD = 500
EPOCH_MS_MIN = 1_420_070_400_000  # 2015-01-01T00:00:00Z
ONE_DAY_MS = 86_400_000


@dataclass(frozen=True)
class Reason:
    rule: str
    text: str
    retryable: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "text": self.text, "retryable": self.retryable}


@dataclass
class V6Context:
    upstream: Any  # trace_common_pb2.UpstreamSegment
    segment: Any  # trace_pb2.SegmentObject
    inventory: Inventory
    now_ms: int


def parse_v6(raw: bytes) -> tuple[Any, Any, list[Reason]]:
    """Parse an UpstreamSegment and its SegmentObject bytes (docs/protocol/sw6.md §8.3)."""
    upstream = tc6.UpstreamSegment()
    try:
        upstream.ParseFromString(raw)
    except Exception as exc:  # protobuf raises DecodeError (or others on some runtimes)
        return None, None, [Reason("unparseable", f"UpstreamSegment bytes not parseable: {exc} "
                                                  "(docs/protocol/sw6.md §8.3)")]
    segment = tr6.SegmentObject()
    try:
        segment.ParseFromString(upstream.segment)
    except Exception as exc:
        return upstream, None, [Reason("unparseable", f"segment bytes not parseable as SegmentObject: {exc} "
                                                      "(docs/protocol/sw6.md §8.3)")]
    return upstream, segment, []


def unique_id(uid: Any) -> str:
    """A UniqueId as OAP writes it: the parts joined with '.'."""
    return ".".join(str(p) for p in uid.idParts)


def _span_label(span: Any) -> str:
    return f"span {span.spanId}"


def _ref_label(span: Any, index: int) -> str:
    return f"span {span.spanId} ref {index}"


# ---------------------------------------------------------------- v6 checks


def check_instance(ctx: V6Context) -> Iterator[Reason]:
    iid = ctx.segment.serviceInstanceId
    if ctx.inventory.instance(iid) is None:
        yield Reason("unknown-instance", f"unknown serviceInstanceId {iid}: \"Cannot recognize service instance id\", "
                                         "segment ignored (docs/protocol/sw6.md §8.4)")


def check_service(ctx: V6Context) -> Iterator[Reason]:
    sid = ctx.segment.serviceId
    if ctx.inventory.service_name(sid) is not None:
        return
    needs = any(s.spanType == ENTRY or (s.spanType == EXIT and (s.peer or s.peerId)) for s in ctx.segment.spans)
    if needs:
        yield Reason("unknown-service", f"unknown serviceId {sid} in a segment with an Entry span or an Exit span "
                                        "with a peer: name look-up NPE (docs/protocol/sw6.md §8.5)")


def check_component(ctx: V6Context) -> Iterator[Reason]:
    for span in ctx.segment.spans:
        if span.componentId != 0 or not span.component:
            continue  # the id wins when set; an unknown integer id is harmless (docs/protocol/sw6.md §8.6)
        name = span.component
        if name not in COMPONENT_IDS:
            yield Reason("component-string", f"{_span_label(span)}: component string {name!r} is not in OAP 6.6.0's "
                                             "component-libraries.yml: NPE (docs/protocol/sw6.md §8.6)")
        elif COMPONENT_IDS[name] == 0:
            yield Reason("component-string", f"{_span_label(span)}: component string {name!r} maps to id 0, never "
                                             "exchanged: buffered, retried, dropped (docs/protocol/sw6.md §8.6)")


def check_global_ids(ctx: V6Context) -> Iterator[Reason]:
    ids = ctx.upstream.globalTraceIds
    if not ids:
        yield Reason("global-trace-id", "no globalTraceIds: stored with a null trace id that no query finds "
                                        "(docs/protocol/sw6.md §8.7)")
    elif not any(len(g.idParts) == 3 for g in ids):
        counts = ", ".join(str(len(g.idParts)) for g in ids)
        yield Reason("global-trace-id", f"no global trace id with exactly 3 idParts (got {counts}): sampler "
                                        "IGNOREs the segment, never stored (docs/protocol/sw6.md §8.7)")


def check_span_zero(ctx: V6Context) -> Iterator[Reason]:
    if not any(s.spanId == 0 for s in ctx.segment.spans):
        yield Reason("no-span-0", "no span with spanId 0: the segment row is filled from span 0 only "
                                  "(docs/protocol/sw6.md §8.8)")


def check_span_types(ctx: V6Context) -> Iterator[Reason]:
    for span in ctx.segment.spans:
        if span.spanType not in KNOWN_SPAN_TYPES:
            yield Reason("span-type", f"{_span_label(span)}: unknown spanType {span.spanType} "
                                      "(docs/protocol/sw6.md §8.9)")


def check_entry_ref_address(ctx: V6Context) -> Iterator[Reason]:
    for span in ctx.segment.spans:
        if span.spanType != ENTRY:
            continue
        for i, ref in enumerate(span.refs):
            if not ref.networkAddress and ref.networkAddressId == 0:
                yield Reason("entry-ref-address", f"Entry span ref without network address ({_ref_label(span, i)}: "
                                                  "no networkAddress / networkAddressId): NPE "
                                                  "(docs/protocol/sw6.md §8.10)")


def check_peer_ids(ctx: V6Context) -> Iterator[Reason]:
    for span in ctx.segment.spans:
        if span.peerId != 0 and ctx.inventory.address_name(span.peerId) is None:
            yield Reason("unknown-peer-id", f"{_span_label(span)}: unknown peerId {span.peerId} "
                                            "(docs/protocol/sw6.md §8.11)")


def check_operation_name_ids(ctx: V6Context) -> Iterator[Reason]:
    for span in ctx.segment.spans:
        oid = span.operationNameId
        if oid != 0 and (span.spanType == ENTRY or span.spanId == 0) and ctx.inventory.endpoint_name(oid) is None:
            yield Reason("unknown-operation-name-id",
                         f"{_span_label(span)}: unknown operationNameId {oid} on an Entry span or span 0 "
                         "(docs/protocol/sw6.md §8.11)")


def check_ref_ids(ctx: V6Context) -> Iterator[Reason]:
    inv = ctx.inventory
    for span in ctx.segment.spans:
        for i, ref in enumerate(span.refs):
            if ref.networkAddressId != 0 and inv.address_name(ref.networkAddressId) is None:
                yield Reason("unknown-network-address-id",
                             f"{_ref_label(span, i)}: unknown networkAddressId {ref.networkAddressId} "
                             "(docs/protocol/sw6.md §8.11)")
            for field in ("parentEndpointId", "entryEndpointId"):
                eid = getattr(ref, field)
                if eid not in (0, -1) and inv.endpoint_name(eid) is None:
                    yield Reason("unknown-endpoint-id", f"{_ref_label(span, i)}: unknown {field} {eid} "
                                                        "(docs/protocol/sw6.md §8.11)")


def check_ref_instances(ctx: V6Context) -> Iterator[Reason]:
    inv = ctx.inventory
    for span in ctx.segment.spans:
        entry_not_mq = span.spanType == ENTRY and span.spanLayer != MQ
        for i, ref in enumerate(span.refs):
            if (entry_not_mq or ref.parentEndpointId == 0) and inv.instance(ref.parentServiceInstanceId) is None:
                yield Reason("unknown-parent-instance",
                             f"{_ref_label(span, i)}: unknown parentServiceInstanceId {ref.parentServiceInstanceId}: "
                             "NPE (docs/protocol/sw6.md §8.12)")
            if ref.entryEndpointId == 0 and inv.instance(ref.entryServiceInstanceId) is None:
                yield Reason("unknown-entry-instance",
                             f"{_ref_label(span, i)}: unknown entryServiceInstanceId {ref.entryServiceInstanceId}: "
                             "NPE (docs/protocol/sw6.md §8.12)")


def check_ref_endpoint_names(ctx: V6Context) -> Iterator[Reason]:
    inv = ctx.inventory
    for span in ctx.segment.spans:
        for i, ref in enumerate(span.refs):
            pairs = (("entryEndpoint", ref.entryEndpointId, ref.entryServiceInstanceId, ref.entryEndpoint),
                     ("parentEndpoint", ref.parentEndpointId, ref.parentServiceInstanceId, ref.parentEndpoint))
            for field, eid, instance_id, name in pairs:
                if eid != 0:
                    continue
                owner = inv.instance_service_id(instance_id)
                if owner is None:
                    continue  # reported by check_ref_instances
                if inv.find_endpoint(owner, name) == 0:
                    what = f"{field} {name!r}" if name else f"empty {field} (looked up as {DOMAIN_ENDPOINT})"
                    yield Reason("ref-endpoint-name",
                                 f"{_ref_label(span, i)}: {what} is not an endpoint of service "
                                 f"{inv.service_name(owner)!r} (looked up, never created) (docs/protocol/sw6.md §8.13)",
                                 retryable=True)


def check_name_exchange(ctx: V6Context) -> Iterator[Reason]:
    """Names OAP creates on demand but whose creation has not completed yet (docs/protocol/sw6.md §8.14)."""
    inv, seg = ctx.inventory, ctx.segment
    if inv.instance(seg.serviceInstanceId) is None or inv.service_name(seg.serviceId) is None:
        return  # no exchange happens for such a segment
    for span in seg.spans:
        if span.peerId == 0 and span.peer and inv.addresses.lookup(span.peer) == 0:
            yield Reason("name-pending", f"{_span_label(span)}: peer {span.peer!r} not registered yet as a network "
                                         "address (created on demand) (docs/protocol/sw6.md §8.14)", retryable=True)
        if span.spanType == ENTRY and span.operationNameId == 0:
            name = span.operationName or DOMAIN_ENDPOINT
            if inv.endpoints.lookup((seg.serviceId, name)) == 0:
                yield Reason("name-pending", f"{_span_label(span)}: Entry operation {name!r} not registered yet as "
                                             "an endpoint (created on demand) (docs/protocol/sw6.md §8.14)",
                             retryable=True)
        for i, ref in enumerate(span.refs):
            if ref.networkAddressId == 0 and ref.networkAddress and inv.addresses.lookup(ref.networkAddress) == 0:
                yield Reason("name-pending", f"{_ref_label(span, i)}: networkAddress {ref.networkAddress!r} not "
                                             "registered yet (created on demand) (docs/protocol/sw6.md §8.14)",
                             retryable=True)


def check_operation_name_length(ctx: V6Context) -> Iterator[Reason]:
    for span in ctx.segment.spans:
        if len(span.operationName) > OPERATION_NAME_THRESHOLD:
            yield Reason("operation-name-length", f"{_span_label(span)}: operationName has {len(span.operationName)} "
                                                  f"characters (> {OPERATION_NAME_THRESHOLD}, the agent's "
                                                  "OPERATION_NAME_THRESHOLD) (docs/protocol/sw6.md §8.15)")


def check_times(ctx: V6Context) -> Iterator[Reason]:
    yield from _times(ctx.segment.spans, ctx.now_ms, "timestamp")


def _times(spans: Any, now_ms: int, rule: str) -> Iterator[Reason]:
    high = now_ms + ONE_DAY_MS
    for span in spans:
        for field in ("startTime", "endTime"):
            value = getattr(span, field)
            if not EPOCH_MS_MIN <= value <= high:
                yield Reason(rule, f"{_span_label(span)}: {field} {value} is not epoch milliseconds "
                                   "(outside 2015-01-01 .. now + 1 day) (docs/protocol/sw6.md §8.16)")


V6Check = Callable[[V6Context], Iterator[Reason]]

#: Every v6 rule, in the order its reasons are listed.
V6_CHECKS: tuple[V6Check, ...] = (
    check_instance, check_service, check_component, check_global_ids, check_span_zero, check_span_types,
    check_entry_ref_address, check_peer_ids, check_operation_name_ids, check_ref_ids, check_ref_instances,
    check_ref_endpoint_names, check_name_exchange, check_operation_name_length, check_times,
)


def check_v6(ctx: V6Context) -> list[Reason]:
    """All reasons OAP 6.6.0 would not store this segment (empty: it would be stored)."""
    reasons: list[Reason] = []
    for check in V6_CHECKS:
        reasons.extend(check(ctx))
    return reasons


# ---------------------------------------------------------------- v3 checks


def check_v3_ids(seg: Any) -> Iterator[Reason]:
    for field in ("traceId", "traceSegmentId", "service", "serviceInstance"):
        if not getattr(seg, field):
            yield Reason("v3-missing-field", f"segment: empty {field} (docs/protocol/sw6.md §9.3)")


def check_v3_span_zero(seg: Any) -> Iterator[Reason]:
    if not any(s.spanId == 0 for s in seg.spans):
        yield Reason("v3-no-span-0", "no span with spanId 0 (docs/protocol/sw6.md §9.3)")


def check_v3_refs(seg: Any) -> Iterator[Reason]:
    fields = ("traceId", "parentTraceSegmentId", "parentService", "parentServiceInstance", "parentEndpoint")
    for span in seg.spans:
        for i, ref in enumerate(span.refs):
            # a CrossThread ref (refType 1) has no peer: only a caller in another process used an address
            required = fields if ref.refType == 1 else (*fields, "networkAddressUsedAtPeer")
            missing = [f for f in required if not getattr(ref, f)]
            if missing:
                yield Reason("v3-ref-field", f"{_ref_label(span, i)}: empty {', '.join(missing)} "
                                             "(docs/protocol/sw6.md §9.3)")
            if ref.parentSpanId < 0:
                yield Reason("v3-ref-field", f"{_ref_label(span, i)}: parentSpanId {ref.parentSpanId} < 0 "
                                             "(docs/protocol/sw6.md §9.3)")


V3_CHECKS: tuple[Callable[[Any], Iterator[Reason]], ...] = (check_v3_ids, check_v3_span_zero, check_v3_refs)


def check_v3(seg: Any) -> list[Reason]:
    reasons: list[Reason] = []
    for check in V3_CHECKS:
        reasons.extend(check(seg))
    return reasons
