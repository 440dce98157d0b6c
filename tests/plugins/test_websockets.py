"""sw_websockets with real websockets servers and clients on 127.0.0.1, the ``websockets.asyncio`` API (13+) and the
legacy one: a caller that sends sw6 as a SkyWalking 6.6.0 service would calls an ``http.server`` front, which opens
a websocket to a traced websockets server (which calls a back end); then a connection whose handler raises and a
handshake the server refuses; checked against expected/websockets.json. In process: sw8 both ways, the caller's
headers untouched, uninstall."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from contextvars import Context
from pathlib import Path
from typing import Any

import pytest

websockets = pytest.importorskip("websockets")

from skywalking import Component, Kind  # noqa: E402
from skywalking.plugins import sw_websockets  # noqa: E402
from skywalking.reporter.memory import MemoryReporter  # noqa: E402
from tests.plugins.harness import Services, port_of  # noqa: E402
from tests.plugins.test_http import start  # noqa: E402

HERE = Path(__file__).parent
APP = HERE / "apps" / "websockets_app.py"
SW8 = "1-My40LjU=-MS4yLjM=-4-c2VydmljZQ==-aW5zdGFuY2U=-L2FwcA==-MTI3LjAuMC4xOjgwODA="


def has_asyncio_api() -> bool:
    try:
        import websockets.asyncio.server  # noqa: F401
    except ImportError:
        return False
    return True


APIS = [pytest.param("asyncio", marks=pytest.mark.skipif(not has_asyncio_api(), reason="websockets < 13")),
        "legacy"]


@pytest.mark.parametrize("api", APIS)
def test_websockets_client_and_server_spans(api: str) -> None:
    with Services() as services:
        _, back_port = start(services, "back", "plugin-back")
        ws_port = port_of(services.python(APP, "server", api, f"http://127.0.0.1:{back_port}", name="plugin-ws-server"))
        front_port = port_of(services.python(APP, "front", api, f"ws://127.0.0.1:{ws_port}", name="plugin-ws-front"))
        reply = services.call_front(front_port, "/items/7?q=1")
        assert reply["item"] == 7 and reply["x-test"] == "kept"  # the caller's own handshake header still sent
        for path in ("/boom", "/forbidden"):
            with pytest.raises(urllib.error.HTTPError) as failed:
                urllib.request.urlopen(f"http://127.0.0.1:{front_port}{path}", timeout=10)
            assert failed.value.code == 502
            error = json.load(failed.value)["error"]
            # the application's exceptions, unchanged: the handler's failure closes with 1011, the refusal is 403
            assert error in (("ConnectionClosedError",) if path == "/boom" else ("InvalidStatus", "InvalidStatusCode"))
        services.check("websockets.json", front=front_port, ws=ws_port, back=back_port)


# -- in process --------------------------------------------------------------------------------------------------

def converse(api: str, path: str, headers: dict[str, str] | None = None, raw: bool = False) -> dict[str, Any]:
    """A server and a client of ``api`` in this process: the client opens ``path`` (with ``headers``), the server
    answers the handshake request's headers. ``raw``: the client is a hand-written handshake (no plugin sees it)."""
    async def run() -> dict[str, Any]:
        async def echo(ws: Any) -> None:
            request = getattr(ws, "request", None)
            seen = request.headers if request is not None else ws.request_headers
            await ws.send(json.dumps({k.lower(): v for k, v in seen.raw_items()}))

        if api == "asyncio":
            from websockets.asyncio.server import serve
        else:
            from websockets.legacy.server import serve  # type: ignore[assignment]
        # started outside the test's span, as a server in another process would be: its connections are traced
        # in segments of their own
        async def start_server() -> Any:
            return await serve(echo, "127.0.0.1", 0)

        server = await asyncio.get_running_loop().create_task(start_server(), context=Context())
        port = next(iter(server.sockets)).getsockname()[1]
        url = f"ws://127.0.0.1:{port}{path}"
        if raw:
            answer = await raw_handshake(port, path, headers or {})
        elif api == "asyncio":
            from websockets.asyncio.client import connect

            async with connect(url, additional_headers=headers) as ws:
                answer = json.loads(await ws.recv())
        else:
            from websockets.legacy.client import connect as legacy_connect

            async with legacy_connect(url, extra_headers=headers) as legacy:
                answer = json.loads(await legacy.recv())
        server.close()
        await server.wait_closed()
        return answer

    return asyncio.run(run())


