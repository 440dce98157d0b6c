"""sw_grpc. End to end: sync and ``grpc.aio`` servers on 127.0.0.1 called by an ``http.server`` front with sync and
aio channels, the front called with sw6 as a SkyWalking 6.6.0 service would; checked against expected/grpc.json
(``exact``: the agents' own gRPC reporting adds no segment). In process: what the collector cannot show under sw6
(the entry span's peer), futures, handler exceptions, untraced creators, interceptor order, metadata copies,
method filters, failures inside the plugin and uninstall."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import pytest

from skywalking import Kind, config
from skywalking.plugins import sw_grpc
from skywalking.reporter.memory import MemoryReporter
from skywalking.trace.context import get_context
from tests.plugins.harness import Services, port_of

grpc = pytest.importorskip("grpc")

HERE = Path(__file__).parent
APP = HERE / "apps" / "grpc_app.py"
IGNORED = "/demo.Greeter/Ignored"


def start(services: Services, mode: str, name: str, *args: str) -> int:
    """Start a grpc_app.py process traced as ``name``; its port."""
    return port_of(services.python(APP, mode, *args, name=name, SW_PLUGIN_GRPC_IGNORED_METHODS=IGNORED))


def by_span_id(segments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Exit spans of streamed and aio calls end in gRPC callbacks, in no fixed order: compare in span id order."""
    return [{**seg, "spans": sorted(seg["spans"], key=lambda span: span["spanId"])} for seg in segments]


def test_grpc_servers_and_clients_sync_and_aio() -> None:
    with Services() as services:
        sync_port = start(services, "sync-server", "grpc-sync")
        aio_port = start(services, "aio-server", "grpc-aio")
        front_port = start(services, "front", "grpc-front", f"127.0.0.1:{sync_port}", f"127.0.0.1:{aio_port}")
        assert services.call_front(front_port, "/front")["results"] == ["hello sync", "0,1", "3", "A,B", "hello x",
                                                                        "hello aio", "0,1", "3", "AB,C"]
        with pytest.raises(urllib.error.HTTPError) as failed:  # an untraced caller
            urllib.request.urlopen(f"http://127.0.0.1:{front_port}/front-fail", timeout=10)
        assert failed.value.code == 502
        assert json.load(failed.value)["results"] == ["INVALID_ARGUMENT", "NOT_FOUND"]

        segments = services.check("grpc.json", arrange=by_span_id, front=front_port, sync=sync_port, aio=aio_port)

        # a streamed call's exit span ends once the stream is done: not before the server's entry span
        def span(service: str, op: str, kind: str) -> dict[str, Any]:
            return next(s for seg in segments if seg["service"] == service for s in seg["spans"]
                        if s["operationName"] == op and s["spanType"] == kind)

        for server, port in (("grpc-sync", sync_port), ("grpc-aio", aio_port)):
            exits = [s for seg in segments if seg["service"] == "grpc-front" for s in seg["spans"]
                     if s["operationName"] == "/demo.Greeter/Count" and s["peer"] == f"127.0.0.1:{port}"]
            assert exits[0]["endTime"] >= span(server, "/demo.Greeter/Count", "Entry")["endTime"]


# -- in process ---------------------------------------------------------------------------------

def _hello(request: bytes, context: Any) -> bytes:
    """``hello <request> sw6`` when the call carried an sw6 header, ``hello <request> -`` otherwise."""
    return b"hello " + request + (b" sw6" if dict(context.invocation_metadata()).get("sw6") else b" -")


def _boom(request: bytes, context: Any) -> bytes:
    raise ValueError("boom")


def _count(request: bytes, context: Any) -> Iterator[bytes]:
    yield b"0"
    yield b"1"


def _where(request: bytes, context: Any) -> bytes:
    return threading.current_thread().name.encode()


