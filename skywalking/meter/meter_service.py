"""The registry of meters (one per name, at most ``MAX_METERS``; later ones are counted and not kept) and the
snapshot a reporter takes once per ``agent_meter_reporter_period``. Wire-neutral: a protocol's encoder turns
``collect()``'s ``MeterValue`` tuples into its own messages."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from skywalking.loggings import logger
from skywalking.meter.meter import BaseMeter, MeterId

MAX_METERS = 1000


class MeterValue(NamedTuple):
    meter_id: MeterId
    value: Any  # a float (gauge, counter) or [(bucket, count), ...] (histogram)
    timestamp_ms: int


class MeterService:
    def __init__(self) -> None:
        self._meters: dict[str, BaseMeter] = {}
        self._lock = threading.Lock()
        self.refused = 0  # meters not registered because MAX_METERS were

    def register(self, name: str, create: Callable[[], BaseMeter]) -> Any:
        """The meter named ``name``: the registered one, else ``create()``'s (registered when there is room)."""
        with self._lock:
            meter = self._meters.get(name)
            if meter is not None:
                return meter
            meter = create()
            if len(self._meters) < MAX_METERS:
                self._meters[name] = meter
            else:
                self.refused += 1
                if self.refused == 1:
                    logger.warning("more than %d meters: %r and later ones are not reported", MAX_METERS, name)
            return meter

    def get(self, name: str) -> BaseMeter | None:
        return self._meters.get(name)

    def meters(self) -> list[BaseMeter]:
        with self._lock:
            return list(self._meters.values())

    def collect(self) -> list[MeterValue]:
        """Every registered meter's value now (a meter whose value cannot be read is left out and logged)."""
        now = time.time_ns() // 1_000_000
        out = []
        for meter in self.meters():
            try:
                out.append(MeterValue(meter.meter_id, meter.value(), now))
            except Exception:
                logger.debug("meter %r could not be read", meter.name, exc_info=True)
        return out

    def clear(self) -> None:
        with self._lock:
            self._meters.clear()
            self.refused = 0


MeterServiceAsync = MeterService  # upstream's asyncio variant: the same registry serves both here
registry = MeterService()
