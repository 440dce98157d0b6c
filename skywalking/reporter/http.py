"""``agent_protocol=http`` (v8 only): the OAP's REST receivers on its HTTP port (12800 by default), JSON in the
protobuf JSON mapping. Segments go in batches to ``/v3/segments``, logs to ``/v3/logs``; instance properties and
keep-alives to ``/v3/management/*``. The OAP has no REST receiver for meters or profiling.

Standard library only (``http.client``), one persistent connection per thread, a timeout on every request.
``agent_collector_backend_services`` names the HTTP address(es) (``host:port``); ``agent_force_tls`` uses HTTPS.
A 2xx answer delivers; 429, 5xx or a connection failure is ``Retry`` (and fails over to the next address);
another 4xx is ``Refused``.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from google.protobuf.json_format import MessageToDict

from skywalking import config
from skywalking.reporter.data import Refused, Retry

if TYPE_CHECKING:
    from skywalking.reporter.data import Feed

TIMEOUT = 10.0  # seconds, every request
PATHS = {"segment": "/v3/segments", "log": "/v3/logs"}
PROPERTIES_PATH = "/v3/management/reportProperties"
KEEP_ALIVE_PATH = "/v3/management/keepAlive"


def to_json(messages: list[Any]) -> bytes:
    return json.dumps([MessageToDict(m) for m in messages], separators=(",", ":")).encode()


class HttpTransport:
    name = "http"
    kinds = ("log",)  # besides segments

    def __init__(self, backends: list[str], tls: bool, management: Callable[[], tuple[Any, Any]]) -> None:
        """``management()``: the ``InstanceProperties`` and ``InstancePingPkg`` messages to send."""
        self.backends = backends or ["127.0.0.1:12800"]
        self.tls = tls
        self.management = management
        self._index = 0
        self._local = threading.local()
        self._beats = 0

    @property
    def target(self) -> str:
        return self.backends[self._index]

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        target = self.target
        if conn is None or getattr(self._local, "target", None) != target:
            host, _, port = target.rpartition(":")
            host = host.strip("[]")
            conn = http.client.HTTPSConnection(host, int(port), timeout=TIMEOUT, context=ssl.create_default_context()) \
                if self.tls else http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
            self._local.conn, self._local.target = conn, target
        return conn

    def post(self, path: str, body: bytes) -> None:
        """One POST; raises ``Retry`` or ``Refused`` unless the answer is 2xx."""
        headers = {"Content-Type": "application/json"}
        if config.agent_authentication:
            headers["Authentication"] = config.agent_authentication
        conn = self._connection()
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            answer = response.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            self._local.conn = None
            self._index = (self._index + 1) % len(self.backends)
            raise Retry(f"POST {path} to {self.target}: {exc}") from None
        status = response.status
        if 200 <= status < 300:
            return
        why = f"POST {path}: HTTP {status} {answer[:200]!r}"
        if status == 429 or status >= 500:
            raise Retry(why)
        raise Refused(why)

    def send(self, feed: Feed, messages: list[Any]) -> None:
        self.post(PATHS[feed.kind], to_json(messages))

    def manage(self) -> float:
        """Instance properties every ``agent_collector_properties_report_period_factor`` beats (the first one
        included), a keep-alive on every beat; returns the seconds until the next."""
        properties, ping = self.management()
        if self._beats % max(1, config.agent_collector_properties_report_period_factor) == 0:
            self.post(PROPERTIES_PATH, json.dumps(MessageToDict(properties)).encode())
        self.post(KEEP_ALIVE_PATH, json.dumps(MessageToDict(ping)).encode())
        self._beats += 1
        return float(config.HEARTBEAT_PERIOD)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
