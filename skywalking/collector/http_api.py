"""JSON HTTP API over the collector's state (stdlib ``ThreadingHTTPServer``)."""

from __future__ import annotations

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from google.protobuf import json_format

from skywalking.collector.app import Collector
from skywalking.protocol_v8.gen.language_agent import Tracing_pb2
from skywalking.protocol_v8.gen.logging import Logging_pb2
from skywalking.protocol_v8.gen.management import Management_pb2

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

    def _rest_receiver(self, col: Collector, path: str) -> tuple[int, Any]:
        """The OAP's v3 REST receivers (``agent_protocol=http``): JSON in the protobuf JSON mapping."""
        receivers: dict[str, tuple[Any, bool]] = {
            "/v3/segments": (Tracing_pb2.SegmentObject, True), "/v3/segment": (Tracing_pb2.SegmentObject, False),
            "/v3/logs": (Logging_pb2.LogData, True),
            "/v3/management/reportProperties": (Management_pb2.InstanceProperties, False),
            "/v3/management/keepAlive": (Management_pb2.InstancePingPkg, False)}
        if path not in receivers:
            return 404, {"error": f"no receiver at {path}"}
        message, many = receivers[path]
        try:
            messages = _messages(self.body, message, many)
        except ValueError as exc:
            return 400, {"error": str(exc)}
        col.rest_request(path)
        if message is Tracing_pb2.SegmentObject:
            for m in messages:
                col.receive_v3(m.SerializeToString())
        elif message is Logging_pb2.LogData:
            col.receive_logs([m.SerializeToString() for m in messages])
        elif message is Management_pb2.InstanceProperties:
            m = messages[0]
            col.v3_properties(m.service, m.serviceInstance, [(p.key, p.value) for p in m.properties])
        else:
            col.v3_keep_alive(messages[0].service, messages[0].serviceInstance)
        return 200, {}

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
            if path.startswith("/v3/"):
                return self._rest_receiver(col, path)
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


def _messages(body: bytes, message: Any, many: bool) -> list[Any]:
    """The JSON body as ``message``s (a list for ``many``); ValueError saying why it is not one."""
    try:
        doc = json.loads(body or b"null")
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if many != isinstance(doc, list):
        raise ValueError("expected a JSON array" if many else "expected a JSON object")
    try:
        return [json_format.ParseDict(d, message()) for d in (doc if many else [doc])]
    except json_format.ParseError as exc:
        raise ValueError(f"not a {message.DESCRIPTOR.name}: {exc}") from None


def start_http(col: Collector, host: str, port: int) -> tuple[ThreadingHTTPServer, int, threading.Thread]:
    """Serve the API on ``host:port`` in a daemon thread; returns the server, bound port and thread."""
    server_cls = _Server6 if ":" in host else _Server
    server = server_cls((host, port), _Handler)
    server.collector = col
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="collector-http", daemon=True)
    thread.start()
    return server, server.server_address[1], thread
