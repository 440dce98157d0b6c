"""Tracing core: spans, segments, refs, limits, sampling, threads, asyncio, propagation."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time

import pytest

from skywalking import Component, Kind, Layer, agent, config
from skywalking.decorators import runnable, trace
from skywalking.reporter.memory import MemoryReporter
from skywalking.trace import ids
from skywalking.trace.carrier import Carrier, decode_sw6, decode_sw8
from skywalking.trace.context import NoopContext, SpanContext, get_context, suppress_tracing
from skywalking.trace.span import NoopSpan
from skywalking.trace.tags import Tag, TagDbSqlParameters, TagHttpMethod, TagHttpURL
from skywalking.trace.tracer import TRACER


def inbound(headers: dict[str, str]) -> Carrier:
    carrier = Carrier()
    for item in carrier:
        item.val = headers.get(item.key)
    return carrier


def outbound(span: object) -> dict[str, str]:
    return {item.key: item.val for item in span.inject()}  # type: ignore[attr-defined]


def serve(op: str = "/api", headers: dict[str, str] | None = None, peer: str = "127.0.0.1:9090") -> dict[str, str]:
    """One traced request: entry span (continuing ``headers``), one exit span; returns its headers."""
    ctx = get_context()
    with ctx.new_entry_span(op=op, carrier=inbound(headers or {})) as entry:
        entry.layer = Layer.Http
        entry.component = Component.Flask
        entry.tag(TagHttpMethod("GET"))
        with ctx.new_exit_span(op="/down", peer=peer, component=Component.Requests) as exit_span:
            exit_span.layer = Layer.Http
            return outbound(exit_span)


def test_nothing_is_traced_before_start() -> None:
    assert isinstance(get_context(), NoopContext)
    span = get_context().new_entry_span(op="/x")
    assert isinstance(span, NoopSpan)


def test_segment_shape(reporter: MemoryReporter) -> None:
    t0 = time.time() * 1000
    serve()
    assert reporter.count == 1
    seg = reporter.segments[0]
    exit_span, entry = seg.spans  # finish order: children first
    assert (entry.sid, entry.pid, entry.kind, entry.op) == (0, -1, Kind.Entry, "/api")
    assert (exit_span.sid, exit_span.pid, exit_span.kind, exit_span.peer) == (1, 0, Kind.Exit, "127.0.0.1:9090")
    assert entry.component is Component.Flask and exit_span.component is Component.Requests
    assert [(t.key, t.val) for t in entry.iter_tags()] == [("http.method", "GET")]
    assert t0 - 1 <= entry.start_time <= exit_span.start_time <= exit_span.end_time <= entry.end_time
    assert entry.end_time <= time.time() * 1000 + 1
    # sw6 ids: [process token, thread, ms * 10000 + seq]: no OAP id needed to make them
    assert seg.segment_id.parts[0] == ids._token > 0 and seg.segment_id.parts[1] == threading.get_native_id()
    assert abs(seg.segment_id.parts[2] // 10000 - t0) < 5000
    assert seg.related_traces[0] == seg.segment_id  # a root segment: its own trace
    assert seg.identity is TRACER.identity and seg.identity[0] == config.SERVICE_NAME


def test_ids_are_unique(reporter: MemoryReporter) -> None:
    for _ in range(2000):
        with get_context().new_local_span("x"):
            pass
    ids = {seg.segment_id.parts for seg in reporter.segments}
    assert len(ids) == 2000 and all(0 <= p[2] % 10000 < 10000 for p in ids)


def test_inject_sw6_root(reporter: MemoryReporter) -> None:
    headers = serve(op="/api/users")
    assert set(headers) == {"sw6"}
    seg = reporter.segments[0]
    h = decode_sw6(headers["sw6"])
    assert h.trace_id == seg.related_traces[0] and h.segment_id == seg.segment_id
    assert (h.span_id, h.parent_instance_id, h.entry_instance_id) == (1, 2, 2)
    assert (h.peer, h.entry_endpoint, h.parent_endpoint) == ("#127.0.0.1:9090", "#/api/users", "#/api/users")


def test_inject_from_local_first_span_uses_no_endpoint(reporter: MemoryReporter) -> None:
    ctx = get_context()
    with ctx.new_local_span("job"):
        with ctx.new_exit_span("/down", "10.0.0.5:8080") as exit_span:
            h = decode_sw6(outbound(exit_span)["sw6"])
    assert (h.entry_endpoint, h.parent_endpoint) == ("-1", "-1")


def test_extract_sw6_java_header_continues_the_trace(reporter: MemoryReporter) -> None:
    e1 = "1-My40LjU=-MS4yLjM=-4-1-1-IzEyNy4wLjAuMTo4MDgw-Iy9wb3J0YWw=-MTIz"
    headers = serve(op="/svc", headers={"sw6": e1})
    seg = reporter.segments[0]
    entry = seg.spans[-1]
    assert seg.related_traces[0].value == "3.4.5"
    (ref,) = entry.refs
    assert (ref.ref_type, ref.trace_id.value, ref.segment_id.parts, ref.span_id) == ("CrossProcess", "3.4.5",
                                                                                    (1, 2, 3), 4)
    assert (ref.parent_instance, ref.entry_instance, ref.client_address) == (1, 1, "127.0.0.1:8080")
    assert (ref.entry_endpoint, ref.entry_endpoint_id, ref.endpoint, ref.endpoint_id) == ("/portal", 0, "", 123)
    # the next hop keeps the caller's trace and entry (instance 1, /portal); we are the parent
    h = decode_sw6(headers["sw6"])
    assert (h.trace_id.value, h.segment_id, h.parent_instance_id) == ("3.4.5", seg.segment_id, 2)
    assert (h.entry_instance_id, h.entry_endpoint, h.parent_endpoint) == (1, "#/portal", "#/svc")


def test_empty_inbound_endpoint_is_never_reemitted_empty(reporter: MemoryReporter) -> None:
    headers = serve(headers={"sw6": "1-My40LjU=-MS4yLjM=-4-1-1-IzEyNy4wLjAuMTo4MDgw--"})
    h = decode_sw6(headers["sw6"])
    assert h.entry_endpoint == "-1" and h.entry_instance_id == 1
    ref = reporter.segments[0].spans[-1].refs[0]
    assert (ref.entry_endpoint_id, ref.endpoint_id) == (-1, -1)


def test_malformed_header_starts_a_new_trace(reporter: MemoryReporter, caplog: pytest.LogCaptureFixture) -> None:
    logging.getLogger("skywalking").addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG, logger="skywalking")
    try:
        headers = serve(headers={"sw6": "1-My40LjU=-garbage"})
    finally:
        logging.getLogger("skywalking").removeHandler(caplog.handler)
    seg = reporter.segments[0]
    assert seg.spans[-1].refs == () and seg.related_traces[0] == seg.segment_id
    assert "sw6" in headers and "3 fields" in caplog.text


def test_untraced_request_injects_nothing() -> None:
    span = get_context().new_exit_span("/x", "h:1")
    with span:
        assert outbound(span) == {}


def test_propagation_sw6_and_sw8(start_agent: object) -> None:
    rep = start_agent(agent_propagation="sw6,sw8", agent_name="svc-a")  # type: ignore[operator]
    ctx = get_context()
    with ctx.new_entry_span("/a"):
        ctx.put_correlation("tenant", "t1")
        with ctx.new_exit_span("/b", "host:80") as exit_span:
            headers = outbound(exit_span)
    assert list(headers) == ["sw6", "sw8-correlation", "sw8"]
    sw8 = decode_sw8(headers["sw8"])
    seg = rep.segments[0]
    assert (sw8.trace_id, sw8.segment_id, sw8.span_id) == (seg.related_traces[0], seg.segment_id, 1)
    assert (sw8.service, sw8.service_instance, sw8.endpoint, sw8.client_address) == (
        "svc-a", config.agent_instance_name, "/a", "host:80")
    assert decode_sw6(headers["sw6"]).trace_id == seg.related_traces[0]


def test_v8_mode_string_ids_and_sw8_refs(start_agent: object) -> None:
    rep = start_agent(agent_protocol_version="v8", agent_name="svc-b")  # type: ignore[operator]
    sw8_in = "1-My40LjU=-MS4yLjM=-4-c2VydmljZQ==-aW5zdGFuY2U=-L2FwcA==-MTI3LjAuMC4xOjgwODA="
    headers = serve(headers={"sw8": sw8_in})
    seg = rep.segments[0]
    assert seg.segment_id.parts is None and len(seg.segment_id.value.split(".")) == 3
    (ref,) = seg.spans[-1].refs
    assert (ref.service, ref.service_instance, ref.endpoint, ref.client_address) == (
        "service", "instance", "/app", "127.0.0.1:8080")
    assert list(headers) == ["sw8"] and decode_sw8(headers["sw8"]).trace_id.value == "3.4.5"


def test_cross_version_keeps_the_trace_id_only(start_agent: object) -> None:
    # docs/protocol/sw6.md §9.5: under v6 an sw8 caller's instance is a name the OAP 6 cannot map: trace id only
    rep = start_agent()  # type: ignore[operator]
    serve(headers={"sw8": "1-My40LjU=-MS4yLjM=-4-c2VydmljZQ==-aW5zdGFuY2U=-L2FwcA==-MTI3LjAuMC4xOjgwODA="})
    seg = rep.segments[0]
    assert seg.related_traces[0].parts == (3, 4, 5) and seg.spans[-1].refs == ()
    # a Java-8 style id (hex first part) has no sw6 form: new trace
    java8 = "1-" + "YWJjZGVmLjEuMg==" + "-MS4yLjM=-4-c2VydmljZQ==-aW5zdGFuY2U=-L2FwcA==-MTI3LjAuMC4xOjgwODA="
    serve(headers={"sw8": java8})
    seg = rep.segments[1]
    assert seg.related_traces[0] == seg.segment_id
    # both headers: sw6 wins under v6
    serve(headers={"sw8": java8, "sw6": "1-My40LjU=-MS4yLjM=-4-1-1-IzEyNy4wLjAuMTo4MDgw-Iy9wb3J0YWw=-MTIz"})
    assert rep.segments[2].spans[-1].refs[0].parent_instance == 1


def test_namespace_prefixes_the_sw6_header(start_agent: object) -> None:
    start_agent(agent_namespace="prod")  # type: ignore[operator]
    headers = serve()
    assert list(headers) == ["prod-sw6"]
    carrier = Carrier()
    assert [item.key for item in carrier] == ["prod-sw6", "sw8-correlation", "sw8"]


def test_exceptions_mark_spans_and_propagate(reporter: MemoryReporter) -> None:
    before = int(time.time() * 1000)
    with pytest.raises(ZeroDivisionError):
        with get_context().new_entry_span("/boom"):
            1 / 0  # noqa: B018
    (span,) = reporter.segments[0].spans
    assert span.error_occurred
    (log,) = span.logs
    assert log.timestamp >= before  # not the import time (upstream bug)
    assert log.items[0].key == "Traceback" and "ZeroDivisionError" in log.items[0].val


def test_span_limit_per_segment(reporter: MemoryReporter) -> None:
    ctx = get_context()
    with ctx.new_entry_span("/many"):
        for i in range(400):
            with ctx.new_local_span(f"op{i}") as span:
                if i == 350:
                    assert isinstance(span, NoopSpan)
                    with get_context().new_exit_span("/x", "h:1") as inner:
                        assert isinstance(inner, NoopSpan) and outbound(inner) == {}
    seg = reporter.segments[0]
    assert len(seg.spans) == 300 and seg.is_size_limited
    assert sorted(s.sid for s in seg.spans) == list(range(300))


def test_operation_names_are_capped(reporter: MemoryReporter) -> None:
    with get_context().new_local_span("x" * 600):
        pass
    assert len(reporter.segments[0].spans[0].op) == 500


def test_ignored_operations_and_their_children(start_agent: object) -> None:
    rep = start_agent(agent_trace_ignore_path="/health/**")  # type: ignore[operator]
    ctx = get_context()
    with ctx.new_entry_span("/health/live") as span:
        assert isinstance(span, NoopSpan)
        with get_context().new_exit_span("/db", "db:5432") as child:
            assert isinstance(child, NoopSpan)
    with get_context().new_entry_span("/static/app.js"):
        pass
    serve("/api")
    assert [seg.spans[-1].op for seg in rep.segments] == ["/api"]


def test_sampling_keeps_n_roots_and_every_propagated_trace(start_agent: object) -> None:
    rep = start_agent(sample_n_per_3_secs=2)  # type: ignore[operator]
    for _ in range(5):
        serve()
    e1 = "1-My40LjU=-MS4yLjM=-4-1-1-IzEyNy4wLjAuMTo4MDgw-Iy9wb3J0YWw=-MTIz"
    for _ in range(3):
        serve(headers={"sw6": e1})
    assert rep.count == 2 + 3
    assert sum(1 for seg in rep.segments if seg.related_traces[0].value == "3.4.5") == 3


def test_entry_span_reuse_with_inherit(reporter: MemoryReporter) -> None:
    ctx = get_context()
    with ctx.new_entry_span("/raw") as outer:
        outer.component = Component.General
        outer.tag(TagHttpURL("http://x/raw"))
        with ctx.new_entry_span("/route/{id}", inherit=Component.General) as inner:
            assert inner is outer
            assert inner.tags == () and inner.component is Component.Unknown  # re-described by the inner plugin
            inner.component = Component.Flask
    (span,) = reporter.segments[0].spans
    assert (span.op, span.component) == ("/route/{id}", Component.Flask)


def test_values_set_before_entering_are_kept(reporter: MemoryReporter) -> None:
    span = get_context().new_entry_span("/x")
    span.component = Component.FastAPI
    span.tag(TagHttpMethod("POST"))
    with span:
        pass
    assert reporter.segments[0].spans[0].component is Component.FastAPI  # upstream wiped these on start


def test_tags_override_and_accumulate(reporter: MemoryReporter) -> None:
    class TagTeam(Tag):
        key = "team"

    with get_context().new_local_span("x") as span:
        span.tag(TagTeam("a")).tag(TagTeam(3)).tag(TagDbSqlParameters("[1]")).tag(TagDbSqlParameters("[2]"))
    assert [(t.key, t.val) for t in reporter.segments[0].spans[0].tags] == [
        ("team", "3"), ("db.sql.parameters", "[1]"), ("db.sql.parameters", "[2]")]


def test_correlation_limits(reporter: MemoryReporter) -> None:
    ctx = get_context()
    with ctx.new_entry_span("/c"):
        for i in range(6):
            ctx.put_correlation(f"k{i}", "v")
        ctx.put_correlation("long", "x" * 129)
        assert [ctx.get_correlation(f"k{i}") for i in range(4)] == ["v", "v", "v", None]  # max 3, not 4
        ctx.put_correlation("k0", None)
        assert ctx.get_correlation("k0") is None and ctx.get_correlation("long") is None


def test_asyncio_children_share_the_segment(reporter: MemoryReporter) -> None:
    async def call(name: str) -> None:
        with get_context().new_exit_span(name, "h:1"):
            await asyncio.sleep(0.01)

    async def handler() -> None:
        with get_context().new_entry_span("/async"):
            await asyncio.gather(call("/a"), call("/b"), asyncio.create_task(call("/c")))

    asyncio.run(handler())
    assert reporter.count == 1
    spans = reporter.segments[0].spans
    assert sorted(s.op for s in spans) == ["/a", "/async", "/b", "/c"]
    assert {s.pid for s in spans if s.kind is Kind.Exit} == {0}


def test_task_that_outlives_its_request_continues_the_trace(reporter: MemoryReporter) -> None:
    async def later() -> None:
        await asyncio.sleep(0.02)
        with get_context().new_local_span("/late"):
            pass

    async def main() -> None:
        with get_context().new_entry_span("/req"):
            task = asyncio.create_task(later())
        await task

    asyncio.run(main())
    first, second = reporter.segments
    assert second.spans[0].op == "/late" and second.related_traces[0] == first.related_traces[0]
    (ref,) = second.spans[0].refs
    assert (ref.ref_type, ref.segment_id, ref.span_id) == ("CrossThread", first.segment_id, 0)


def test_thread_with_copied_context_gets_its_own_linked_segment(reporter: MemoryReporter) -> None:
    def work() -> None:
        with get_context().new_exit_span("/in-thread", "h:1"):
            pass

    with get_context().new_entry_span("/parent"):
        t = threading.Thread(target=contextvars.copy_context().run, args=(work,))
        t.start()
        t.join()
    by_op = {seg.spans[-1].op: seg for seg in reporter.segments}
    child, parent = by_op["/in-thread"], by_op["/parent"]
    assert child.segment_id != parent.segment_id and child.related_traces == parent.related_traces
    (ref,) = child.spans[0].refs
    assert (ref.ref_type, ref.segment_id, ref.span_id, ref.parent_instance) == (
        "CrossThread", parent.segment_id, 0, parent.identity)
    assert (ref.entry_endpoint, ref.endpoint) == ("/parent", "/parent")


def test_capture_and_continued(reporter: MemoryReporter) -> None:
    results: list[str] = []

    def worker(snapshot: object) -> None:
        ctx = get_context()
        with ctx.new_local_span("/worker"):
            ctx.continued(snapshot)  # type: ignore[arg-type]
            results.append(ctx.get_correlation("k") or "")

    ctx = get_context()
    with ctx.new_entry_span("/main"):
        ctx.put_correlation("k", "v")
        snap = ctx.capture()
        t = threading.Thread(target=worker, args=(snap,))
        t.start()
        t.join()
    assert results == ["v"]
    by_op = {seg.spans[-1].op: seg for seg in reporter.segments}
    ref = by_op["/worker"].spans[0].refs[0]
    assert ref.ref_type == "CrossThread" and ref.segment_id == by_op["/main"].segment_id
    assert by_op["/worker"].related_traces == by_op["/main"].related_traces


def test_runnable_keeps_return_values_and_links(reporter: MemoryReporter) -> None:
    out: list[int] = []

    @runnable(op="module-level")
    def compute(x: int) -> int:
        return x * 2

    with get_context().new_entry_span("/r"):
        @runnable()
        def inline(x: int) -> None:
            out.append(compute(x))

        bound = compute.continue_tracing()
        threads = [threading.Thread(target=inline, args=(4,)), threading.Thread(target=lambda: out.append(bound(5)))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(out) == [8, 10]
    root = next(seg for seg in reporter.segments if seg.spans[-1].op == "/r")
    linked = [seg for seg in reporter.segments if seg.related_traces == root.related_traces and seg is not root]
    assert {seg.spans[-1].op for seg in linked} == {"Thread/inline", "module-level"}


def test_trace_decorator_sync_async_generators(reporter: MemoryReporter) -> None:
    @trace()
    def f(x: int) -> int:
        return x + 1

    @trace(op="agen", layer=Layer.Cache)
    async def g() -> int:
        return 7

    @trace(op="gen")
    def h() -> object:
        yield 1
        yield 2

    assert f(1) == 2 and asyncio.run(g()) == 7 and list(h()) == [1, 2]
    ops = sorted(seg.spans[0].op for seg in reporter.segments)
    assert ops == ["agen", "gen", "test_trace_decorator_sync_async_generators.<locals>.f"]


def test_span_finished_from_another_thread(reporter: MemoryReporter) -> None:
    ctx = get_context()
    with ctx.new_entry_span("/stream"):
        with ctx.new_exit_span("/call", "h:1") as span:
            span.prepare_async()
        # the exit block is left; the call goes on elsewhere
    assert reporter.count == 0  # the segment waits for the async span
    done = threading.Event()

    def callback() -> None:
        time.sleep(0.05)
        span.async_finish()
        done.set()

    threading.Thread(target=callback).start()
    assert done.wait(2) and reporter.wait_for(1)
    seg = reporter.segments[0]
    exit_span = next(s for s in seg.spans if s.op == "/call")
    entry = next(s for s in seg.spans if s.op == "/stream")
    assert exit_span.end_time - exit_span.start_time >= 40 and exit_span.end_time >= entry.end_time
    span.async_finish()  # idempotent
    assert reporter.count == 1


def test_suppress_tracing_is_a_context_flag(reporter: MemoryReporter) -> None:
    with suppress_tracing():
        assert isinstance(get_context(), NoopContext)
        serve()
    assert reporter.count == 0
    serve()
    assert reporter.count == 1


def test_held_context_used_again_keeps_its_trace(reporter: MemoryReporter) -> None:
    ctx = get_context()
    assert isinstance(ctx, SpanContext)
    with ctx.new_entry_span("/one"):
        pass
    with ctx.new_local_span("/two"):
        pass
    one, two = reporter.segments
    assert one.segment_id != two.segment_id and one.related_traces == two.related_traces


def test_second_start_is_a_logged_no_op(reporter: MemoryReporter, caplog: pytest.LogCaptureFixture) -> None:
    logging.getLogger("skywalking").addHandler(caplog.handler)
    try:
        other = MemoryReporter()
        agent.start(reporter=other)
    finally:
        logging.getLogger("skywalking").removeHandler(caplog.handler)
    assert "already started" in caplog.text
    serve()
    assert (reporter.count, other.count) == (1, 0)


def test_stop_then_start_again(reporter: MemoryReporter) -> None:
    agent.stop()
    agent.stop()  # never raises, idempotent
    assert not agent.started() and isinstance(get_context(), NoopContext)
    rep2 = MemoryReporter()
    agent.start(reporter=rep2)
    serve()
    assert agent.started() and (reporter.count, rep2.count) == (0, 1)


def test_reporter_failure_never_reaches_the_application(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(MemoryReporter):
        def report(self, segment: object) -> bool:
            raise RuntimeError("disk full")

    agent.start(reporter=Broken())
    logging.getLogger("skywalking").addHandler(caplog.handler)
    try:
        serve()
    finally:
        logging.getLogger("skywalking").removeHandler(caplog.handler)
    assert "disk full" in caplog.text


def test_a_span_used_after_its_segment_was_reported_is_counted_never_raised(reporter: MemoryReporter) -> None:
    """A span made in a request and started later (e.g. by a streamed response body) finds its segment gone:
    it is counted in ``spans_after_segment``, and nothing reaches the application."""
    ctx = get_context()
    with ctx.new_entry_span(op="/req"):
        late = ctx.new_exit_span(op="/late", peer="db:5432", component=Component.Psycopg)
        late_async = ctx.new_exit_span(op="/late-async", peer="db:5432", component=Component.Psycopg)
    assert reporter.count == 1
    before = TRACER.spans_after_segment
    with late:
        pass
    with late_async:
        late_async.prepare_async()
    late_async.async_finish()
    assert TRACER.spans_after_segment == before + 2
    assert reporter.count == 1 and [s.op for s in reporter.segments[0].spans] == ["/req"]
    assert get_context().active_span is None
