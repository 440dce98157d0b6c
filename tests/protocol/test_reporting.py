"""Agents reporting to the bundled collector: real processes, real gRPC, real HTTP between services."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.protocol.procs import Collector, Service, free_port, wait_for


def segment_of(trace: dict[str, Any], service: str) -> dict[str, Any]:
    (seg,) = [s for s in trace["segments"] if s["service"] == service]
    return seg


def span_of(seg: dict[str, Any], kind: str) -> dict[str, Any]:
    (span,) = [s for s in seg["spans"] if s["spanType"] == kind]
    return span


def linked_call(spawn: Callable[..., Any], collector: Collector, protocol: str) -> tuple[dict, dict, dict, str]:
    b = spawn(Service, "svc-b", collector.grpc, protocol)
    a = spawn(Service, "svc-a", collector.grpc, protocol)
    resp = a.call(next=f"{b.url}/call")
    trace_id = resp["trace_id"]
    assert resp["downstream"]["trace_id"] == trace_id != "N/A"
    trace = collector.trace(trace_id, 2)
    collector.settled()
    assert collector.api("/api/drops") == []
    return resp, segment_of(trace, "svc-a"), segment_of(trace, "svc-b"), f"127.0.0.1:{b.port}"


def test_two_processes_linked_by_sw6(spawn: Callable[..., Any]) -> None:
    collector = spawn(Collector)
    resp, seg_a, seg_b, b_address = linked_call(spawn, collector, "v6")
    assert list(resp["headers_sent"]) == ["sw6"]
    exit_a = span_of(seg_a, "Exit")
    entry_b = span_of(seg_b, "Entry")
    (ref,) = entry_b["refs"]
    assert ref["refType"] == "CrossProcess"
    assert (ref["parentTraceSegmentId"], ref["parentSpanId"]) == (seg_a["segmentId"], exit_a["spanId"])
    assert ref["parentServiceInstance"] == seg_a["serviceInstance"]
    # the caller's peer, verbatim (docs/protocol/sw6.md §5.5)
    assert ref["networkAddress"] == exit_a["peer"] == b_address
    assert (ref["entryEndpoint"], ref["parentEndpoint"]) == ("/call", "/call")
    assert seg_a["traceId"] == seg_b["traceId"] == resp["trace_id"] and len(seg_a["traceId"].split(".")) == 3
    inventory = collector.api("/api/inventory")
    props = {i["name"]: i["properties"] for i in inventory["instances"]}
    (a_props,) = [p for name, p in props.items() if name.startswith("svc-a-pid:")]
    assert a_props["language"] == "python" and a_props["process_no"].isdigit()


def test_two_processes_linked_by_sw8_in_v8_mode(spawn: Callable[..., Any]) -> None:
    collector = spawn(Collector)
    resp, seg_a, seg_b, b_address = linked_call(spawn, collector, "v8")
    assert list(resp["headers_sent"]) == ["sw8"]
    exit_a = span_of(seg_a, "Exit")
    (ref,) = span_of(seg_b, "Entry")["refs"]
    assert (ref["parentTraceSegmentId"], ref["parentSpanId"]) == (seg_a["segmentId"], exit_a["spanId"])
    assert (ref["parentService"], ref["parentServiceInstance"]) == ("svc-a", "svc-a-instance")
    assert ref["parentEndpoint"] == "/call" and ref["networkAddress"] == exit_a["peer"] == b_address
    assert seg_a["protocol"] == seg_b["protocol"] == "v3"


def test_traced_before_the_oap_answers(spawn: Callable[..., Any]) -> None:
    """Tracing does not wait for registration: the first request is traced at once and its segment is held
    until the ids arrive, then delivered. Only the sw6 header needs the OAP's instance id: it is skipped (and
    counted) in that window."""
    collector = spawn(Collector, register_delay=2.0)
    svc = spawn(Service, "svc-slow", collector.grpc, SW_AGENT_REGISTER_WAIT="0")
    early = svc.call(next=f"{svc.url}/stats")
    assert early["trace_id"] != "N/A" and early["headers_sent"] == {}
    assert svc.stats()["sw6_headers_skipped"] >= 1 and svc.stats()["instance_id"] == 0
    wait_for(lambda: svc.stats()["instance_id"] > 0, timeout=15, what="registration")
    (seg,) = collector.trace(early["trace_id"], 1)["segments"]  # held, then sent with the ids issued later
    assert seg["service"] == "svc-slow"
    late = svc.call(next=f"{svc.url}/stats")
    assert "sw6" in late["headers_sent"]
    collector.trace(late["trace_id"], 1)
    collector.settled()
    assert collector.api("/api/drops") == []


def test_register_wait_makes_the_first_request_traced(spawn: Callable[..., Any]) -> None:
    collector = spawn(Collector, register_delay=1.0)
    svc = spawn(Service, "svc-wait", collector.grpc, SW_AGENT_REGISTER_WAIT="15")
    first = svc.call(next=f"{svc.url}/stats")
    assert first["trace_id"] != "N/A" and "sw6" in first["headers_sent"]
    collector.trace(first["trace_id"], 1)


def test_reset_then_register_again_with_the_same_uuid(spawn: Callable[..., Any]) -> None:
    collector = spawn(Collector)
    svc = spawn(Service, "svc-reset", collector.grpc)
    before = svc.call()
    collector.trace(before["trace_id"], 1)
    uuids = {i["uuid"] for i in collector.api("/api/inventory")["instances"]}
    collector.api("/api/reset", post=True)
    wait_for(lambda: svc.stats()["resets"] >= 1 and svc.stats()["instance_id"] > 0, timeout=20,
             what="reset and re-registration")
    after = svc.call()
    assert after["trace_id"] != "N/A"
    collector.trace(after["trace_id"], 1)
    assert {i["uuid"] for i in collector.api("/api/inventory")["instances"]} == uuids
    collector.settled()
    assert collector.api("/api/drops") == []


def test_collector_started_after_the_agent(spawn: Callable[..., Any]) -> None:
    grpc_port = free_port()
    svc = spawn(Service, "svc-early", f"127.0.0.1:{grpc_port}", SW_AGENT_REGISTER_WAIT="0")
    t0 = time.monotonic()
    early = [svc.call()["trace_id"] for _ in range(5)]  # traced, and never blocked
    assert time.monotonic() - t0 < 5 and "N/A" not in early
    assert svc.stats()["held"] + svc.stats()["queued"] == 5
    collector = spawn(Collector, grpc_port=grpc_port)
    wait_for(lambda: svc.stats()["instance_id"] > 0, timeout=40, what="registration once the collector is up")
    for trace_id in early:  # what was traced while the collector was down arrives
        collector.trace(trace_id, 1)
    resp = svc.call()
    collector.trace(resp["trace_id"], 1)


def test_collector_killed_in_the_middle_of_a_stream(spawn: Callable[..., Any]) -> None:
    collector = spawn(Collector)
    port, http_port = collector.grpc_port, collector.http_port
    svc = spawn(Service, "svc-load", collector.grpc, SW_TEST_LOAD="200")
    wait_for(lambda: svc.stats()["sent"] > 50, what="segments flowing")
    collector.stop(kill=True)
    t0 = time.monotonic()
    for _ in range(20):
        svc.call()  # the application goes on, quickly, while the backend is gone
    assert time.monotonic() - t0 < 10
    time.sleep(1)
    restarted = spawn(Collector, grpc_port=port, http_port=http_port)
    # a fresh collector knows nothing: the agent is told to reset, registers again, and data flows
    wait_for(lambda: svc.stats()["resets"] >= 1 and svc.stats()["instance_id"] > 0, timeout=40,
             what="re-registration with the restarted collector")
    resp = svc.call()
    restarted.trace(resp["trace_id"], 1)
    assert svc.stats()["failures"] >= 1


def test_queue_overflow_is_counted_and_logged_once(spawn: Callable[..., Any]) -> None:
    svc = spawn(Service, "svc-full", f"127.0.0.1:{free_port()}", "v8", SW_AGENT_TRACE_REPORTER_MAX_BUFFER_SIZE="5")
    for _ in range(30):
        svc.call()
    stats = svc.stats()
    assert stats["queued"] <= 5
    assert stats["dropped"].get("queue full", 0) >= 25 - 5
    wait_for(lambda: any("dropped" in line for line in svc.stderr), timeout=5, what="the drop warning")
    assert sum("dropped" in line and "queue full" in line for line in svc.stderr) == 1


def test_failover_and_authentication_metadata(spawn: Callable[..., Any]) -> None:
    collector = spawn(Collector)
    dead = f"127.0.0.1:{free_port()}"  # first in the list: the agent moves on to the next backend
    svc = spawn(Service, "svc-auth", f"{dead},{collector.grpc}", "v8", SW_AGENT_AUTHENTICATION="s3cret")
    resp = svc.call()
    collector.trace(resp["trace_id"], 1)  # delivered through the second backend
    assert svc.stats()["backend"] == collector.grpc
    # every call carries the token: the collect stream and the management calls (after their backoff)
    metadata = wait_for(lambda: (lambda m: m if m.get("authentication=s3cret", 0) >= 3 else None)(
        collector.api("/api/stats")["metadata"]), what="three authenticated calls")
    assert any(key.startswith("agent-version=company-skywalking/") for key in metadata)
    assert svc.stats()["failures"] >= 1


def test_stop_is_bounded_when_the_backend_is_gone(spawn: Callable[..., Any]) -> None:
    import subprocess
    import sys

    from tests.protocol.procs import ROOT, clean_env

    code = ("import time\n"
            "from skywalking import agent, config\n"
            "from skywalking.trace.context import get_context\n"
            f"config.init(agent_collector_backend_services='127.0.0.1:{free_port()}', agent_protocol_version='v8')\n"
            "agent.start()\n"
            "for _ in range(1000):\n"
            "    with get_context().new_local_span('work'): pass\n"
            "t = time.monotonic(); agent.stop(); print('STOPPED', round(time.monotonic() - t, 2))\n")
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], env=clean_env(), cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.split()[-1]) <= 6.0  # STOP_TIMEOUT (5 s) plus scheduling
    assert time.monotonic() - t0 < 30
    assert "not sent before stop" in out.stderr and "Traceback" not in out.stderr


def test_tls_channel(spawn: Callable[..., Any]) -> None:
    from tests.protocol.procs import ROOT

    cert, key = ROOT / "tests" / "fixtures" / "collector-test.crt", ROOT / "tests" / "fixtures" / "collector-test.key"
    collector = spawn(Collector, 0, 0, 0.2, "--tls-cert", str(cert), "--tls-key", str(key))
    port = collector.grpc_port
    # the test certificate is trusted through gRPC's roots override; the agent only sets agent_force_tls
    svc = spawn(Service, "svc-tls", f"localhost:{port}", SW_AGENT_FORCE_TLS="true",
                GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=str(cert))
    resp = svc.call()
    assert resp["trace_id"] != "N/A"
    collector.trace(resp["trace_id"], 1)
    # without TLS the same collector is unreachable: nothing registers
    plain = spawn(Service, "svc-plain", f"localhost:{port}", SW_AGENT_REGISTER_WAIT="2")
    plain.call()
    assert plain.stats()["instance_id"] == 0 and plain.stats()["sent"] == 0


@pytest.mark.parametrize("h2_fails", [False, True])
def test_segments_go_out_over_h2_with_the_grpc_api_as_fallback(spawn: Callable[..., Any],
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               h2_fails: bool) -> None:
    """Segments go out over the reporter's own HTTP/2 connection; any failure there other than an RPC error switches
    the reporter to grpcio's API for good, and the batch is still delivered."""
    from skywalking import config
    from skywalking.protocol_v8.session import V8Session
    from skywalking.reporter import grpc as reporter_grpc
    from skywalking.trace.context import disable, enable, get_context, suppress_tracing
    from skywalking.trace.identity import new_identity

    collector = spawn(Collector)

    def stored() -> int:  # the test's own polls stay untraced (a urllib plugin an earlier test left would trace them)
        with suppress_tracing():
            return len(collector.api("/api/segments?service=svc-fallback"))

    monkeypatch.setattr(config, "agent_name", "svc-fallback")
    monkeypatch.setattr(config, "SERVICE_NAME", "svc-fallback", raising=False)
    calls: list[int] = []

    def unusable(self: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(1)
        raise RuntimeError("no h2 here")

    if h2_fails:
        monkeypatch.setattr(reporter_grpc.GrpcReporter, "_send_h2", unusable)
    reporter = reporter_grpc.GrpcReporter(V8Session(), 100, [collector.grpc], False)
    reporter.start()
    enable(reporter.report, identity=new_identity("svc-fallback", "svc-fallback-1"), protocol="v8")
    try:
        for n in range(3):
            with get_context().new_entry_span(op=f"/fallback/{n}"):
                pass
            wait_for(lambda n=n: stored() > n, what=f"segment {n}")
        if h2_fails:
            assert calls == [1] and not reporter._h2_ok  # tried once, then grpcio only
        else:
            assert reporter._h2_ok and reporter._h2 is not None  # every batch went over h2
        # the collector stores a segment as it arrives, before the call that carries it has returned
        wait_for(lambda: reporter.sent == 3, what="the third call to return")
        assert not reporter.dropped
    finally:
        disable()
        reporter.stop(2.0)


def test_an_identity_registered_on_its_behalf_keeps_its_instance(spawn: Callable[..., Any]) -> None:
    """A callee registers its caller's identity (a Ray caller named in a ref) before the caller itself has:
    the OAP de-duplicates instances by service id and UUID, so both get the same instance id, and the
    caller's properties (its instance name) are the ones registered."""
    import grpc

    from skywalking.protocol_v6.registry import Client, Registry
    from skywalking.trace.identity import new_identity

    collector = spawn(Collector, register_delay=0.3)
    callee = new_identity("svc-callee", "callee-1", [("process_no", "11"), ("host_name", "h")])
    caller = new_identity("svc-caller", "caller-1", [("process_no", "22"), ("host_name", "h")])

    def resolve(own: tuple, *others: tuple) -> dict[str, int]:
        issued: dict[str, int] = {}
        registry = Registry(heartbeat=30, cool_down=1, on_change=lambda i, iid: issued.update({i[1]: iid}),
                            on_reset=lambda: None)
        registry.set_own(own, want=True)
        registry.want(others)
        with grpc.insecure_channel(collector.grpc) as channel:
            client = Client(channel, 5.0, ())
            wait_for(lambda: registry.tick(client) is None or len(issued) == 1 + len(others), timeout=15,
                     what="ids for every identity")
        return issued

    first = resolve(callee, caller)
    again = resolve(caller)
    assert first["caller-1"] == again["caller-1"] and first["callee-1"] != first["caller-1"]
    by_id = {i["id"]: i for i in collector.api("/api/inventory")["instances"]}
    assert by_id[first["caller-1"]]["name"] == "svc-caller-pid:22@h"


def test_h2_channel_carries_a_batch_larger_than_the_flow_control_window(spawn: Callable[..., Any]) -> None:
    """3 000 segments of about 600 bytes (1.8 MB, far past HTTP/2's initial 64 KiB stream window) in one call: the
    channel waits for the server's WINDOW_UPDATEs and the collector receives every segment; a server error comes
    back as a CallError with grpc's code and the server's message; the connection is reused across calls."""
    from skywalking.reporter.h2stream import CallError, H2Channel
    from tests.faults.test_faults import FaultServer

    collector = spawn(Collector, 0, 0, 0.2, "--sink")
    channel = H2Channel(collector.grpc, tls=False)
    message = v8_segment_600_bytes()
    assert channel.open(5) is True
    for _ in range(2):
        channel.call("/skywalking.v3.TraceSegmentReportService/collect", [message] * 1500, 30)
    assert channel.open(5) is False  # the same connection
    wait_for(lambda: collector.api("/api/stats")["segmentsReceived"] == 3000, what="3000 segments")
    channel.close()
    fault = spawn(FaultServer, "error")
    failing = H2Channel(fault.address, tls=False)
    failing.open(5)
    with pytest.raises(CallError) as error:
        failing.call("/TraceSegmentReportService/collect", [message], 5)
    assert error.value.code().name == "INTERNAL" and error.value.details() == "fault server: internal error"


def v8_segment_600_bytes() -> bytes:
    from skywalking.protocol_v8.gen.language_agent.Tracing_pb2 import SegmentObject, SpanObject

    return SegmentObject(traceId="t" * 40, traceSegmentId="s" * 40, service="svc-h2", serviceInstance="i",
                         spans=[SpanObject(spanId=i, parentSpanId=i - 1, operationName="/op" * 30,
                                           startTime=1, endTime=2) for i in range(4)]).SerializeToString()
