"""Standard-library services for the plugin tests, traced by the agent (configured by SW_* variables).

``front``: an ``http.server`` handler whose ``GET /front`` calls the downstream with ``urllib.request``
(``front-<client>`` for requests, urllib3, httpx, httpx-async, aiohttp: with that client).
``back``: a ``wsgiref`` WSGI application answering ``/back`` (and 500 on ``/fail``).
Prints ``ready port=<port>`` once listening on 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from wsgiref.simple_server import WSGIRequestHandler, make_server

from skywalking import agent

agent.start()


class Front(BaseHTTPRequestHandler):
    downstream = ""
    client = "urllib"

    def do_GET(self) -> None:
        target = "/fail" if self.path.startswith("/front-fail") else "/back?x=1"
        if self.client == "requests":
            import requests

            resp = requests.get(f"{self.downstream}{target}", timeout=10)
            body, status = resp.content, 200 if resp.ok else 502
        elif self.client == "urllib3":
            import urllib3

            resp = urllib3.PoolManager().request("GET", f"{self.downstream}{target}", timeout=10)
            body, status = resp.data, 200 if resp.status < 400 else 502
        elif self.client == "aiohttp":
            import asyncio

            import aiohttp

            async def fetch_aiohttp() -> tuple[bytes, int]:
                async with aiohttp.ClientSession() as session, session.get(f"{self.downstream}{target}") as r:
                    return await r.read(), r.status

            body, code = asyncio.run(fetch_aiohttp())
            status = 200 if code < 400 else 502
        elif self.client == "httpx":
            import httpx

            resp = httpx.get(f"{self.downstream}{target}", timeout=10)
            body, status = resp.content, 200 if resp.is_success else 502
        elif self.client == "httpx-async":
            import asyncio

            import httpx

            async def fetch() -> httpx.Response:
                async with httpx.AsyncClient(timeout=10) as client:
                    return await client.get(f"{self.downstream}{target}")

            resp = asyncio.run(fetch())
            body, status = resp.content, 200 if resp.is_success else 502
        else:
            try:
                with urllib.request.urlopen(f"{self.downstream}{target}", timeout=10) as resp:
                    body, status = resp.read(), 200
            except urllib.error.HTTPError as e:
                body, status = e.read(), 502
        body = json.dumps({"downstream": body.decode()}).encode()  # JSON, as the protocol tests' caller reads it
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class QuietWSGIRequestHandler(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def back(environ: dict, start_response: object) -> list[bytes]:
    logging.getLogger("back").warning("handling %s", environ["PATH_INFO"])  # sw_logging: %(tid)s in the format
    if environ["PATH_INFO"] == "/fail":
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
        return [b"failed"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"back"]


def main() -> None:
    logging.basicConfig(format="log tid=%(tid)s %(message)s")
    mode = sys.argv[1]
    if mode.startswith("front"):
        Front.downstream = sys.argv[2]
        Front.client = mode.removeprefix("front-") if mode != "front" else "urllib"
        server = ThreadingHTTPServer(("127.0.0.1", 0), Front)
    else:
        server = make_server("127.0.0.1", 0, back, handler_class=QuietWSGIRequestHandler)
    print(f"ready port={server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        agent.stop()


if __name__ == "__main__":
    main()