@pytest.fixture
def server() -> Iterator[str]:
    """A sync server (traced: created here) with Hello, Boom, Count and Where (run in a pool of its own, as
    grpc's ``experimental_thread_pool`` attribute asks); yields its target."""
    own_pool = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="own-pool")
    _where.experimental_thread_pool = own_pool  # type: ignore[attr-defined]
    handler = grpc.method_handlers_generic_handler("demo.Greeter", {
        "Hello": grpc.unary_unary_rpc_method_handler(_hello),
        "Boom": grpc.unary_unary_rpc_method_handler(_boom),
        "Count": grpc.unary_stream_rpc_method_handler(_count),
        "Where": grpc.unary_unary_rpc_method_handler(_where),
    })
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[handler])
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    yield f"127.0.0.1:{port}"
    srv.stop(0)
    own_pool.shutdown()


def test_entry_peer_future_and_handler_exception(reporter: MemoryReporter, server: str) -> None:
    assert sw_grpc.plugin.installed
    channel = grpc.insecure_channel(server)
    with get_context().new_entry_span("/root"):
        assert channel.unary_unary("/demo.Greeter/Hello").future(b"x").result(timeout=10) == b"hello x sw6"
        with pytest.raises(grpc.RpcError) as failed:
            channel.unary_unary("/demo.Greeter/Boom")(b"x", timeout=10)
        assert failed.value.code() == grpc.StatusCode.UNKNOWN
        stream = channel.unary_stream("/demo.Greeter/Count")(b"x", timeout=10)
        assert next(stream) == b"0"
    assert reporter.wait_for(3) and not reporter.wait_for(4, timeout=0.3)  # the root waits for the stream
    assert list(stream) == [b"1"]
    assert reporter.wait_for(4)
    channel.close()
    spans = {(span.kind, span.op): span for span in reporter.spans()}
    hello = spans[Kind.Entry, "/demo.Greeter/Hello"]
    assert hello.peer.startswith("127.0.0.1:") and len(hello.refs) == 1
    boom = spans[Kind.Entry, "/demo.Greeter/Boom"]
    assert boom.error_occurred and "ValueError: boom" in boom.logs[0].items[0].val
    assert {t.key: t.val for t in boom.tags}["grpc.status_code"] == "UNKNOWN"
    out = spans[Kind.Exit, "/demo.Greeter/Boom"]
    assert out.error_occurred and not out.logs and out.peer == server
    assert spans[Kind.Exit, "/demo.Greeter/Count"].end_time >= spans[Kind.Entry, "/demo.Greeter/Count"].end_time


def test_handler_attributes_grpc_reads_are_kept(reporter: MemoryReporter, server: str) -> None:
    with grpc.insecure_channel(server) as channel:
        assert channel.unary_unary("/demo.Greeter/Where")(b"", timeout=10).startswith(b"own-pool")
    assert reporter.wait_for(2)
    assert sorted((span.kind.name, span.op) for span in reporter.spans()) == [("Entry", "/demo.Greeter/Where"),
                                                                            ("Exit", "/demo.Greeter/Where")]


def test_metadata_is_copied_and_nested_exit_spans_add_nothing(reporter: MemoryReporter, server: str) -> None:
    metadata = [("x-user", "1")]
    with grpc.insecure_channel(server) as channel, get_context().new_entry_span("/root"):
        assert channel.unary_unary("/demo.Greeter/Hello")(b"x", metadata=metadata, timeout=10) == b"hello x sw6"
        with get_context().new_exit_span("/mine", peer="somewhere"):  # the user's own exit span
            assert channel.unary_unary("/demo.Greeter/Hello")(b"y", timeout=10) == b"hello y -"
    assert metadata == [("x-user", "1")]
    assert reporter.wait_for(3)
    exits = [span.op for span in reporter.spans() if span.kind is Kind.Exit]
    assert exits == ["/demo.Greeter/Hello", "/mine"]


def test_agent_and_ray_code_gets_plain_servers_and_channels(reporter: MemoryReporter, server: str) -> None:
    traced = grpc.insecure_channel(server)
    for module in ("skywalking.reporter.fake", "ray._private.fake"):
        scope: dict[str, Any] = {"__name__": module, "grpc": grpc, "target": server}
        exec("channel = grpc.insecure_channel(target)", scope)  # as if called from that module
        assert type(scope["channel"]) is not type(traced)
        scope["channel"].close()
        exec("srv = grpc.server(None)", scope)
        assert not scope["srv"]._state.interceptor_pipeline
        scope["srv"].stop(None)
    traced.close()
    ours = grpc.server(None)  # created here: traced
    assert ours._state.interceptor_pipeline
    ours.stop(None)


