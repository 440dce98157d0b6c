"""sw_tornado with a real Tornado server on 127.0.0.1: a caller that sends sw6 as a SkyWalking 6.6.0 service would
(route templates on), checked against expected/tornado.json (the scenario of test_web.py); in process: the path as
op by default, an ``HTTPError`` answer, sw8 inbound, ``plugin_http_ignore_method``, uninstall."""

from __future__ import annotations

import asyncio
import http.client
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

tornado_web = pytest.importorskip("tornado.web")

from skywalking import Component, Kind  # noqa: E402
from skywalking.plugins import sw_tornado  # noqa: E402
from skywalking.reporter.memory import MemoryReporter  # noqa: E402
from tests.plugins.test_web import check_front  # noqa: E402

HERE = Path(__file__).parent
SW8 = "1-My40LjU=-MS4yLjM=-4-c2VydmljZQ==-aW5zdGFuY2U=-L2FwcA==-MTI3LjAuMC4xOjgwODA="


def test_tornado_entry_spans_continue_the_caller() -> None:
    check_front([sys.executable, str(HERE / "apps" / "tornado_app.py")], "plugin-tornado", "tornado.json", 4,
                SW_PLUGIN_HTTP_ROUTE_TEMPLATE="true")


# -- in process: a Tornado server in a thread of the test process ------------------------------------------------

class _Item(tornado_web.RequestHandler):
    def get(self, item_id: str) -> None:
        self.write({"item": int(item_id)})

    def post(self, item_id: str) -> None:
        self.write({"item": int(item_id)})


class _Teapot(tornado_web.RequestHandler):
    def get(self) -> None:
        raise tornado_web.HTTPError(418)


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets

    started = threading.Event()
    state: dict[str, Any] = {}

    async def serve() -> None:
        app = tornado_web.Application([(r"/items/([0-9]+)", _Item), (r"/teapot", _Teapot)])
        sockets = bind_sockets(0, "127.0.0.1")
        server = HTTPServer(app)
        server.add_sockets(sockets)
        state["port"], state["stop"] = sockets[0].getsockname()[1], asyncio.Event()
        state["loop"] = asyncio.get_running_loop()
        started.set()
        await state["stop"].wait()
        server.stop()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(10)
    yield f"http://127.0.0.1:{state['port']}"
    state["loop"].call_soon_threadsafe(state["stop"].set)
    thread.join(10)


def call(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> int:
    """One request with ``http.client`` (no plugin traces it: the test process sends only the headers given)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.netloc, timeout=10)
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""),
                     body=b"" if method == "POST" else None, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def entry_spans(reporter: MemoryReporter, count: int) -> list[Any]:
    """The Tornado entry spans."""
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        spans = [s for seg in list(reporter.segments) for s in seg.spans
                 if s.kind is Kind.Entry and s.component == Component.Tornado]
        if len(spans) >= count:
            time.sleep(0.1)
            return [s for seg in list(reporter.segments) for s in seg.spans
                    if s.kind is Kind.Entry and s.component == Component.Tornado]
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} Tornado entry spans")


def tags(span: Any) -> dict[str, str]:
    return {tag.key: tag.val for tag in span.tags}


def test_path_as_op_and_an_http_error_answer(base: str, start_agent: Any) -> None:
    reporter = start_agent()
    assert call(f"{base}/items/7?q=1") == 200
    assert call(f"{base}/teapot") == 418
    item, teapot = sorted(entry_spans(reporter, 2), key=lambda s: s.op)
    assert item.op == "/items/7" and not item.error_occurred
    assert item.peer is not None and item.peer.startswith("127.0.0.1:")
    assert tags(item) == {"http.method": "GET", "http.url": f"{base}/items/7?q=1", "http.status_code": "200"}
    assert teapot.op == "/teapot" and teapot.error_occurred and tags(teapot)["http.status_code"] == "418"
    assert teapot.logs == ()  # an answer, not an exception of the application's


def test_route_template_of_a_positional_group(base: str, start_agent: Any) -> None:
    reporter = start_agent(plugin_http_route_template=True)
    assert call(f"{base}/items/7") == 200
    assert call(f"{base}/missing") == 404
    names = sorted(span.op for span in entry_spans(reporter, 2))
    assert names == ["/items/{0}", "/missing"]  # no rule matched: the path


def test_sw8_inbound(base: str, start_agent: Any) -> None:
    reporter = start_agent(agent_protocol_version="v8")
    assert call(f"{base}/items/7", headers={"sw8": SW8}) == 200
    (span,) = entry_spans(reporter, 1)
    (ref,) = span.refs
    assert (ref.service, ref.service_instance, ref.endpoint, ref.client_address) == (
        "service", "instance", "/app", "127.0.0.1:8080")


def test_an_ignored_method_makes_no_span(base: str, start_agent: Any) -> None:
    reporter = start_agent(plugin_http_ignore_method="GET,OPTIONS")
    assert call(f"{base}/items/7") == 200
    assert call(f"{base}/items/7", "POST") == 200
    (span,) = entry_spans(reporter, 1)
    assert tags(span)["http.method"] == "POST"


def test_uninstall_restores_the_originals(base: str, start_agent: Any) -> None:
    import wrapt

    reporter = start_agent()
    plugin = sw_tornado.plugin
    assert plugin.installed
    wrapped = vars(tornado_web.RequestHandler)["_execute"]
    assert isinstance(wrapped, wrapt.FunctionWrapper)
    plugin.uninstall()
    try:
        assert vars(tornado_web.RequestHandler)["_execute"] is wrapped.__wrapped__
        assert not isinstance(vars(tornado_web.RequestHandler)["log_exception"], wrapt.FunctionWrapper)
        assert call(f"{base}/items/7") == 200
        import time

        time.sleep(0.3)
        assert len(reporter.segments) == 0
    finally:
        plugin.install()
    assert call(f"{base}/items/7") == 200
    assert len(entry_spans(reporter, 1)) == 1
