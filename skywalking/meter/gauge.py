"""Gauges: ``Gauge.Builder(name, source, tags).build()``; ``source`` is an iterator (``next()`` once per report,
as upstream) or a function of no arguments. A value that is missing or not a number reports 0."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from skywalking.meter.meter import BaseBuilder, BaseMeter, MeterId, MeterType


class Gauge(BaseMeter):
    def __init__(self, meter_id: MeterId, source: Iterator[Any] | Callable[[], Any]) -> None:
        super().__init__(meter_id)
        self.source = source

    def value(self) -> float:
        source = self.source
        try:
            got = source() if callable(source) else next(source, None)
            return float(got) if got else 0.0
        except (TypeError, ValueError):
            return 0.0

    class Builder(BaseBuilder):
        meter_type = MeterType.GAUGE

        def __init__(self, name: str, source: Iterator[Any] | Callable[[], Any],
                     tags: list[tuple[str, str]] | None = None) -> None:
            super().__init__(name, tags)
            if not callable(source) and not hasattr(source, "__next__"):
                raise TypeError(f"a gauge's source is an iterator or a function, got {type(source).__name__}")
            self.source = source

        def create(self) -> Gauge:
            return Gauge(self.meter_id, self.source)
