"""Segments as JSON-friendly dicts: the same shape for v6 (ids resolved to names) and v3."""

from __future__ import annotations

from typing import Any

from skywalking.collector.components import COMPONENT_IDS, component_name
from skywalking.collector.inventory import Inventory
from skywalking.collector.rules import unique_id
from skywalking.protocol_v6.gen.common import trace_common_pb2 as tc6
from skywalking.protocol_v8.gen.language_agent import Tracing_pb2 as tr3


def _enum_name(enum: Any, value: int) -> str | int:
    try:
        return str(enum.Name(value))
    except ValueError:
        return value  # an unknown value stays a number


def _pairs(pairs: Any) -> list[dict[str, str]]:
    return [{"key": p.key, "value": p.value} for p in pairs]


def _logs(logs: Any) -> list[dict[str, Any]]:
    return [{"time": log.time, "data": _pairs(log.data)} for log in logs]


def trace_id_v6(upstream: Any) -> str | None:
    """The stored trace id: the last global id joined with '.' (docs/protocol/sw6.md §4.3)."""
    return unique_id(upstream.globalTraceIds[-1]) if upstream is not None and upstream.globalTraceIds else None


def _endpoint(inv: Inventory, endpoint_id: int, name: str) -> str | None:
    if endpoint_id == -1:
        return None  # "no real endpoint" (docs/protocol/sw6.md §4.4)
    if endpoint_id != 0:
        return inv.endpoint_name(endpoint_id)
    return name


def _ref_v6(ref: Any, inv: Inventory) -> dict[str, Any]:
    parent_instance = inv.instance(ref.parentServiceInstanceId)
    entry_instance = inv.instance(ref.entryServiceInstanceId)
    address = inv.address_name(ref.networkAddressId) if ref.networkAddressId else ref.networkAddress
    return {
        "refType": _enum_name(tc6.RefType, ref.refType),
        "parentTraceSegmentId": unique_id(ref.parentTraceSegmentId),
        "parentSpanId": ref.parentSpanId,
        "parentService": inv.service_name(parent_instance.attrs["serviceId"]) if parent_instance else None,
        "parentServiceInstance": parent_instance.attrs["name"] if parent_instance else None,
        "parentServiceInstanceId": ref.parentServiceInstanceId,
        "networkAddress": address or None,
        "entryService": inv.service_name(entry_instance.attrs["serviceId"]) if entry_instance else None,
        "entryServiceInstance": entry_instance.attrs["name"] if entry_instance else None,
        "entryEndpoint": _endpoint(inv, ref.entryEndpointId, ref.entryEndpoint),
        "parentEndpoint": _endpoint(inv, ref.parentEndpointId, ref.parentEndpoint),
    }


def _span_v6(span: Any, inv: Inventory) -> dict[str, Any]:
    operation = inv.endpoint_name(span.operationNameId) if span.operationNameId else span.operationName
    peer = inv.address_name(span.peerId) if span.peerId else span.peer
    component_id = span.componentId or COMPONENT_IDS.get(span.component, 0)
    return {
        "spanId": span.spanId,
        "parentSpanId": span.parentSpanId,
        "startTime": span.startTime,
        "endTime": span.endTime,
        "operationName": operation,
        "peer": peer or None,
        "spanType": _enum_name(tc6.SpanType, span.spanType),
        "spanLayer": _enum_name(tc6.SpanLayer, span.spanLayer),
        "componentId": component_id,
        "component": component_name(component_id),
        "isError": span.isError,
        "tags": _pairs(span.tags),
        "logs": _logs(span.logs),
        "refs": [_ref_v6(r, inv) for r in span.refs],
    }


def normalize_v6(upstream: Any, segment: Any, inv: Inventory, received_ms: int) -> dict[str, Any]:
    """An accepted v6 segment with every id resolved to its name."""
    return {
        "protocol": "v6",
        "traceId": trace_id_v6(upstream),
        "globalTraceIds": [unique_id(g) for g in upstream.globalTraceIds],
        "segmentId": unique_id(segment.traceSegmentId),
        "service": inv.service_name(segment.serviceId),
        "serviceId": segment.serviceId,
        "serviceInstance": inv.instance_name(segment.serviceInstanceId),
        "serviceInstanceId": segment.serviceInstanceId,
        "isSizeLimited": segment.isSizeLimited,
        "receivedAt": received_ms,
        "spans": [_span_v6(s, inv) for s in segment.spans],
    }


def _ref_v3(ref: Any) -> dict[str, Any]:
    return {
        "refType": _enum_name(tr3.RefType, ref.refType),
        "traceId": ref.traceId,
        "parentTraceSegmentId": ref.parentTraceSegmentId,
        "parentSpanId": ref.parentSpanId,
        "parentService": ref.parentService,
        "parentServiceInstance": ref.parentServiceInstance,
        "networkAddress": ref.networkAddressUsedAtPeer or None,
        "entryEndpoint": None,  # v3 refs carry no entry endpoint
        "parentEndpoint": ref.parentEndpoint,
    }


def _span_v3(span: Any) -> dict[str, Any]:
    return {
        "spanId": span.spanId,
        "parentSpanId": span.parentSpanId,
        "startTime": span.startTime,
        "endTime": span.endTime,
        "operationName": span.operationName,
        "peer": span.peer or None,
        "spanType": _enum_name(tr3.SpanType, span.spanType),
        "spanLayer": _enum_name(tr3.SpanLayer, span.spanLayer),
        "componentId": span.componentId,
        "isError": span.isError,
        "skipAnalysis": span.skipAnalysis,
        "tags": _pairs(span.tags),
        "logs": _logs(span.logs),
        "refs": [_ref_v3(r) for r in span.refs],
    }


def normalize_v3(segment: Any, received_ms: int) -> dict[str, Any]:
    return {
        "protocol": "v3",
        "traceId": segment.traceId,
        "segmentId": segment.traceSegmentId,
        "service": segment.service,
        "serviceInstance": segment.serviceInstance,
        "isSizeLimited": segment.isSizeLimited,
        "receivedAt": received_ms,
        "spans": [_span_v3(s) for s in segment.spans],
    }


def summary_v6(upstream: Any, segment: Any, inv: Inventory) -> dict[str, Any]:
    """What is known about a (possibly broken) v6 segment, for drop and pending records."""
    if segment is None:
        return {"protocol": "v6", "segmentId": None, "traceId": trace_id_v6(upstream), "service": None}
    span0 = next((s for s in segment.spans if s.spanId == 0), segment.spans[0] if segment.spans else None)
    return {
        "protocol": "v6",
        "segmentId": unique_id(segment.traceSegmentId),
        "traceId": trace_id_v6(upstream),
        "serviceId": segment.serviceId,
        "service": inv.service_name(segment.serviceId),
        "serviceInstanceId": segment.serviceInstanceId,
        "serviceInstance": inv.instance_name(segment.serviceInstanceId),
        "spans": len(segment.spans),
        "firstOperation": (span0.operationName or (f"#{span0.operationNameId}" if span0.operationNameId else ""))
        if span0 is not None else None,
    }


def summary_v3(segment: Any) -> dict[str, Any]:
    span0 = next((s for s in segment.spans if s.spanId == 0), segment.spans[0] if segment.spans else None)
    return {
        "protocol": "v3",
        "segmentId": segment.traceSegmentId,
        "traceId": segment.traceId,
        "service": segment.service,
        "serviceInstance": segment.serviceInstance,
        "spans": len(segment.spans),
        "firstOperation": span0.operationName if span0 is not None else None,
    }
