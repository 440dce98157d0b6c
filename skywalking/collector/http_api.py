"""JSON HTTP API over the collector's state (stdlib ``ThreadingHTTPServer``)."""

from __future__ import annotations

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from skywalking.collector.app import Collector

log = logging.getLogger("skywalking.collector.http")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    collector: Collector


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    body = b""

    def log_message(self, fmt: str, *args: Any) -> None:  # route access logs to logging, not stderr
        log.debug("%s " + fmt, self.address_string(), *args)

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body, indent=1).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self, method: str) -> None:
        try:
            status, body = self._route(method)
        except Exception as exc:  # never let a request kill the server thread
            log.exception("%s %s failed", method, self.path)
            status, body = 500, {"error": str(exc)}
        try:
            self._send(status, body)
        except OSError:
            log.debug("client went away")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""
        self._dispatch("POST")

    def _route(self, method: str) -> tuple[int, Any]:
        col = self.server.collector
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if method == "POST":
            if path == "/api/reset":
                col.reset_inventory()
                return 200, {"ok": True, "reset": "inventory"}
            if path == "/api/clear":
                col.clear_segments()
                return 200, {"ok": True, "cleared": "segments and drops"}
            if path == "/api/profile/tasks":
                try:
                    spec = json.loads(self.body or b"{}")
                    return 200, col.create_profile_task(spec if isinstance(spec, dict) else {})
                except ValueError as exc:
                    return 400, {"error": str(exc)}
            return 404, {"error": f"no POST {path}"}
        if path == "/health":
            return 200, {"status": "ok"}
        if path == "/api/segments":
            return 200, col.segments(query.get("service"), query.get("trace"))
        if path == "/api/traces":
            return 200, col.traces()
        if path.startswith("/api/traces/"):
            trace_id = unquote(path[len("/api/traces/"):])
            trace = col.trace(trace_id)
            return (200, trace) if trace is not None else (404, {"error": f"no trace {trace_id}"})
        if path == "/api/logs":
            return 200, col.logs(query.get("service"), query.get("trace"))
        if path == "/api/meters":
            return 200, col.meters(query.get("service"), query.get("name"))
        if path == "/api/profile/tasks":
            return 200, col.profile_tasks()
        if path == "/api/profile/snapshots":
            return 200, col.snapshots(query.get("task"), query.get("segment"))
        if path == "/api/drops":
            return 200, col.drops()
        if path == "/api/pending":
            return 200, col.pending()
        if path == "/api/inventory":
            return 200, col.inventory_snapshot()
        if path == "/api/stats":
            return 200, col.stats()
        return 404, {"error": f"no GET {path}"}


def start_http(col: Collector, host: str, port: int) -> tuple[ThreadingHTTPServer, int, threading.Thread]:
    """Serve the API on ``host:port`` in a daemon thread; returns the server, bound port and thread."""
    server_cls = _Server6 if ":" in host else _Server
    server = server_cls((host, port), _Handler)
    server.collector = col
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="collector-http", daemon=True)
    thread.start()
    return server, server.server_address[1], thread
