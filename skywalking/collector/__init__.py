"""A local stand-in for Apache SkyWalking OAP 6.6.0 (protocol v6) and a minimal OAP 8+ (v3).

Run it with ``python -m skywalking.collector``; see docs/collector.md. ``start()`` embeds it in a
process (tests, demos). It imports nothing from the agent: its rules come from the protocol spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Any

from skywalking.collector.app import Collector


@dataclass
class RunningCollector:
    collector: Collector
    host: str
    grpc_port: int
    http_port: int
    _grpc: Any
    _http: ThreadingHTTPServer

    @property
    def grpc_target(self) -> str:
        from skywalking.collector.grpc_server import host_port

        return host_port(self.host, self.grpc_port)

    def stop(self, grace: float = 1.0) -> None:
        """Stop both servers and the ticker."""
        self._grpc.stop(grace).wait(grace + 1)
        self._http.shutdown()
        self._http.server_close()
        self.collector.stop()


def start(host: str = "127.0.0.1", grpc_port: int = 11800, http_port: int = 12800, register_delay: float = 0.3,
          print_delay: float = 1.0, retry_grace: float = 6.0, max_segments: int = 100_000,
          print_output: bool = True, sink: bool = False, tls: tuple[bytes, bytes] | None = None) -> RunningCollector:
    """Start the collector's gRPC and HTTP servers (ports may be 0) and its ticker thread."""
    from skywalking.collector.app import _stdout
    from skywalking.collector.grpc_server import start_grpc
    from skywalking.collector.http_api import start_http

    col = Collector(register_delay=register_delay, print_delay=print_delay, retry_grace=retry_grace,
                    max_segments=max_segments, printer=_stdout if print_output else None, sink=sink)
    grpc_server, bound_grpc = start_grpc(col, host, grpc_port, tls=tls)
    try:
        http_server, bound_http, _ = start_http(col, host, http_port)
    except Exception:
        grpc_server.stop(0)
        raise
    col.start_ticker()
    return RunningCollector(col, host, bound_grpc, bound_http, grpc_server, http_server)


__all__ = ["Collector", "RunningCollector", "start"]
