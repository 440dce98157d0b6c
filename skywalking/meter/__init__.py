"""Upstream's meter API (``skywalking.meter``): counters, gauges and histograms that a service defines, kept
in ``registry`` (a ``meter_service.MeterService``) and read once per report by ``registry.collect()``. OAP 6.6.0
(protocol v6) has no meter receiver, so under v6 nothing is sent; the v8 reporter (``MeterReportService``) is not
built yet. ``init()`` is kept, doing nothing, for code written against upstream."""

from __future__ import annotations

from skywalking.meter.counter import Counter, CounterMode
from skywalking.meter.gauge import Gauge
from skywalking.meter.histogram import Histogram
from skywalking.meter.meter import BaseMeter, MeterId, MeterTag, MeterType
from skywalking.meter.meter_service import MeterService, registry

__all__ = ["BaseMeter", "Counter", "CounterMode", "Gauge", "Histogram", "MeterId", "MeterService", "MeterTag",
           "MeterType", "init", "registry"]


async def init_async(async_event: object = None) -> None:
    """Upstream's asyncio variant of ``init``; does nothing here either (one meter thread serves every loop)."""


def init(force: bool = False) -> None:
    """Upstream starts its meter reporter thread here; the agent's start does what reporting there is."""
