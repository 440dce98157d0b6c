"""Ray's own tracing, set up as a peer for bench_ray.py (``--plugin otel``), and the OTLP sink it exports to.

- ``startup()`` is Ray Core's ``_tracing_startup_hook``: every Ray process that connects calls it once. It
  installs an OpenTelemetry ``TracerProvider`` (parent-based, always on) with a ``BatchSpanProcessor`` over
  the OTLP gRPC exporter, sending to ``$SW_BENCH_OTLP`` (host:port).
- ``serve_processors()`` is Serve's tracing exporter (``TracingConfig.exporter_import_path``). Serve adds
  what it returns to the process's provider; in a process where ``startup()`` already installed the batch
  processor it returns none, so that no span is exported twice.
- ``python otel_peer.py --sink`` runs an OTLP/gRPC trace receiver on 127.0.0.1 that counts export calls and
  bytes without decoding them (it stands in for a remote collector); it prints ``otlp ready port=N`` and, on
  SIGTERM, one JSON line of counts.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from typing import Any

_installed = False


def _processor() -> Any:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    return BatchSpanProcessor(OTLPSpanExporter(endpoint=os.environ["SW_BENCH_OTLP"], insecure=True))


def startup() -> None:
    global _installed
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    provider.add_span_processor(_processor())
    trace.set_tracer_provider(provider)
    _installed = True


def serve_processors() -> list[Any]:
    return [] if _installed else [_processor()]


def sink() -> int:
    from concurrent import futures

    import grpc

    counts = {"exports": 0, "bytes": 0}
    lock = threading.Lock()

    def export(request: bytes, context: Any) -> bytes:
        with lock:
            counts["exports"] += 1
            counts["bytes"] += len(request)
        return b""  # an empty ExportTraceServiceResponse

    handler = grpc.method_handlers_generic_handler("opentelemetry.proto.collector.trace.v1.TraceService", {
        "Export": grpc.unary_unary_rpc_method_handler(export)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=(handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print(f"otlp ready port={port}", flush=True)
    while not done.wait(0.5):
        pass
    server.stop(1)
    print(json.dumps(counts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(sink() if sys.argv[1:] == ["--sink"] else 2)
