"""sw_sanic with Sanic's own server on 127.0.0.1: a caller that sends sw6 as a SkyWalking 6.6.0 service would
(route templates on), checked against expected/sanic.json (the scenario of test_web.py); in process, through
Sanic's ASGI interface: the path as op by default, a ``SanicException`` answer, ``http.params``, sw8 inbound,
``plugin_http_ignore_method``, uninstall."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

sanic = pytest.importorskip("sanic")

from skywalking import Component, Kind  # noqa: E402
from skywalking.plugins import sw_sanic  # noqa: E402
from skywalking.reporter.memory import MemoryReporter  # noqa: E402
from tests.plugins.harness import Services, port_of  # noqa: E402
from tests.plugins.test_web import check_front  # noqa: E402

HERE = Path(__file__).parent
SW8 = "1-My40LjU=-MS4yLjM=-4-c2VydmljZQ==-aW5zdGFuY2U=-L2FwcA==-MTI3LjAuMC4xOjgwODA="


def test_sanic_entry_spans_continue_the_caller() -> None:
    check_front([sys.executable, str(HERE / "apps" / "sanic_app.py")], "plugin-sanic", "sanic.json", 4,
                SW_PLUGIN_HTTP_ROUTE_TEMPLATE="true")


def test_keep_alive_and_a_websocket_route() -> None:
    """Two requests on one keep-alive connection are two spans; a websocket route, which gets no response signal,
    ends with its connection."""
    import http.client

    websockets_client = pytest.importorskip("websockets.sync.client")
    with Services() as services:
        port = port_of(services.python(HERE / "apps" / "sanic_app.py", "http://127.0.0.1:9", name="plugin-sanic"))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(2):
            conn.request("GET", "/teapot")
            response = conn.getresponse()
            assert response.status == 418 and b"short and stout" in response.read()
        conn.close()
        with websockets_client.connect(f"ws://127.0.0.1:{port}/ws") as ws:
            ws.send("hi")
            assert ws.recv() == "hi"
        segments = services.check(None, segments=3)
    spans = sorted((seg["spans"][-1] for seg in segments), key=lambda span: span["operationName"])
    assert [span["operationName"] for span in spans] == ["/teapot", "/teapot", "/ws"]
    assert all(span["componentId"] == 7007 and span["spanType"] == "Entry" for span in spans)
    assert [span["isError"] for span in spans] == [True, True, False]
    assert {t["key"]: t["value"] for t in spans[2]["tags"]}["http.url"] == f"ws://127.0.0.1:{port}/ws"


# -- in process, through the application's ASGI interface ---------------------------------------------------------

def make_app() -> Any:
    from sanic.exceptions import SanicException
    from sanic.response import text

    app = sanic.Sanic("t" + uuid.uuid4().hex[:12])
    app.config.TOUCHUP = False  # Sanic rewrites its own methods once per process: a second app cannot start

    @app.route("/items/<item_id:int>", methods=["GET", "POST"])
    async def item(request: Any, item_id: int) -> Any:
        return text(str(item_id))

    @app.get("/teapot")
    async def teapot(request: Any) -> Any:
        raise SanicException("short and stout", status_code=418)

    @app.get("/boom")
    async def boom(request: Any) -> Any:
        raise RuntimeError("boom")

    return app


def serve(app: Any, *requests: tuple[str, str, dict[str, str]]) -> list[int]:
    """Start ``app`` (ASGI lifespan), send each ``(method, path?query, headers)``, stop it; the statuses."""
    async def run() -> list[int]:
        life_in: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        life_out: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await life_in.put({"type": "lifespan.startup"})
        lifespan = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, life_in.get,
                                           life_out.put))
        assert (await life_out.get())["type"] == "lifespan.startup.complete"
        statuses = []
        for method, target, headers in requests:
            path, _, query = target.partition("?")
            sent: list[dict[str, Any]] = []

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: dict[str, Any], sent: list[dict[str, Any]] = sent) -> None:
                sent.append(message)

            raw = [(b"host", b"127.0.0.1:8000")] + [(k.encode(), v.encode()) for k, v in headers.items()]
            await app({"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                       "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
                       "root_path": "", "headers": raw, "client": ("127.0.0.1", 5000),
                       "server": ("127.0.0.1", 8000)}, receive, send)
            statuses.append(sent[0]["status"])
        await life_in.put({"type": "lifespan.shutdown"})
        await life_out.get()
        await lifespan
        return statuses

    return asyncio.run(run())


def entry_spans(reporter: MemoryReporter, count: int) -> list[Any]:
    assert reporter.wait_for(count)
    time.sleep(0.1)  # nothing more arrives
    spans = [s for seg in list(reporter.segments) for s in seg.spans]
    assert all(s.kind is Kind.Entry and s.component == Component.Sanic for s in spans), spans
    assert len(spans) == count, spans
    return spans


def tags(span: Any) -> dict[str, str]:
    return {tag.key: tag.val for tag in span.tags}


def test_path_as_op_params_and_errors(start_agent: Any) -> None:
    reporter = start_agent(plugin_sanic_collect_http_params=True)
    assert serve(make_app(), ("GET", "/items/7?q=1&q=2", {}), ("GET", "/teapot", {}), ("GET", "/boom", {})) == [
        200, 418, 500]
    item, teapot, boom = entry_spans(reporter, 3)
    assert item.op == "/items/7" and not item.error_occurred and item.peer == "127.0.0.1:5000"
    assert tags(item) == {"http.method": "GET", "http.url": "http://127.0.0.1:8000/items/7?q=1&q=2",
                          "http.params": "q=[1,2]", "http.status_code": "200"}
    assert teapot.error_occurred and tags(teapot)["http.status_code"] == "418" and teapot.logs == ()
    assert boom.error_occurred and tags(boom)["http.status_code"] == "500"
    assert "RuntimeError: boom" in boom.logs[0].items[0].val


def test_route_template(start_agent: Any) -> None:
    reporter = start_agent(plugin_http_route_template=True)
    assert serve(make_app(), ("GET", "/items/7", {}), ("GET", "/missing", {})) == [200, 404]
    item, missing = entry_spans(reporter, 2)
    assert item.op == "/items/<item_id:int>"
    assert missing.op == "/missing" and missing.error_occurred and missing.logs == ()


def test_sw8_inbound(start_agent: Any) -> None:
    reporter = start_agent(agent_protocol_version="v8")
    assert serve(make_app(), ("GET", "/items/7", {"sw8": SW8})) == [200]
    (span,) = entry_spans(reporter, 1)
    (ref,) = span.refs
    assert (ref.service, ref.service_instance, ref.endpoint, ref.client_address) == (
        "service", "instance", "/app", "127.0.0.1:8080")


def test_an_ignored_method_makes_no_span(start_agent: Any) -> None:
    reporter = start_agent(plugin_http_ignore_method="GET,OPTIONS")
    assert serve(make_app(), ("GET", "/items/7", {}), ("POST", "/items/7", {})) == [200, 200]
    (span,) = entry_spans(reporter, 1)
    assert tags(span)["http.method"] == "POST"


def test_uninstall_restores_the_originals(start_agent: Any) -> None:
    import wrapt

    reporter = start_agent()
    plugin = sw_sanic.plugin
    assert plugin.installed
    traced_before = make_app()
    assert isinstance(vars(sanic.Sanic)["__init__"], wrapt.FunctionWrapper)
    plugin.uninstall()
    try:
        assert not isinstance(vars(sanic.Sanic)["__init__"], wrapt.FunctionWrapper)
        # an application made while installed keeps its signal handlers, which now do nothing
        assert serve(traced_before, ("GET", "/items/7", {})) == [200]
        assert serve(make_app(), ("GET", "/items/7", {})) == [200]
        time.sleep(0.3)
        assert len(reporter.segments) == 0
    finally:
        plugin.install()
    assert serve(make_app(), ("GET", "/items/7", {})) == [200]
    entry_spans(reporter, 1)
