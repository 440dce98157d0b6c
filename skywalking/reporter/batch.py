"""The reporter for ``agent_protocol=http`` and ``kafka`` (v8 only): segments in a bounded ``Feed`` sent in
batches by a ``DataSender`` through the transport, and a manager thread for instance properties and keep-alives.
Every segment is delivered or counted, as with the gRPC reporter (``stats()``). Logs and meters use the same
transport (``skywalking.agent.telemetry``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from skywalking import config
from skywalking.loggings import RateLimitedLog, logger
from skywalking.reporter import Reporter
from skywalking.reporter.backoff import BACKOFF_CAP, Backoff
from skywalking.reporter.data import DataSender, Feed, Refused, Retry
from skywalking.trace.context import suppress_tracing


class BatchReporter(Reporter):
    def __init__(self, transport: Any, encode: Callable[[Any], Any], max_queue: int) -> None:
        self.transport = transport
        self.segments = Feed("segment", "", encode, max_queue)
        self.sender = DataSender(transport, [self.segments])
        self._stop = threading.Event()
        self._manager: threading.Thread | None = None
        self._error_log = RateLimitedLog(30.0)
        self.manage_error = ""

    def report(self, segment: Any) -> bool:
        return self.segments.offer(segment)

    def start(self) -> None:
        self.sender.start("SkyWalkingSender")
        self._manager = threading.Thread(target=self._manage_loop, name="SkyWalkingManager", daemon=True)
        self._manager.start()

    def _manage_loop(self) -> None:
        backoff = Backoff()
        with suppress_tracing():
            while not self._stop.is_set():
                try:
                    delay = self.transport.manage()
                    backoff.reset()
                    self.manage_error = ""
                except (Retry, Refused) as exc:
                    self.manage_error = str(exc)
                    delay = backoff.next()
                    self._error_log.log(time.monotonic(), "%s heartbeat failed: %s", self.transport.name, exc)
                except Exception:
                    logger.exception("reporter control loop failed")
                    delay = BACKOFF_CAP
                self._stop.wait(delay)

    def stop(self, timeout: float = 5.0) -> None:
        try:
            self._stop.set()
            self.sender.stop(timeout)
            if self._manager is not None:
                self._manager.join(1.0)
            close = getattr(self.transport, "close", None)
            if close is not None:
                close()
        except Exception:
            logger.exception("reporter failed to stop cleanly")

    def stats(self) -> dict[str, Any]:
        from skywalking.trace.tracer import TRACER

        books = self.segments.stats()
        return {**books, "sent": books["delivered"], "held": 0, "failures": 0, "protocol": self.transport.name,
                "last_error": self.sender.last_error or self.manage_error, "backend": self.transport.target,
                "spans_over_limit": TRACER.spans_over_limit, "calls_over_cap": TRACER.calls_over_cap,
                "spans_after_segment": TRACER.spans_after_segment, "instance_id": 0}


def create() -> BatchReporter:
    """The reporter for ``agent_protocol`` (``http`` or ``kafka``) under v8 (the only place this module names a
    protocol module)."""
    from skywalking.protocol_v8 import encode as v8_encode
    from skywalking.protocol_v8.session import instance_properties, ping

    def encode(segment: Any) -> Any:
        return v8_encode.encode(segment, segment.identity[0], segment.identity[1])

    def management() -> tuple[Any, Any]:
        return instance_properties(), ping()

    backends = [b.strip() for b in config.agent_collector_backend_services.split(",") if b.strip()]
    transport: Any
    if config.agent_protocol == "kafka":
        from skywalking.protocol_v8.gen.language_agent.Meter_pb2 import MeterDataCollection
        from skywalking.reporter.kafka import KafkaTransport

        transport = KafkaTransport(management, lambda meters: MeterDataCollection(meterData=meters))
    else:
        from skywalking.reporter.http import HttpTransport

        transport = HttpTransport(backends, config.agent_force_tls, management)
    return BatchReporter(transport, encode, config.agent_trace_reporter_max_buffer_size)
