"""The meter thread: every ``agent_meter_reporter_period`` seconds it reads every registered meter
(``registry.collect()``) and hands the values to the meter feed. It measures its own CPU time per period
(``stats()["cpu_ms_last_period"]``), which is what meters cost a process."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from skywalking.loggings import logger
from skywalking.meter.meter_service import MeterService
from skywalking.trace.context import suppress_tracing
from skywalking.trace.tracer import TRACER

if TYPE_CHECKING:
    from skywalking.reporter.data import Feed


class MeterReporter:
    def __init__(self, feed: Feed, period: float, registry: MeterService) -> None:
        self.feed = feed
        self.period = max(0.05, period)
        self.registry = registry
        self.periods = 0
        self.cpu_ms_last = 0.0
        self.cpu_ms_total = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="SkyWalkingMeter", daemon=True)
        self._thread.start()

    def stop(self, flush: bool = True) -> None:
        """Stop the thread; with ``flush`` take one last reading first (what changed since the last period)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        if flush:
            self.report_once()

    def report_once(self) -> None:
        cpu = time.thread_time()
        try:
            service, instance = TRACER.identity[0], TRACER.identity[1]
            for value in self.registry.collect():
                self.feed.offer((value, service, instance))
        except Exception:
            logger.exception("meter report failed")
        self.cpu_ms_last = (time.thread_time() - cpu) * 1000.0
        self.cpu_ms_total += self.cpu_ms_last
        self.periods += 1

    def _loop(self) -> None:
        with suppress_tracing():
            while not self._stop.wait(self.period):
                self.report_once()

    def stats(self) -> dict[str, Any]:
        return {"periods": self.periods, "meters": len(self.registry.meters()),
                "cpu_ms_last_period": round(self.cpu_ms_last, 3), "cpu_ms_total": round(self.cpu_ms_total, 3)}
