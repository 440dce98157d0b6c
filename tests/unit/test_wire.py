"""Bytes on the wire: the golden vectors of tests/fixtures/wire/ (see its README), through our protos and encoders.

Messages and field numbers: docs/protocol/sw6.md §3 and §9.3 (v2 and v3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skywalking import Component, Kind, Layer, Log, LogItem
from skywalking.protocol_v6 import encode as v6
from skywalking.protocol_v6.gen.common.common_pb2 import Commands
from skywalking.protocol_v6.gen.common.trace_common_pb2 import UpstreamSegment
from skywalking.protocol_v6.gen.register.InstancePing_pb2 import ServiceInstancePingPkg
from skywalking.protocol_v6.gen.register.Register_pb2 import (
    Endpoint,
    Endpoints,
    NetAddresses,
    ServiceInstance,
    ServiceInstances,
    Services,
)
from skywalking.protocol_v6.registry import SERVER, instance_properties
from skywalking.protocol_v8 import encode as v8
from skywalking.trace.identity import Unresolved
from skywalking.trace.ids import ID
from skywalking.trace.segment import Segment, SegmentRef
from skywalking.trace.span import Span
from skywalking.trace.tags import TagHttpMethod

ROOT = Path(__file__).resolve().parents[2]
WIRE = ROOT / "tests" / "fixtures" / "wire"


def vector(file: str, name: str) -> str:
    """The hex of one golden vector (``tests/fixtures/wire/<file>.json``)."""
    with open(WIRE / f"{file}.json", encoding="utf-8") as f:
        return str(json.load(f)["vectors"][name]["hex"])


V2_SEGMENT = vector("v2-trace", "segment_object")
V2_UPSTREAM = vector("v2-trace", "upstream_segment")
V3_SEGMENT = vector("v3-trace", "segment_object")


def sw6_id(text: str) -> ID:
    parts = tuple(int(p) for p in text.split("."))
    return ID(text, parts)  # type: ignore[arg-type]


def span(sid: int, pid: int, kind: Kind, op: str, start: int, end: int, layer: Layer, component: Component,
         peer: str | None = None) -> Span:
    s = Span(None, sid, pid, op, peer, kind, component, layer)  # type: ignore[arg-type]
    s.start_time, s.end_time = start, end
    return s


OWN = ("svc", "svc-instance", "0123456789abcdef0123456789abcdef", ())  # the reporting process
IDS = {OWN[2]: (2, 3)}  # the OAP issued service id 2, instance id 3 for it


def golden_v2_segment() -> Segment:
    seg = Segment(sw6_id("2.45.15770000000000000"), sw6_id("3.4.5"), 1577000000000, OWN)
    entry = span(0, -1, Kind.Entry, "/api", 1577000000000, 1577000000250, Layer.Http, Component.FastAPI)
    entry.tag(TagHttpMethod("GET"))
    ref = SegmentRef("CrossProcess", sw6_id("3.4.5"), sw6_id("1.2.3"), 4)
    ref.parent_instance, ref.entry_instance, ref.client_address = 1, 1, "127.0.0.1:8080"
    ref.entry_endpoint, ref.endpoint_id = "/portal", 123
    entry.refs = [ref]
    exit_ = span(1, 0, Kind.Exit, "/down", 1577000000010, 1577000000240, Layer.Http, Component.Requests,
                 "127.0.0.1:9090")
    exit_.error_occurred = True
    exit_.logs = [Log(1577000000200, [LogItem("event", "error"), LogItem("message", "boom")])]
    seg.spans = [entry, exit_]
    return seg


def upstream(segment: Segment, ids: v6.Ids) -> UpstreamSegment:
    return UpstreamSegment.FromString(v6.encode(segment, ids))


def test_v2_segment_and_upstream_segment_byte_for_byte() -> None:
    data = v6.encode(golden_v2_segment(), v6.Ids(IDS))
    assert data.hex() == V2_UPSTREAM
    assert UpstreamSegment.FromString(data).segment.hex() == V2_SEGMENT


def test_v2_uses_issued_ids_for_endpoints_and_peers_only() -> None:
    ids = v6.Ids(IDS, 2, endpoints={"/api": 7, "/down": 8}, addresses={"127.0.0.1:9090": 9})
    from skywalking.protocol_v6.gen.language_agent_v2.trace_pb2 import SegmentObject

    obj = SegmentObject.FromString(upstream(golden_v2_segment(), ids).segment)
    entry, exit_ = obj.spans
    assert (entry.operationNameId, entry.operationName) == (7, "")
    assert (exit_.operationNameId, exit_.operationName) == (0, "/down")  # exit names are never endpoints
    assert (exit_.peerId, exit_.peer) == (9, "")
    assert entry.component == exit_.component == ""  # never the string: OAP 6.6.0 drops unknown names


def test_v2_endpoint_ids_of_another_service_are_not_used() -> None:
    ids = v6.Ids(IDS, 5, endpoints={"/api": 7})  # endpoint ids issued to service 5, the segment is service 2's
    from skywalking.protocol_v6.gen.language_agent_v2.trace_pb2 import SegmentObject

    entry = SegmentObject.FromString(upstream(golden_v2_segment(), ids).segment).spans[0]
    assert (entry.operationNameId, entry.operationName) == (0, "/api")


def test_v2_identities_without_ids_are_not_encoded() -> None:
    """Before the OAP has issued ids for the reporting process or for a caller named in a ref, the segment
    cannot be encoded: ``Unresolved`` lists what to register; with the ids, the refs carry them."""
    with pytest.raises(Unresolved) as e:
        v6.encode(golden_v2_segment(), v6.Ids())
    assert e.value.identities == [OWN]
    caller = ("ray-driver", "driver-1", "fedcba9876543210fedcba9876543210", (("process_no", "7"),))
    seg = golden_v2_segment()
    seg.spans[0].refs[0].parent_instance = seg.spans[0].refs[0].entry_instance = caller
    with pytest.raises(Unresolved) as e:
        v6.encode(seg, v6.Ids(IDS))
    assert e.value.identities == [caller]
    from skywalking.protocol_v6.gen.language_agent_v2.trace_pb2 import SegmentObject

    obj = SegmentObject.FromString(upstream(seg, v6.Ids({**IDS, caller[2]: (4, 9)})).segment)
    ref = obj.spans[0].refs[0]
    assert (obj.serviceId, obj.serviceInstanceId) == (2, 3)
    assert (ref.parentServiceInstanceId, ref.entryServiceInstanceId) == (9, 9)


def test_v2_leaves_out_refs_it_cannot_express() -> None:
    seg = golden_v2_segment()
    sw8_ref = SegmentRef("CrossProcess", ID("abc.1.2"), ID("abc.1.1"), 1)  # from an sw8 header: no instance id
    sw8_ref.service, sw8_ref.service_instance, sw8_ref.client_address = "svc", "inst", "h:1"
    no_address = SegmentRef("CrossThread", sw6_id("3.4.5"), sw6_id("1.2.3"), 0)
    no_address.parent_instance = 3
    seg.spans[0].refs = [sw8_ref, no_address, *seg.spans[0].refs]
    assert upstream(seg, v6.Ids(IDS)).segment.hex() == V2_SEGMENT


def test_registration_messages_byte_for_byte() -> None:
    props = [("os_name", "Linux"), ("host_name", "h1"), ("ipv4", "10.0.0.1"), ("ipv4", "10.0.0.2"),
             ("process_no", "42"), ("language", "python")]
    instances = ServiceInstances(instances=[ServiceInstance(
        serviceId=2, instanceUUID="0123456789abcdef0123456789abcdef", time=1577000000000,
        properties=[{"key": k, "value": v} for k, v in props])])
    assert instances.SerializeToString().hex() == vector("v2-register", "service_instances")
    endpoint = Endpoint(serviceId=2, endpointName="/api", **{"from": SERVER})
    assert Endpoints(endpoints=[endpoint]).SerializeToString().hex() == vector("v2-register", "endpoints")
    addresses = NetAddresses(addresses=["127.0.0.1:9090"])
    assert addresses.SerializeToString().hex() == vector("v2-register", "net_addresses")
    ping = ServiceInstancePingPkg(serviceInstanceId=3, time=1577000000000,
                                  serviceInstanceUUID="0123456789abcdef0123456789abcdef")
    assert ping.SerializeToString().hex() == vector("v2-register", "ping")
    assert Services(services=[{"serviceName": "py-svc"}]).SerializeToString().hex() == vector("v2-register", "services")
    reset_hex = vector("v2-register", "reset_commands")
    reset = Commands.FromString(bytes.fromhex(reset_hex))
    assert (reset.commands[0].command, reset.commands[0].args[0].key, reset.commands[0].args[0].value) == (
        "ServiceMetadataReset", "SerialNumber", "5a5b")
    assert reset.SerializeToString().hex() == reset_hex


def test_instance_properties_follow_the_java_order() -> None:
    keys = [k for k, _ in instance_properties({"team": "llm", "language": "not-python"})]
    assert keys[:2] == ["os_name", "host_name"]
    assert keys[-3:] == ["process_no", "language", "team"]
    assert set(keys[2:-3]) <= {"ipv4"}
    values = dict(instance_properties({}))
    assert values["language"] == "python" and values["process_no"].isdigit()


def test_v3_segment_byte_for_byte() -> None:
    seg = Segment(ID("s-1"), ID("t-1"), 1577000000000)
    entry = span(0, -1, Kind.Entry, "/b", 1577000000000, 1577000000100, Layer.Http, Component.FastAPI,
                 "127.0.0.1:40000")
    entry.tag(TagHttpMethod("GET"))
    ref = SegmentRef("CrossProcess", ID("t-1"), ID("s-0"), 1)
    ref.service, ref.service_instance, ref.endpoint, ref.client_address = "svc-a", "inst-a", "/a", "127.0.0.1:7777"
    entry.refs = [ref]
    seg.spans = [entry]
    assert v8.encode(seg, "svc-b", "inst-b").SerializeToString().hex() == V3_SEGMENT


def test_generated_modules_are_not_stale() -> None:
    protoc = ROOT / ".venvs" / "protoc" / "bin" / "python"
    assert protoc.exists(), "the pinned protoc venv is missing: run `make protos`"
    out = subprocess.run([str(protoc), str(ROOT / "tools" / "gen_protos.py"), "--check"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


COLLIDE = """
from google.protobuf import descriptor_pb2, descriptor_pool
import skywalking.protocol_v6.gen.common.common_pb2 as ours
import skywalking.protocol_v6.gen.language_agent_v2.trace_pb2
import skywalking.protocol_v8.gen.language_agent.Tracing_pb2
pool = descriptor_pool.Default()
for name in ("SegmentObject", "skywalking.v3.SegmentObject", "UpstreamSegment"):
    try:
        pool.FindMessageTypeByName(name)
        print("LEAK", name)
    except KeyError:
        pass