async def raw_handshake(port: int, path: str, headers: dict[str, str]) -> dict[str, Any]:
    """An opening handshake written by hand; the status line of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
             *(f"{k}: {v}" for k, v in headers.items())]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    status = (await reader.readline()).decode().strip()
    await reader.readuntil(b"\r\n\r\n")
    writer.close()
    await writer.wait_closed()
    return {"status": status}


def spans(reporter: MemoryReporter, count: int) -> list[Any]:
    """The spans of every segment, once ``count`` spans were reported."""
    deadline = time.monotonic() + 10
    while sum(len(seg.spans) for seg in list(reporter.segments)) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # nothing more arrives
    found = [s for seg in list(reporter.segments) for s in seg.spans]
    assert len(found) == count, found
    return found


@pytest.mark.parametrize("api", APIS)
def test_sw8_both_ways_and_the_callers_headers(api: str, start_agent: Any) -> None:
    reporter = start_agent(agent_protocol_version="v8")
    from skywalking.trace.context import get_context

    headers = {"X-Test": "kept"}
    with get_context().new_local_span("/test"):
        seen = converse(api, "/chat?room=1", headers)
    assert headers == {"X-Test": "kept"}  # the caller's mapping is not changed
    assert seen["x-test"] == "kept" and "sw8" in seen and "sw6" not in seen, seen
    found = spans(reporter, 3)
    (entry,) = [s for s in found if s.kind is Kind.Entry]
    (exit_span,) = [s for s in found if s.kind is Kind.Exit]
    assert entry.component == exit_span.component == Component.Websockets
    assert entry.op == exit_span.op == "/chat"
    (ref,) = entry.refs
    assert ref.endpoint == "/test" and ref.client_address == exit_span.peer
    assert {t.key: t.val for t in exit_span.tags}["http.url"] == f"ws://{exit_span.peer}/chat?room=1"


@pytest.mark.parametrize("api", APIS)
def test_sw8_inbound(api: str, start_agent: Any) -> None:
    reporter = start_agent(agent_protocol_version="v8")
    assert converse(api, "/in", {"sw8": SW8}, raw=True)["status"].startswith("HTTP/1.1 101")
    (entry,) = spans(reporter, 1)
    (ref,) = entry.refs
    assert (ref.service, ref.endpoint, ref.client_address) == ("service", "/app", "127.0.0.1:8080")


@pytest.mark.parametrize("api", APIS)
def test_uninstall_restores_the_originals(api: str, start_agent: Any) -> None:
    import wrapt

    reporter = start_agent()
    plugin = sw_websockets.plugin
    converse(api, "/x")  # imports the API's modules: patched
    spans(reporter, 2)
    reporter.segments.clear()
    if api == "asyncio":
        import websockets.asyncio.client as client
        import websockets.asyncio.server as server
        owners = [(client.ClientConnection, "handshake"), (server.ServerConnection, "handshake")]
    else:
        import websockets.legacy.client as legacy_client
        import websockets.legacy.server as legacy_server
        owners = [(legacy_client.WebSocketClientProtocol, "handshake"),
                  (legacy_server.WebSocketServerProtocol, "handshake")]
    assert all(isinstance(vars(cls)[name], wrapt.FunctionWrapper) for cls, name in owners)
    plugin.uninstall()
    try:
        assert not any(isinstance(vars(cls)[name], wrapt.FunctionWrapper) for cls, name in owners)
        converse(api, "/x")
        time.sleep(0.3)
        assert len(reporter.segments) == 0
    finally:
        plugin.install()
    converse(api, "/x")
    spans(reporter, 2)