def test_our_interceptors_come_first_and_the_callers_are_kept(reporter: MemoryReporter) -> None:
    from grpc import aio

    class Mine(aio.UnaryUnaryClientInterceptor):
        async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            return await continuation(details, request)

    class MineOnServers(grpc.ServerInterceptor):
        def intercept_service(self, continuation: Any, details: Any) -> Any:
            return continuation(details)

    async def channels() -> None:
        mine = [Mine()]
        secure = aio.secure_channel("127.0.0.1:1", grpc.ssl_channel_credentials(), None, None, mine)
        insecure = aio.insecure_channel("127.0.0.1:1", interceptors=mine)
        try:
            for channel in (secure, insecure):
                first, second = channel._unary_unary_interceptors
                assert type(first).__module__ == sw_grpc.__name__ and second is mine[0]
                assert type(channel._stream_stream_interceptors[0]).__module__ == sw_grpc.__name__
        finally:
            await secure.close()
            await insecure.close()
        assert len(mine) == 1

    asyncio.run(channels())
    on_servers = [MineOnServers()]
    srv = grpc.server(None, None, on_servers)
    first, second = srv._state.interceptor_pipeline.interceptors
    assert type(first).__module__ == sw_grpc.__name__ and second is on_servers[0] and len(on_servers) == 1
    srv.stop(None)


def test_own_and_ignored_methods_are_not_traced() -> None:
    assert not sw_grpc.traced_method("/TraceSegmentReportService/collect")
    assert not sw_grpc.traced_method("/Register/doServiceRegister")
    assert not sw_grpc.traced_method("/skywalking.v3.ManagementService/keepAlive")
    assert not sw_grpc.traced_method("/ray.rpc.NodeManagerService/RequestWorkerLease")
    assert not sw_grpc.traced_method("/opentelemetry.proto.collector.metrics.v1.MetricsService/Export")
    assert sw_grpc.traced_method("/demo.Greeter/Hello")
    config.init(plugin_grpc_ignored_methods="/Demo.Greeter/Hello")
    config.finalize()
    assert not sw_grpc.traced_method("/demo.Greeter/Hello")
    assert sw_grpc.peer_from_grpc_address("ipv4:127.0.0.1:50768") == "127.0.0.1:50768"
    assert sw_grpc.peer_from_grpc_address("ipv6:%5B::1%5D:50768") == "[::1]:50768"
    assert sw_grpc.peer_from_grpc_address("unix:/tmp/sock") == "unix:/tmp/sock"


def test_a_failing_plugin_never_fails_the_call(reporter: MemoryReporter, server: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("plugin bug")

    monkeypatch.setattr(sw_grpc, "get_context", broken)  # both the client and the server side
    with grpc.insecure_channel(server) as channel:
        assert channel.unary_unary("/demo.Greeter/Hello")(b"x", timeout=10) == b"hello x -"
        assert list(channel.unary_stream("/demo.Greeter/Count")(b"x", timeout=10)) == [b"0", b"1"]
    assert reporter.count == 0


def test_uninstall_restores_the_factories(reporter: MemoryReporter) -> None:
    from grpc import aio

    patched = (grpc.server, grpc.insecure_channel, grpc.secure_channel, aio.server, aio.insecure_channel,
               aio.secure_channel)
    sw_grpc.plugin.uninstall()
    try:
        restored = (grpc.server, grpc.insecure_channel, grpc.secure_channel, aio.server, aio.insecure_channel,
                    aio.secure_channel)
        assert all(type(p).__name__ == "FunctionWrapper" for p in patched)
        assert not any(type(r).__name__ == "FunctionWrapper" for r in restored)
    finally:
        assert sw_grpc.plugin.install()
