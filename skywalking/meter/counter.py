"""Counters: ``Counter.Builder(name, CounterMode.INCREMENT, tags).build()``, ``increment(n)``, ``create_timer()``
and the decorators ``@Counter.increase(name, num)`` / ``@Counter.timer(name)``, which return the decorated
function's value (upstream's discard it). ``INCREMENT`` reports the running total; ``RATE`` the amount added
since the previous report."""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager
from enum import Enum
from typing import Any, TypeVar

from skywalking.meter.meter import BaseBuilder, BaseMeter, MeterId, MeterType, timed

F = TypeVar("F", bound=Callable[..., Any])


class CounterMode(Enum):
    INCREMENT = 1
    RATE = 2


class Counter(BaseMeter):
    def __init__(self, meter_id: MeterId, mode: CounterMode = CounterMode.INCREMENT) -> None:
        super().__init__(meter_id)
        self.mode = mode
        self.count = 0.0
        self._reported = 0.0  # the total at the previous report (RATE)

    def increment(self, value: float = 1) -> None:
        with self._lock:
            self.count += value

    def value(self) -> float:
        """The total (``INCREMENT``), or what was added since the last call (``RATE``)."""
        with self._lock:
            if self.mode is CounterMode.RATE:
                delta, self._reported = self.count - self._reported, self.count
                return delta
            return self.count

    def create_timer(self) -> AbstractContextManager[None]:
        """Adds the seconds spent in the ``with`` block."""
        return timed(self.increment)

    @staticmethod
    def increase(name: str, num: float = 1) -> Callable[[F], F]:
        """Each call of the decorated function adds ``num`` to the counter ``name`` (made when absent)."""
        def decorator(fn: F) -> F:
            counter = Counter.Builder(name).build()

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                counter.increment(num)
                return fn(*args, **kwargs)

            return wrapper  # type: ignore[return-value]

        return decorator

    @staticmethod
    def timer(name: str) -> Callable[[F], F]:
        """Each call of the decorated function adds its duration in seconds to the counter ``name``."""
        def decorator(fn: F) -> F:
            counter = Counter.Builder(name).build()

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                with counter.create_timer():
                    return fn(*args, **kwargs)

            return wrapper  # type: ignore[return-value]

        return decorator

    class Builder(BaseBuilder):
        meter_type = MeterType.COUNTER

        def __init__(self, name: str, mode: CounterMode = CounterMode.INCREMENT,
                     tags: list[tuple[str, str]] | None = None) -> None:
            super().__init__(name, tags)
            self._mode = mode

        def mode(self, mode: CounterMode) -> Counter.Builder:
            self._mode = mode
            return self

        def create(self) -> Counter:
            return Counter(self.meter_id, self._mode)
