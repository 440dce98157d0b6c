"""websockets apps traced by the agent (configured by SW_* variables), for tests/plugins/test_websockets.py;
``<api>`` is ``asyncio`` (``websockets.asyncio``, 13+) or ``legacy`` (``websockets.legacy``).

* ``python websockets_app.py server <api> <downstream>``: a websocket server. A connection to ``/items/<id>``
  receives one message, calls ``<downstream>/back?x=1`` (``urllib.request``) and answers JSON (with the ``X-Test``
  header the client sent); ``/boom`` raises in the handler; ``/forbidden`` is refused with 403 in
  ``process_request``.
* ``python websockets_app.py front <api> <ws base URL>``: an ``http.server`` front: ``GET <path>`` opens a
  websocket to ``<ws base URL><path>`` (with an ``X-Test`` header), sends one message and answers the reply;
  502 when the websocket fails.

Prints ``ready port=<port>`` once listening on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import http
import json
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from skywalking import agent

agent.start()
MODE, API, TARGET = sys.argv[1], sys.argv[2], sys.argv[3]


def call_back() -> str:
    with urllib.request.urlopen(f"{TARGET}/back?x=1", timeout=10) as resp:
        return resp.read().decode()


async def handler(ws: Any) -> None:
    request = getattr(ws, "request", None)
    path = request.path if request is not None else ws.path
    headers = request.headers if request is not None else ws.request_headers
    await ws.recv()
    if path.startswith("/boom"):
        raise RuntimeError("boom")
    item = int(path.split("?")[0].rsplit("/", 1)[1])
    await ws.send(json.dumps({"item": item, "downstream": call_back(), "x-test": headers.get("X-Test")}))


async def serve() -> None:
    if API == "asyncio":
        from websockets.asyncio.server import serve as ws_serve

        def process_request(connection: Any, request: Any) -> Any:
            return connection.respond(http.HTTPStatus.FORBIDDEN, "no\n") if request.path == "/forbidden" else None

        server = await ws_serve(handler, "127.0.0.1", 0, process_request=process_request)
    else:
        from websockets.legacy.server import serve as legacy_serve

        async def legacy_process_request(path: str, headers: Any) -> Any:
            return (http.HTTPStatus.FORBIDDEN, [], b"no\n") if path == "/forbidden" else None

        server = await legacy_serve(handler, "127.0.0.1", 0, process_request=legacy_process_request)
    port = next(iter(server.sockets)).getsockname()[1]
    print(f"ready port={port}", flush=True)
    await asyncio.Event().wait()


async def talk(path: str) -> str:
    if API == "asyncio":
        from websockets.asyncio.client import connect

        async with connect(TARGET + path, additional_headers={"X-Test": "kept"}) as ws:
            await ws.send("hi")
            return str(await ws.recv())
    from websockets.legacy.client import connect as legacy_connect

    async with legacy_connect(TARGET + path, extra_headers={"X-Test": "kept"}) as legacy:
        await legacy.send("hi")
        return str(await legacy.recv())


class Front(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        try:
            body, code = asyncio.run(talk(self.path.split("?")[0])).encode(), 200
        except Exception as e:
            body, code = json.dumps({"error": type(e).__name__}).encode(), 502
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    try:
        if MODE == "server":
            asyncio.run(serve())
        else:
            front = ThreadingHTTPServer(("127.0.0.1", 0), Front)
            print(f"ready port={front.server_address[1]}", flush=True)
            front.serve_forever()
    finally:
        agent.stop()
