"""Histograms: ``Histogram.Builder(name, steps, min_value=0, tags).build()``, ``add_value(v)``,
``create_timer()`` and ``@Histogram.timer(name)`` (seconds; the decorated function's value is returned).

Buckets are ``[step, next step)``: a value goes to the largest step that is <= it, as upstream's docs say (upstream's
code puts a value equal to a step into the bucket below, and drops a value equal to ``min_value``). The steps are
sorted and deduplicated and ``min_value`` is the first one; a value below it is not counted in any bucket but in
``dropped``."""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from skywalking.meter.meter import BaseBuilder, BaseMeter, MeterId, MeterType, timed

F = TypeVar("F", bound=Callable[..., Any])


class Histogram(BaseMeter):
    def __init__(self, meter_id: MeterId, steps: list[float], min_value: float = 0) -> None:
        super().__init__(meter_id)
        bounds = sorted({float(s) for s in steps if s > min_value} | {float(min_value)})
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.dropped = 0  # values below min_value

    def add_value(self, value: float) -> None:
        i = bisect.bisect_right(self.bounds, value) - 1
        with self._lock:
            if i < 0:
                self.dropped += 1
            else:
                self.counts[i] += 1

    def value(self) -> list[tuple[float, int]]:
        """(bucket's lower bound, count) for every bucket; counts are totals since the start."""
        with self._lock:
            return list(zip(self.bounds, self.counts, strict=True))

    def create_timer(self) -> AbstractContextManager[None]:
        """Adds the seconds spent in the ``with`` block as one value."""
        return timed(self.add_value)

    @staticmethod
    def timer(name: str) -> Callable[[F], F]:
        """Each call of the decorated function adds its duration in seconds to the registered histogram ``name``
        (build it first: a histogram needs its steps)."""
        def decorator(fn: F) -> F:
            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                from skywalking.meter.meter_service import registry

                histogram = registry.get(name)
                if not isinstance(histogram, Histogram):
                    return fn(*args, **kwargs)
                with histogram.create_timer():
                    return fn(*args, **kwargs)

            return wrapper  # type: ignore[return-value]

        return decorator

    class Builder(BaseBuilder):
        meter_type = MeterType.HISTOGRAM

        def __init__(self, name: str, steps: list[float], min_value: float = 0,
                     tags: list[tuple[str, str]] | None = None) -> None:
            super().__init__(name, tags)
            if not steps:
                raise ValueError("a histogram needs at least one step")
            self.steps = list(steps)
            self.min_value = min_value

        def create(self) -> Histogram:
            return Histogram(self.meter_id, self.steps, self.min_value)