# an application's own package-less proto with a `Commands` of another shape, loaded after ours
fdp = descriptor_pb2.FileDescriptorProto(name="app/app.proto", syntax="proto3")
fdp.message_type.add(name="Commands").field.add(name="x", number=1, type=9, label=1)
pool.AddSerializedFile(fdp.SerializeToString())
assert [f.name for f in pool.FindMessageTypeByName("Commands").fields] == ["x"]
assert ours.Commands.FromString(bytes.fromhex("0a090a0752657365744d65")).commands[0].command == "ResetMe"
print("OK")
"""


@pytest.mark.parametrize("implementation", ["default", "python"])
def test_generated_modules_never_collide_with_application_protos(implementation: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"}
    if implementation == "python":
        env["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"  # what protobuf < 4 always is
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", COLLIDE], capture_output=True, text=True, timeout=60, env=env)
    assert out.stdout.strip() == "OK", out.stdout + out.stderr


def _reference_v2(segment: Segment, ids: v6.Ids) -> bytes:
    """The same segment built with protobuf's message API, field by field: what ``v6.encode``'s hand assembly
    must equal byte for byte."""
    from skywalking.protocol_v6.gen.common.common_pb2 import KeyStringValuePair
    from skywalking.protocol_v6.gen.common.trace_common_pb2 import UniqueId
    from skywalking.protocol_v6.gen.language_agent_v2.trace_pb2 import Log as PbLog
    from skywalking.protocol_v6.gen.language_agent_v2.trace_pb2 import SegmentObject

    service_id, instance_id = ids.instances[segment.identity[2]]
    endpoints = ids.endpoints if service_id == ids.endpoint_service_id else {}
    obj = SegmentObject(traceSegmentId=UniqueId(idParts=segment.segment_id.parts), serviceId=service_id,
                        serviceInstanceId=instance_id, isSizeLimited=segment.is_size_limited)
    for s in segment.spans:
        entry, exit_ = s.kind is Kind.Entry, s.kind is Kind.Exit
        op_id = endpoints.get(s.op or "", 0) if entry else 0
        peer = s.peer if exit_ and s.peer else ""
        peer_id = ids.addresses.get(peer, 0) if peer else 0
        pb = obj.spans.add(spanId=s.sid, parentSpanId=s.pid, startTime=s.start_time, endTime=s.end_time,
                           spanType={Kind.Entry: 0, Kind.Exit: 1, Kind.Local: 2}[s.kind], spanLayer=s.layer.value,
                           componentId=s.component.value, isError=s.error_occurred, operationNameId=op_id,
                           operationName="" if op_id else s.op or "", peerId=peer_id,
                           peer="" if peer_id else peer)
        for ref in s.refs:
            r = v6._ref(ref, entry, ids)
            if r is not None:
                pb.refs.append(r)
        for tag in s.tags:
            pb.tags.add(key=tag.key, value=tag.val or "")
        for log in s.logs:
            pb.logs.append(PbLog(time=log.timestamp, data=[KeyStringValuePair(key=i.key, value=i.val)
                                                           for i in log.items]))
    traces = segment.related_traces
    return UpstreamSegment(globalTraceIds=[UniqueId(idParts=t.parts) for t in (*traces[1:], traces[0])],
                           segment=obj.SerializeToString()).SerializeToString()


_names = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@given(st.data())
@settings(max_examples=150, deadline=None)
def test_v2_hand_assembly_equals_protobuf(data: st.DataObject) -> None:
    seg = golden_v2_segment()
    seg.is_size_limited = data.draw(st.booleans())
    seg.related_traces = [sw6_id("3.4.5"), *data.draw(st.lists(st.just(sw6_id("6.7.8")), max_size=2))]
    n = data.draw(st.integers(1, 4))
    spans = []
    for sid in range(n):
        kind = data.draw(st.sampled_from(list(Kind)))
        s = span(sid, sid - 1, kind, data.draw(_names), data.draw(st.integers(0, 2**42)),
                 data.draw(st.integers(0, 2**42)), data.draw(st.sampled_from(list(Layer))),
                 data.draw(st.sampled_from([Component.Unknown, Component.Requests, Component.Ray])),
                 data.draw(st.one_of(st.none(), _names)))
        s.error_occurred = data.draw(st.booleans())
        for value in data.draw(st.lists(_names, max_size=3)):
            s.tag(TagHttpMethod(value))
        if data.draw(st.booleans()):
            s.logs = [Log(data.draw(st.integers(0, 2**42)), [LogItem("event", data.draw(_names))])]
        if kind is Kind.Entry and data.draw(st.booleans()):
            s.refs = golden_v2_segment().spans[0].refs
        spans.append(s)
    seg.spans = spans
    ids = v6.Ids(IDS, 2, endpoints={"/api": 7}, addresses={"127.0.0.1:9090": 9})
    for _ in range(2):  # the second time from the caches
        assert v6.encode(seg, ids) == _reference_v2(seg, ids)
