"""The front door of the plugin test services: ``GET <path>`` answers the JSON of ``answer(path)``."""

from __future__ import annotations

import json
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from skywalking import agent


def serve_json(answer: Callable[[str], Any]) -> None:
    """Serve on 127.0.0.1:<free port>, print ``ready port=<port>`` once listening (what the tests wait for), and
    stop the agent when the server ends."""

    class Front(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(answer(self.path)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Front)
    print(f"ready port={server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        agent.stop()


def serve_uvicorn(app: Any) -> None:
    """Serve the ASGI ``app`` with uvicorn on 127.0.0.1:<free port>, print ``ready port=<port>`` once it listens,
    and run until the process is stopped."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    print(f"ready port={port}", flush=True)
    thread.join()


def serve_wsgi(app: Any) -> None:
    """Serve the WSGI ``app`` on a wsgiref server on 127.0.0.1:<free port> (no access log), print
    ``ready port=<port>``, and run until the process is stopped."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    print(f"ready port={server.server_address[1]}", flush=True)
    server.serve_forever()

