"""Helpers the in-process tests of the WSGI framework plugins share (sw_bottle, sw_pyramid, sw_falcon): a real
wsgiref server on 127.0.0.1, an untraced client, a direct WSGI call, and readers of what the agent recorded."""

from __future__ import annotations

import base64
import http.client
import io
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from skywalking import Kind
from skywalking.reporter.memory import MemoryReporter


class QuietWSGIHandler(WSGIRequestHandler):
    """wsgiref's request handler without its access log on stderr."""

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def served(app: Callable[..., Any]) -> Iterator[int]:
    """``app`` on a one-thread wsgiref server on 127.0.0.1 (traced by sw_http_server, whose span the framework
    takes over); yields the port."""
    server = make_server("127.0.0.1", 0, app, handler_class=QuietWSGIHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def request(port: int, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One request with ``http.client`` (no client plugin traces it)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def direct(app: Any, path: str) -> tuple[str, bytes]:
    """Call the WSGI app itself (no server): its status line and body."""
    got: list[str] = []
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
               "SERVER_PORT": "80", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(), "wsgi.errors": io.StringIO()}
    body = app(environ, lambda status, headers, exc_info=None: got.append(status))
    return got[0], b"".join(body)


def entry(reporter: MemoryReporter) -> Any:
    """The entry span of the only segment."""
    assert reporter.wait_for(1)
    (segment,) = reporter.segments
    span = segment.spans[-1]
    assert span.kind is Kind.Entry
    return span


def tags(span: Any) -> dict[str, str]:
    return {t.key: t.val for t in span.tags}


def sw8(trace: str, segment: str, span_id: int, service: str, instance: str, endpoint: str, address: str) -> str:
    """An ``sw8`` header as a SkyWalking 8 agent writes it."""
    b64 = [base64.b64encode(v.encode()).decode() for v in (trace, segment, service, instance, endpoint, address)]
    return f"1-{b64[0]}-{b64[1]}-{span_id}-{b64[2]}-{b64[3]}-{b64[4]}-{b64[5]}"
