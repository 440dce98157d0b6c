"""The bundled collector (skywalking.collector) over real gRPC and HTTP, with hand-built messages.

Section numbers refer to docs/protocol/sw6.md; byte strings are the golden wire vectors of
tests/fixtures/wire/ (see its README).
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from skywalking.protocol_v6.gen.common import common_pb2 as c6
from skywalking.protocol_v6.gen.common import trace_common_pb2 as tc6
from skywalking.protocol_v6.gen.language_agent_v2 import trace_pb2 as tr6
from skywalking.protocol_v6.gen.register import InstancePing_pb2 as ping6
from skywalking.protocol_v6.gen.register import Register_pb2 as reg
from skywalking.protocol_v8.gen.common import Common_pb2 as c3
from skywalking.protocol_v8.gen.language_agent import Tracing_pb2 as tr3
from skywalking.protocol_v8.gen.management import Management_pb2 as mgmt3
from tests.protocol.conftest import CollectorProcess, wait_until

SERVICE = "/Register/doServiceRegister"
INSTANCE = "/Register/doServiceInstanceRegister"
ENDPOINT = "/Register/doEndpointRegister"
ADDRESS = "/Register/doNetworkAddressRegister"
MAPPING = "/Register/doServiceAndNetworkAddressMappingRegister"
PING = "/ServiceInstancePing/doPing"
COLLECT = "/TraceSegmentReportService/collect"
V3_COLLECT = "/skywalking.v3.TraceSegmentReportService/collect"
V3_SYNC = "/skywalking.v3.TraceSegmentReportService/collectInSync"
V3_PROPS = "/skywalking.v3.ManagementService/reportInstanceProperties"
V3_KEEPALIVE = "/skywalking.v3.ManagementService/keepAlive"

WIRE = Path(__file__).resolve().parents[1] / "fixtures" / "wire"


def _vector(file: str, name: str) -> bytes:
    with open(WIRE / f"{file}.json", encoding="utf-8") as f:
        return bytes.fromhex(json.load(f)["vectors"][name]["hex"])


GOLDEN_UPSTREAM = _vector("v2-trace", "upstream_segment")
GOLDEN_INSTANCES = _vector("v2-register", "service_instances")
GOLDEN_V3_SEGMENT = _vector("v3-trace", "segment_object")

_seq = itertools.count(1)


# ------------------------------------------------------------------ helpers


def _first(pairs: Any, key: str) -> int:
    return next((p.value for p in pairs if p.key == key), 0)


def register_service(c: CollectorProcess, name: str) -> int:
    req = reg.Services(services=[reg.Service(serviceName=name)])
    return wait_until(lambda: _first(c.unary(SERVICE, req, reg.ServiceRegisterMapping).services, name),
                      what=f"service {name}")


def register_instance(c: CollectorProcess, service_id: int, instance_uuid: str,
                      properties: tuple[tuple[str, str], ...] = ()) -> int:
    req = reg.ServiceInstances(instances=[reg.ServiceInstance(
        serviceId=service_id, instanceUUID=instance_uuid, time=int(time.time() * 1000),
        properties=[c6.KeyStringValuePair(key=k, value=v) for k, v in properties])])
    return wait_until(lambda: _first(c.unary(INSTANCE, req, reg.ServiceInstanceRegisterMapping).serviceInstances,
                                     instance_uuid), what=f"instance {instance_uuid}")


def register_endpoint(c: CollectorProcess, service_id: int, name: str) -> int:
    req = reg.Endpoints(endpoints=[reg.Endpoint(serviceId=service_id, endpointName=name, **{"from": c6.server})])

    def probe() -> int:
        elements = c.unary(ENDPOINT, req, reg.EndpointMapping).elements
        return next((e.endpointId for e in elements if e.endpointName == name), 0)

    return wait_until(probe, what=f"endpoint {name}")


def register_address(c: CollectorProcess, address: str) -> int:
    req = reg.NetAddresses(addresses=[address])
    return wait_until(lambda: _first(c.unary(ADDRESS, req, reg.NetAddressMapping).addressIds, address),
                      what=f"address {address}")


@dataclass
class Agent:
    service: str
    sid: int
    iid: int


def new_agent(c: CollectorProcess, prefix: str = "svc") -> Agent:
    name = f"{prefix}-{next(_seq)}"
    sid = register_service(c, name)
    return Agent(name, sid, register_instance(c, sid, uuid.uuid4().hex))


def now_ms() -> int:
    return int(time.time() * 1000)


def span(span_id: int = 0, parent: int = -1, kind: int = tc6.Local, op: str = "op", **fields: Any) -> Any:
    start = now_ms() - 20
    values: dict[str, Any] = {"spanId": span_id, "parentSpanId": parent, "spanType": kind, "operationName": op,
                              "startTime": start, "endTime": start + 15}
    values.update(fields)
    return tr6.SpanObjectV2(**values)


def uid(*parts: int) -> Any:
    return tc6.UniqueId(idParts=list(parts))


@dataclass
class Built:
    raw: bytes
    segment_id: str
    trace_id: str | None


def build(a: Agent, spans: list[Any], trace: Any = "default", seg_id: Any = None, service_id: int | None = None,
          instance_id: int | None = None, segment_bytes: bytes | None = None) -> Built:
    """An UpstreamSegment with unique trace and segment ids (override any part to break a rule)."""
    n = next(_seq)
    seg_uid = seg_id or uid(a.iid, 7, n)
    trace_ids = [uid(a.iid, 8, n)] if trace == "default" else trace
    segment = tr6.SegmentObject(traceSegmentId=seg_uid, spans=spans,
                                serviceId=a.sid if service_id is None else service_id,
                                serviceInstanceId=a.iid if instance_id is None else instance_id)
    up = tc6.UpstreamSegment(globalTraceIds=trace_ids,
                             segment=segment.SerializeToString() if segment_bytes is None else segment_bytes)
    trace_id = ".".join(map(str, trace_ids[-1].idParts)) if trace_ids else None
    return Built(up.SerializeToString(), ".".join(map(str, seg_uid.idParts)), trace_id)


def send(c: CollectorProcess, *raws: bytes) -> None:
    reply = c.stream(COLLECT, list(raws), c6.Commands)
    assert list(reply.commands) == []  # OAP answers one empty Commands per stream


def find_drop(c: CollectorProcess, built: Built, timeout: float = 5.0) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        for drop in c.api("/api/drops"):
            seg = drop["segment"]
            if seg.get("segmentId") == built.segment_id or (built.trace_id and seg.get("traceId") == built.trace_id):
                return drop
        return None

    return wait_until(probe, timeout, what=f"drop of {built.segment_id}")


def find_segment(c: CollectorProcess, segment_id: str, timeout: float = 5.0) -> dict[str, Any]:
    return wait_until(lambda: next((s for s in c.api("/api/segments") if s["segmentId"] == segment_id), None),
                      timeout, what=f"stored segment {segment_id}")


def local_ref(a: Agent, **fields: Any) -> Any:
    """A CrossThread ref that needs no lookups: both endpoint ids -1 (docs/protocol/sw6.md §4.4)."""
    values: dict[str, Any] = {"refType": tc6.CrossThread, "parentTraceSegmentId": uid(a.iid, 1, 1),
                              "parentSpanId": 0, "parentServiceInstanceId": a.iid, "entryServiceInstanceId": a.iid,
                              "entryEndpointId": -1, "parentEndpointId": -1}
    values.update(fields)
    return tr6.SegmentReference(**values)


# ------------------------------------------------------------------ registration (docs/protocol/sw6.md §5)


def test_async_service_registration(collector: CollectorProcess) -> None:
    name = f"async-{next(_seq)}"
    req = reg.Services(services=[reg.Service(serviceName=name)])
    first = collector.unary(SERVICE, req, reg.ServiceRegisterMapping)
    assert list(first.services) == []  # 0 while creation is pending: left out (docs/protocol/sw6.md §5.1)
    sid = wait_until(lambda: _first(collector.unary(SERVICE, req, reg.ServiceRegisterMapping).services, name))
    assert sid >= 2  # 1 is the built-in User (docs/protocol/sw6.md §5.1)
    assert _first(collector.unary(SERVICE, req, reg.ServiceRegisterMapping).services, name) == sid
    assert register_service(collector, name + "-other") not in (0, sid)


def test_instance_dedup_properties_and_name(collector: CollectorProcess) -> None:
    sid = register_service(collector, f"inst-{next(_seq)}")
    golden = reg.ServiceInstances.FromString(GOLDEN_INSTANCES)
    golden.instances[0].serviceId = sid
    golden.instances[0].instanceUUID = instance_uuid = uuid.uuid4().hex
    iid = wait_until(lambda: _first(collector.unary(INSTANCE, golden, reg.ServiceInstanceRegisterMapping)
                                    .serviceInstances, instance_uuid))
    assert iid >= 2
    again = collector.unary(INSTANCE, golden, reg.ServiceInstanceRegisterMapping)
    assert _first(again.serviceInstances, instance_uuid) == iid  # de-duplicated by (serviceId, uuid)
    other = register_instance(collector, sid, uuid.uuid4().hex)
    assert other not in (0, iid)

    instances = {i["id"]: i for i in collector.api("/api/inventory")["instances"]}
    service = instances[iid]["service"]
    assert instances[iid]["name"] == f"{service}-pid:42@h1"
    assert instances[iid]["properties"] == {"os_name": "Linux", "host_name": "h1", "process_no": "42",
                                            "language": "python", "ipv4s": '["10.0.0.1","10.0.0.2"]'}
    assert instances[other]["name"] == service and instances[other]["properties"] == {"ipv4s": "[]"}


def test_instance_of_unknown_service_fails_with_unknown(collector: CollectorProcess) -> None:
    req = reg.ServiceInstances(instances=[reg.ServiceInstance(serviceId=98765, instanceUUID="x")])
    with pytest.raises(grpc.RpcError) as err:
        collector.unary(INSTANCE, req, reg.ServiceInstanceRegisterMapping)
    assert err.value.code() == grpc.StatusCode.UNKNOWN


def test_client_side_endpoint_is_not_registered(collector: CollectorProcess) -> None:
    a = new_agent(collector)
    name = f"/client-{next(_seq)}"
    req = reg.Endpoints(endpoints=[reg.Endpoint(serviceId=a.sid, endpointName=name)])  # from defaults to client
    assert list(collector.unary(ENDPOINT, req, reg.EndpointMapping).elements) == []
    time.sleep(0.3)  # longer than the register delay: it still never appears
    assert list(collector.unary(ENDPOINT, req, reg.EndpointMapping).elements) == []
    assert name not in {e["name"] for e in collector.api("/api/inventory")["endpoints"]}
    eid = register_endpoint(collector, a.sid, name)  # from=server is accepted
    assert eid >= 2


def test_address_and_mapping_registration(collector: CollectorProcess) -> None:
    a = new_agent(collector)
    address = f"10.1.1.{next(_seq) % 250}:{next(_seq)}"
    aid = register_address(collector, address)
    assert aid >= 2 and register_address(collector, address) == aid

    def mapping(service_id: int, instance_id: int) -> Any:
        return reg.ServiceAndNetworkAddressMappings(mappings=[reg.ServiceAndNetworkAddressMapping(
            serviceId=service_id, serviceInstanceId=instance_id, networkAddress=address)])

    with pytest.raises(grpc.RpcError) as err:  # serviceId 0 and instance 0: fails (docs/protocol/sw6.md §5.6)
        collector.unary(MAPPING, mapping(0, 0), c6.Commands)
    assert err.value.code() == grpc.StatusCode.UNKNOWN
    assert list(collector.unary(MAPPING, mapping(0, a.iid), c6.Commands).commands) == []  # skipped
    assert collector.unary(MAPPING, mapping(a.sid, 0), c6.Commands) == c6.Commands()
    addresses = {x["address"]: x for x in collector.api("/api/inventory")["addresses"]}
    assert addresses[address]["mappedService"] == a.service


# ------------------------------------------------------------------ ping and reset (docs/protocol/sw6.md §6)


def _ping(c: CollectorProcess, instance_id: int) -> Any:
    return c.unary(PING, ping6.ServiceInstancePingPkg(serviceInstanceId=instance_id, time=now_ms(),
                                                       serviceInstanceUUID="u"), c6.Commands)


def _assert_reset(commands: Any) -> None:
    assert len(commands.commands) == 1
    cmd = commands.commands[0]
    assert cmd.command == "ServiceMetadataReset"
    assert [a.key for a in cmd.args] == ["SerialNumber"]
    uuid.UUID(cmd.args[0].value)


def test_ping_unknown_and_known_instance(collector: CollectorProcess) -> None:
    _assert_reset(_ping(collector, 424242))
    a = new_agent(collector)
    assert list(_ping(collector, a.iid).commands) == []
    inst = next(i for i in collector.api("/api/inventory")["instances"] if i["id"] == a.iid)
    assert abs(inst["lastHeartbeat"] - now_ms()) < 10_000
    assert collector.api("/api/stats")["resetsSent"] >= 1


def test_reset_makes_known_instance_get_reset_command(start_collector: Callable[..., CollectorProcess]) -> None:
    c = start_collector()
    a = new_agent(c)
    assert list(_ping(c, a.iid).commands) == []
    assert c.api("/api/reset", "POST")["ok"] is True
    _assert_reset(_ping(c, a.iid))
    inventory = c.api("/api/inventory")
    assert [s["name"] for s in inventory["services"]] == ["User"]
    stats = c.api("/api/stats")
    assert stats["resetsSent"] == 1 and stats["inventoryResets"] == 1 and stats["pings"] == 2


# ------------------------------------------------------------------ segments: the golden vector


def test_golden_segment_drops_then_is_accepted(start_collector: Callable[..., CollectorProcess]) -> None:
    c = start_collector("--register-delay", "0.2")
    send(c, GOLDEN_UPSTREAM)  # nothing registered yet
    drop = wait_until(lambda: c.api("/api/drops"))[0]
    assert set(drop["rules"]) == {"unknown-instance", "unknown-service", "unknown-endpoint-id", "ref-endpoint-name"}
    assert drop["segment"]["segmentId"] == "2.45.15770000000000000" and drop["segment"]["traceId"] == "3.4.5"

    sid = register_service(c, "golden-svc")
    golden = reg.ServiceInstances.FromString(GOLDEN_INSTANCES)
    assert (sid, register_instance(c, sid, golden.instances[0].instanceUUID)) == (2, 2)
    assert register_instance(c, sid, "second") == 3  # the segment's serviceInstanceId
    names = ["/api"] + [f"/e{i}" for i in range(121)]  # endpoint ids 2..123; the ref's parentEndpointId is 123
    endpoints = reg.Endpoints(endpoints=[reg.Endpoint(serviceId=sid, endpointName=n, **{"from": c6.server})
                                         for n in names])
    c.unary(ENDPOINT, endpoints, reg.EndpointMapping)
    assert len(wait_until(lambda: c.unary(ENDPOINT, endpoints, reg.EndpointMapping).elements)) == len(names)
    register_endpoint(c, 1, "/portal")  # entryEndpoint of entryServiceInstanceId 1 (the built-in User)

    send(c, GOLDEN_UPSTREAM)
    seg = find_segment(c, "2.45.15770000000000000")
    assert (seg["protocol"], seg["traceId"], seg["service"], seg["serviceInstance"]) == ("v6", "3.4.5",
                                                                                         "golden-svc", "golden-svc")
    entry, exit_ = seg["spans"]
    assert (entry["spanType"], entry["operationName"], entry["spanLayer"], entry["componentId"]) == \
        ("Entry", "/api", "Http", 7014)
    assert entry["tags"] == [{"key": "http.method", "value": "GET"}]
    assert entry["refs"] == [{"refType": "CrossProcess", "parentTraceSegmentId": "1.2.3", "parentSpanId": 4,
                              "parentService": "User", "parentServiceInstance": "User",
                              "parentServiceInstanceId": 1, "networkAddress": "127.0.0.1:8080",
                              "entryService": "User", "entryServiceInstance": "User", "entryEndpoint": "/portal",
                              "parentEndpoint": "/e120"}]
    assert (exit_["spanType"], exit_["peer"], exit_["isError"], exit_["parentSpanId"]) == \
        ("Exit", "127.0.0.1:9090", True, 0)
    assert exit_["logs"] == [{"time": 1577000000200, "data": [{"key": "event", "value": "error"},
                                                               {"key": "message", "value": "boom"}]}]
    # names a segment carries are created on receipt, as OAP does (docs/protocol/sw6.md §5.4, §5.5)
    assert {"127.0.0.1:8080", "127.0.0.1:9090"} <= {x["address"] for x in c.api("/api/inventory")["addresses"]}
    stats = c.api("/api/stats")
    assert (stats["segmentsReceived"], stats["segmentsAccepted"], stats["segmentsDropped"]) == (2, 1, 1)


# ------------------------------------------------------------------ segments: one test per drop rule


def _entry_ref(a: Agent, **fields: Any) -> Any:
    values: dict[str, Any] = {"refType": tc6.CrossProcess, "parentTraceSegmentId": uid(a.iid, 1, 1),
                              "parentSpanId": 1, "parentServiceInstanceId": a.iid, "networkAddress": "10.9.9.9:80",
                              "entryServiceInstanceId": a.iid, "entryEndpointId": -1, "parentEndpointId": -1}
    values.update(fields)
    return tr6.SegmentReference(**values)


DROP_CASES: dict[str, tuple[Callable[[Agent], Built], str, str]] = {
    "unparseable": (lambda a: build(a, [], segment_bytes=b"\x0a\xff\xff"), "unparseable", "not parseable"),
    "unknown instance": (lambda a: build(a, [span()], instance_id=987654), "unknown-instance",
                         "unknown serviceInstanceId 987654"),
    "unknown service": (lambda a: build(a, [span(kind=tc6.Entry, op="/x")], service_id=987654),
                        "unknown-service", "unknown serviceId 987654"),
    "component string unknown": (lambda a: build(a, [span(component="Flask")]), "component-string", "'Flask'"),
    "component string N/A": (lambda a: build(a, [span(component="N/A")]), "component-string", "'N/A'"),
    "no global trace id": (lambda a: build(a, [span()], trace=[]), "global-trace-id", "no globalTraceIds"),
    "global id with 2 parts": (lambda a: build(a, [span()], trace=[uid(1, next(_seq))]), "global-trace-id",
                               "exactly 3 idParts"),
    "no span 0": (lambda a: build(a, [span(span_id=1, parent=-1)]), "no-span-0", "no span with spanId 0"),
    "unknown span type": (lambda a: build(a, [span(spanType=7)]), "span-type", "unknown spanType 7"),
    "entry ref without address": (lambda a: build(a, [span(kind=tc6.Entry, op="/e", refs=[
        _entry_ref(a, networkAddress="")])]), "entry-ref-address", "Entry span ref without network address"),
    "cross-thread ref on entry span": (lambda a: build(a, [span(kind=tc6.Entry, op="/e", refs=[
        local_ref(a)])]), "entry-ref-address", "Entry span ref without network address"),
    "unknown peerId": (lambda a: build(a, [span(), span(1, 0, tc6.Exit, peerId=987654)]), "unknown-peer-id",
                       "unknown peerId 987654"),
    "unknown operationNameId": (lambda a: build(a, [span(operationNameId=987654, operationName="")]),
                                "unknown-operation-name-id", "unknown operationNameId 987654"),
    "unknown networkAddressId": (lambda a: build(a, [span(refs=[local_ref(a, networkAddressId=987654)])]),
                                 "unknown-network-address-id", "unknown networkAddressId 987654"),
    "unknown parentEndpointId": (lambda a: build(a, [span(refs=[local_ref(a, parentEndpointId=987654)])]),
                                 "unknown-endpoint-id", "unknown parentEndpointId 987654"),
    "unknown entryEndpointId": (lambda a: build(a, [span(refs=[local_ref(a, entryEndpointId=987654)])]),
                                "unknown-endpoint-id", "unknown entryEndpointId 987654"),
    "unknown parent instance on entry ref": (lambda a: build(a, [span(kind=tc6.Entry, op="/e", refs=[
        _entry_ref(a, parentServiceInstanceId=987654)])]), "unknown-parent-instance",
        "unknown parentServiceInstanceId 987654"),
    "unknown parent instance with parentEndpointId 0": (lambda a: build(a, [span(refs=[local_ref(
        a, parentServiceInstanceId=987654, parentEndpointId=0, parentEndpoint="/p")])]),
        "unknown-parent-instance", "unknown parentServiceInstanceId 987654"),
    "unknown entry instance": (lambda a: build(a, [span(refs=[local_ref(
        a, entryServiceInstanceId=987654, entryEndpointId=0, entryEndpoint="/p")])]),
        "unknown-entry-instance", "unknown entryServiceInstanceId 987654"),
    "operation name over 500": (lambda a: build(a, [span(op="x" * 501)]), "operation-name-length",
                                "501 characters"),
    "time in seconds": (lambda a: build(a, [span(startTime=1_577_000_000, endTime=1_577_000_001)]), "timestamp",
                        "startTime 1577000000 is not epoch milliseconds"),
    "time in microseconds": (lambda a: build(a, [span(startTime=1_577_000_000_000_000,
                                                      endTime=1_577_000_000_000_100)]), "timestamp",
                             "endTime 1577000000000100 is not epoch milliseconds"),
}


@pytest.fixture(scope="module")
def drop_agent(collector: CollectorProcess) -> Agent:
    return new_agent(collector, "drop")


@pytest.mark.parametrize("case", list(DROP_CASES))
def test_drop_rule(collector: CollectorProcess, drop_agent: Agent, case: str) -> None:
    make, rule, text = DROP_CASES[case]
    built = make(drop_agent)
    send(collector, built.raw)
    drop = find_drop(collector, built)
    assert rule in drop["rules"], drop
    assert any(text in reason for reason in drop["reasons"]), drop["reasons"]
    assert drop["verdict"] == "OAP 6.6.0 would drop"
    assert not [s for s in collector.api("/api/segments") if s["segmentId"] == built.segment_id]
    line = next(ln for ln in collector.wait_stdout(f"segment {drop['segment']['segmentId'] or '?'} ").splitlines()
                if ln.startswith("DROP (OAP 6.6.0 would drop)") and text in ln)
    assert "of service" in line


def test_valid_segments_are_accepted(collector: CollectorProcess) -> None:
    a = new_agent(collector, "ok")
    plain = build(a, [span(op="work", componentId=7014, component="ignored: the id wins"),
                      span(1, 0, op="named", component="Tomcat")])  # a 6.6.0 component name is fine
    # parent instance not looked up for MQ (docs/protocol/sw6.md §8.12)
    mq = build(a, [span(kind=tc6.Entry, op="/consume", spanLayer=tc6.MQ, refs=[
        _entry_ref(a, parentServiceInstanceId=987654)])])
    send(collector, plain.raw, mq.raw)
    spans = find_segment(collector, plain.segment_id)["spans"]
    assert [(s["componentId"], s["component"]) for s in spans] == [(7014, "N/A"), (1, "Tomcat")]
    stored = find_segment(collector, mq.segment_id)  # pending until /consume and 10.9.9.9:80 exist
    assert stored["spans"][0]["refs"][0]["parentService"] is None


# ------------------------------------------------------------------ ref endpoint names: OAP's retry grace
# (docs/protocol/sw6.md §8.2, §8.13)


def _named_ref_segment(a: Agent, name: str) -> Built:
    return build(a, [span(refs=[local_ref(a, parentEndpointId=0, parentEndpoint=name)])])


def test_ref_endpoint_name_pending_then_accepted(collector: CollectorProcess) -> None:
    a = new_agent(collector, "grace")
    name = f"/later-{next(_seq)}"
    built = _named_ref_segment(a, name)
    send(collector, built.raw)
    pending = wait_until(lambda: [p for p in collector.api("/api/pending")
                                  if p["segment"]["segmentId"] == built.segment_id])[0]
    assert pending["rules"] == ["ref-endpoint-name"] and name in pending["reasons"][0]
    assert 4.0 < pending["secondsLeft"] <= 6.0  # default grace: 1 s + 10 x 0.5 s
    register_endpoint(collector, a.sid, name)
    seg = find_segment(collector, built.segment_id)
    assert seg["spans"][0]["refs"][0]["parentEndpoint"] == name
    assert not [p for p in collector.api("/api/pending") if p["segment"]["segmentId"] == built.segment_id]


def test_ref_endpoint_name_dropped_after_grace(start_collector: Callable[..., CollectorProcess]) -> None:
    c = start_collector("--register-delay", "0.1", "--retry-grace", "1.0")
    a = new_agent(c, "grace")
    empty = build(a, [span(refs=[local_ref(a, entryEndpointId=0, entryEndpoint="")])])  # empty never exists
    missing = _named_ref_segment(a, "/never")
    send(c, empty.raw, missing.raw)
    assert len(wait_until(lambda: c.api("/api/pending"))) == 2
    for built, text in ((empty, "empty entryEndpoint"), (missing, "parentEndpoint '/never'")):
        drop = find_drop(c, built)
        assert drop["rules"] == ["ref-endpoint-name", "retry-exhausted"]
        assert text in drop["reasons"][0]
    assert c.api("/api/pending") == [] and c.api("/api/stats")["segmentsPending"] == 0


# ------------------------------------------------------------------ traces: text tree and linking


def test_trace_tree_links_segments_through_refs(collector: CollectorProcess) -> None:
    up, down = new_agent(collector, "front"), new_agent(collector, "back")
    n = next(_seq)
    trace = [uid(up.iid, 9, n)]
    t0 = now_ms() - 100
    parent = build(up, [span(0, -1, tc6.Entry, "/front", startTime=t0, endTime=t0 + 90),
                        span(1, 0, tc6.Exit, "/back", startTime=t0 + 10, endTime=t0 + 80, peer="back-host:80",
                             isError=True)], trace=trace)
    child = build(down, [span(0, -1, tc6.Entry, "/back", startTime=t0 + 20, endTime=t0 + 70, refs=[tr6.SegmentReference(
        refType=tc6.CrossProcess, parentTraceSegmentId=uid(up.iid, 7, int(parent.segment_id.split(".")[2])),
        parentSpanId=1, parentServiceInstanceId=up.iid, networkAddress="back-host:80",
        entryServiceInstanceId=up.iid, entryEndpoint="/front", parentEndpoint="/front")])], trace=trace)
    send(collector, parent.raw, child.raw)  # the child waits until /front exists (created from the parent)
    tid = parent.trace_id
    trace_doc = wait_until(lambda: (lambda t: t if t.get("segments") and len(t["segments"]) == 2 else None)(
        collector.api(f"/api/traces/{tid}")), what="both segments stored")
    lines = trace_doc["tree"].splitlines()
    assert lines[0].startswith(f"TRACE {tid}")
    assert lines[1] == f"  {up.service}  Entry  /front  90 ms"
    assert lines[2] == f"    {up.service}  Exit  /back  70 ms  ERROR  -> back-host:80"
    assert lines[3] == f"      {down.service}  Entry  /back  50 ms"
    summary = next(t for t in collector.api("/api/traces") if t["traceId"] == tid)
    assert summary == {"traceId": tid, "segments": 2, "services": sorted([up.service, down.service]),
                       "startTime": t0}
    out = collector.wait_stdout(f"      {down.service}  Entry  /back  50 ms")
    assert f"TRACE {tid}" in out and f"  {up.service}  Entry  /front" in out
    assert [s["segmentId"] for s in collector.api(f"/api/segments?trace={tid}&service={down.service}")] == \
        [child.segment_id]

    # a later segment of the same trace: the tree is printed again, marked as updated
    late = build(down, [span(0, -1, tc6.Local, "async-work", startTime=t0 + 60, endTime=t0 + 95, refs=[local_ref(
        down, parentTraceSegmentId=uid(*map(int, child.segment_id.split("."))), parentSpanId=0)])], trace=trace)
    send(collector, late.raw)
    out = collector.wait_stdout(f"TRACE {tid}  (3 segments; services: ")
    assert "[updated]" in out.split(f"TRACE {tid}  (3 segments")[1].splitlines()[0]
    assert f"\n        {down.service}  Local  async-work  35 ms\n" in out


# ------------------------------------------------------------------ v3 (OAP 8+)


def test_v3_keepalive_collect_and_bad_segment(collector: CollectorProcess) -> None:
    props = mgmt3.InstanceProperties(service="svc-b", serviceInstance="inst-b",
                                     properties=[c3.KeyStringValuePair(key="language", value="python")])
    assert collector.unary(V3_PROPS, props, c3.Commands) == c3.Commands()
    assert collector.unary(V3_KEEPALIVE, mgmt3.InstancePingPkg(service="svc-b", serviceInstance="inst-b"),
                           c3.Commands) == c3.Commands()
    inst = next(i for i in collector.api("/api/inventory")["v3Instances"] if i["serviceInstance"] == "inst-b")
    assert inst["properties"] == {"language": "python"} and inst["lastHeartbeat"]

    assert collector.stream(V3_COLLECT, [GOLDEN_V3_SEGMENT], c3.Commands) == c3.Commands()
    parent = tr3.SegmentObject(traceId="t-1", traceSegmentId="s-0", service="svc-a", serviceInstance="inst-a",
                               spans=[tr3.SpanObject(spanId=0, parentSpanId=-1, spanType=tr3.Entry, operationName="/a",
                                                     startTime=1577000000000, endTime=1577000000200),
                                      tr3.SpanObject(spanId=1, parentSpanId=0, spanType=tr3.Exit, operationName="/b",
                                                     peer="127.0.0.1:7777", startTime=1577000000001,
                                                     endTime=1577000000150)])
    bad = tr3.SegmentObject(traceId="t-2", traceSegmentId="s-bad", spans=[tr3.SpanObject(spanId=0, refs=[
        tr3.SegmentReference(traceId="t-2", parentTraceSegmentId="s-x", parentSpanId=-1)])])
    collector.unary(V3_SYNC, tr3.SegmentCollection(segments=[parent, bad]), c3.Commands)

    seg = find_segment(collector, "s-1")
    assert (seg["protocol"], seg["traceId"], seg["service"], seg["serviceInstance"]) == ("v3", "t-1", "svc-b",
                                                                                         "inst-b")
    assert seg["spans"][0]["refs"][0]["parentService"] == "svc-a"
    assert seg["spans"][0]["refs"][0]["networkAddress"] == "127.0.0.1:7777"
    tree = wait_until(lambda: (lambda t: t.get("tree") if len(t.get("segments", [])) == 2 else None)(
        collector.api("/api/traces/t-1")))
    assert tree.splitlines()[1:] == ["  svc-a  Entry  /a  200 ms", "    svc-a  Exit  /b  149 ms  -> 127.0.0.1:7777",
                                     "      svc-b  Entry  /b  100 ms"]

    drop = find_drop(collector, Built(b"", "s-bad", "t-2"))
    assert drop["protocol"] == "v3" and drop["verdict"] == "invalid v3 segment"
    assert drop["rules"] == ["v3-missing-field", "v3-ref-field"]
    assert any("empty service, serviceInstance" not in r and "empty service" in r for r in drop["reasons"])
    assert any("parentSpanId -1" in r for r in drop["reasons"])
    stats = collector.api("/api/stats")
    assert stats["v3KeepAlives"] >= 1 and stats["byProtocol"]["v3"]["dropped"] >= 1


# ------------------------------------------------------------------ store bounds, clear, shutdown


def test_store_bound_clear_and_clean_shutdown(start_collector: Callable[..., CollectorProcess]) -> None:
    c = start_collector("--register-delay", "0", "--max-segments", "2", "--no-print")
    a = new_agent(c)
    builds = [build(a, [span()]) for _ in range(3)]
    send(c, *(b.raw for b in builds))
    send(c, build(a, [span(spanType=9)]).raw)
    stats = wait_until(lambda: (lambda s: s if s["segmentsReceived"] == 4 else None)(c.api("/api/stats")))
    assert (stats["segmentsAccepted"], stats["segmentsStored"], stats["segmentsEvicted"], stats["streams"]) == \
        (3, 2, 1, 2)
    assert [s["segmentId"] for s in c.api("/api/segments")] == [b.segment_id for b in builds[1:]]
    assert c.api("/api/clear", "POST")["ok"] is True
    assert c.api("/api/segments") == [] and c.api("/api/drops") == [] and c.api("/api/traces") == []
    assert [i["id"] for i in c.api("/api/inventory")["instances"]] == [1, a.iid]  # the inventory stays
    assert c.api("/health") == {"status": "ok"}
    assert c.api("/api/nope")["status"] == 404
    assert c.close() == 0
    assert c.lines[1:] == []  # --no-print: only the ready line
    assert "Traceback" not in "".join(c.stderr_lines)


def test_v3_cross_thread_ref_needs_no_network_address(collector: CollectorProcess) -> None:
    # a CrossThread ref points into the same process: Java 8 and we send no peer address for it
    seg = tr3.SegmentObject(traceId="t-ct", traceSegmentId="s-ct", service="svc", serviceInstance="inst", spans=[
        tr3.SpanObject(spanId=0, parentSpanId=-1, spanType=tr3.Local, operationName="Thread/work",
                       startTime=1577000000000, endTime=1577000000001,
                       refs=[tr3.SegmentReference(refType=tr3.CrossThread, traceId="t-ct", parentTraceSegmentId="s-p",
                                                  parentSpanId=0, parentService="svc", parentServiceInstance="inst",
                                                  parentEndpoint="/p")])])
    assert collector.stream(V3_COLLECT, [seg], c3.Commands) == c3.Commands()
    assert find_segment(collector, "s-ct")["spans"][0]["refs"][0]["refType"] == "CrossThread"
