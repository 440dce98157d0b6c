"""HTTP plugins with real servers on 127.0.0.1 and a caller that sends sw6 as a SkyWalking 6.6.0 service would:
sw_http_server (http.server, wsgiref), sw_urllib_request or sw_requests, sw_logging; checked against
expected/<client>.json."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from wsgiref.simple_server import make_server

import pytest

from skywalking import Kind
from skywalking.plugins._peer import address_peer, host_port
from skywalking.reporter.memory import MemoryReporter
from skywalking.trace.carrier import inbound_header_names
from tests.plugins.harness import Services, port_of
from tests.plugins.wsgi import QuietWSGIHandler
from tests.protocol.procs import Proc

HERE = Path(__file__).parent
APP = HERE / "apps" / "stdlib_app.py"


def start(services: Services, mode: str, name: str, *args: str) -> tuple[Proc, int]:
    """Start a stdlib_app.py process traced as ``name``; it and its port."""
    proc = services.python(APP, mode, *args, name=name)
    return proc, port_of(proc)


@pytest.mark.parametrize(("client", "expected"), [("urllib", "stdlib.json"), ("requests", "requests.json"),
                                                  ("urllib3", "urllib3.json"), ("httpx", "httpx.json"),
                                                  ("httpx-async", "httpx.json"), ("aiohttp", "aiohttp.json")])
def test_http_servers_and_clients(client: str, expected: str) -> None:
    if client != "urllib":
        pytest.importorskip(client.split("-")[0])
    with Services() as services:
        back, back_port = start(services, "back", "plugin-back")
        mode = "front" if client == "urllib" else f"front-{client}"
        _, front_port = start(services, mode, "plugin-front", f"http://127.0.0.1:{back_port}")
        services.call_front(front_port, "/front?q=1")
        with pytest.raises(urllib.error.HTTPError) as failed:  # an untraced caller; the downstream answers 500
            urllib.request.urlopen(f"http://127.0.0.1:{front_port}/front-fail", timeout=10)
        assert failed.value.code == 502

        segments = services.check(expected, segments=5, front=front_port, back=back_port)
        # sw_logging: the back end's log lines carry the trace ids of the requests they were written in
        traces = {seg["traceId"] for seg in segments if seg["service"] == "plugin-back"}
        logged = {line.split()[1].removeprefix("tid=") for line in back.stderr if line.startswith("log tid=")}
        assert logged == traces and len(traces) == 2, (logged, traces)


# -- plugin_http_ignore_method, in process ------------------------------------------------------------

IGNORED = "GET,OPTIONS"  # plugin_http_ignore_method of these tests


class _Handler(BaseHTTPRequestHandler):
    seen: list[tuple[str, dict[str, str]]]  # (method, request headers) per request

    def _answer(self) -> None:
        self.seen.append((self.command, {k.lower(): v for k, v in self.headers.items()}))
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_GET = do_POST = do_OPTIONS = _answer

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def http_server(kind: str) -> Iterator[tuple[str, list[tuple[str, dict[str, str]]]]]:
    """A one-thread server on 127.0.0.1 (``http.server`` or ``wsgiref``): its URL and the (method, headers) of
    each request it answered. One thread: a request is handled, its span ended, before the next is read."""
    seen: list[tuple[str, dict[str, str]]] = []
    if kind == "http.server":
        server: HTTPServer = HTTPServer(("127.0.0.1", 0), type("Handler", (_Handler,), {"seen": seen}))
    else:
        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
            headers = {k[5:].lower().replace("_", "-"): v for k, v in environ.items() if k.startswith("HTTP_")}
            seen.append((environ["REQUEST_METHOD"], headers))
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]

        server = make_server("127.0.0.1", 0, app, handler_class=QuietWSGIHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/path?q=1", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def propagated(headers: dict[str, str]) -> list[str]:
    """The trace headers among ``headers`` (sw6 by default)."""
    return [name for name in inbound_header_names() if name in headers]


def check_ignored_then_traced(reporter: MemoryReporter, seen: list[tuple[str, dict[str, str]]], ignored: str,
                              traced: str, spans_per_request: int) -> None:
    """After one request with the ``ignored`` method and then one with the ``traced`` one: the first carried no
    trace header and made no span, the second has its header and its ``spans_per_request`` segments."""
    assert [method for method, _ in seen] == [ignored, traced]
    assert propagated(seen[0][1]) == []
    assert propagated(seen[1][1]) != []
    assert reporter.wait_for(spans_per_request)
    time.sleep(0.1)  # nothing more arrives
    assert len(reporter.segments) == spans_per_request
    for segment in reporter.segments:
        (span,) = segment.spans
        assert {tag.val for tag in span.tags if tag.key == "http.method"} == {traced}, span


def stdlib_call(url: str, how: str) -> None:
    """One request with ``urllib.request``: ``get`` (a URL string), ``options`` (a Request with that method),
    ``post`` (a URL string and a body)."""
    if how == "get":
        target: str | urllib.request.Request = url
    elif how == "options":
        target = urllib.request.Request(url, method="OPTIONS")
    else:
        target = urllib.request.Request(url, data=b"{}")
    with urllib.request.urlopen(target, timeout=10) as response:
        assert response.read() == b"ok"


@pytest.mark.parametrize("server", ["http.server", "wsgiref"])
@pytest.mark.parametrize("ignored", ["get", "options"])
def test_an_ignored_method_makes_no_span_and_sends_no_header(start_agent: Any, server: str, ignored: str) -> None:
    """urllib.request (client) and http.server / wsgiref (server), one process: the ignored request is sent
    untouched and neither side makes a span; a POST right after is traced on both sides."""
    reporter = start_agent(plugin_http_ignore_method=IGNORED)
    with http_server(server) as (url, seen):
        stdlib_call(url, ignored)
        stdlib_call(url, "post")
    check_ignored_then_traced(reporter, seen, ignored.upper(), "POST", 2)
    kinds = sorted(segment.spans[0].kind.name for segment in reporter.segments)
    assert kinds == sorted([Kind.Entry.name, Kind.Exit.name])


@pytest.mark.parametrize("client", ["requests", "urllib3", "httpx", "httpx-async", "aiohttp"])
def test_an_ignored_method_is_sent_untouched_by_third_party_clients(start_agent: Any, client: str) -> None:
    """The same with each third-party client, against a traced http.server."""
    pytest.importorskip(client.split("-")[0])
    reporter = start_agent(plugin_http_ignore_method=IGNORED)
    with http_server("http.server") as (url, seen):
        for method in ("GET", "POST"):
            assert third_party_call(client, method, url) == 200
    check_ignored_then_traced(reporter, seen, "GET", "POST", 2)


def third_party_call(client: str, method: str, url: str) -> int:
    """One ``method`` request to ``url`` with ``client``; its status."""
    if client == "requests":
        import requests

        return requests.request(method, url, timeout=10).status_code
    if client == "urllib3":
        import urllib3

        return urllib3.PoolManager().request(method, url, timeout=10).status
    if client == "httpx":
        import httpx

        return httpx.request(method, url, timeout=10).status_code
    if client == "httpx-async":
        import httpx

        async def fetch_httpx() -> int:
            async with httpx.AsyncClient(timeout=10) as session:
                return (await session.request(method, url)).status_code

        return asyncio.run(fetch_httpx())
    import aiohttp

    async def fetch_aiohttp() -> int:
        async with aiohttp.ClientSession() as session, session.request(method, url) as response:
            await response.read()
            return response.status

    return asyncio.run(fetch_aiohttp())


def test_peers_are_host_port_with_ipv6_in_brackets() -> None:
    assert host_port("10.0.0.1", 6379) == "10.0.0.1:6379"
    assert host_port("::1", "8080") == "[::1]:8080"
    assert host_port("[::1]", 80) == "[::1]:80"
    assert host_port("redis.local") == "redis.local"
    assert address_peer(("127.0.0.1", 5000)) == "127.0.0.1:5000"
    assert address_peer(["::1", 5000, 0, 0]) == "[::1]:5000"
    assert address_peer("/run/app.sock") is None and address_peer(None) is None
