"""What every meter has: an id (name, type, tags), a value read at each report, and the registry that makes
meters of one name shared (upstream's identity rule: by name only, tags are not part of it)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import Any, NamedTuple


@contextmanager
def timed(add: Callable[[float], Any]) -> Iterator[None]:
    """Hands the seconds spent in the ``with`` block to ``add`` (a meter's timers)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        add(time.perf_counter() - start)


class MeterType(Enum):
    GAUGE = 1
    COUNTER = 2
    HISTOGRAM = 3


class MeterTag(NamedTuple):
    key: str
    value: str


class MeterId:
    """A meter's name, type and tags (sorted by key, so that the same tags compare equal in any order)."""

    __slots__ = ("name", "tags", "type")

    def __init__(self, name: str, meter_type: MeterType, tags: list[MeterTag] | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a meter needs a non-empty name, got {name!r}")
        self.name = name
        self.type = meter_type
        self.tags = sorted(tags or [], key=lambda tag: tag.key)

    def __repr__(self) -> str:
        return f"MeterId({self.name!r}, {self.type.name}, {self.tags!r})"


class BaseMeter:
    """A registered meter. Subclasses read their current value in ``value()`` (the reporter calls it once per
    period, from its own thread)."""

    def __init__(self, meter_id: MeterId) -> None:
        self.meter_id = meter_id
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.meter_id.name

    def tag(self, key: str, value: str) -> BaseMeter:
        self.meter_id.tags = sorted([*(t for t in self.meter_id.tags if t.key != key), MeterTag(key, str(value))],
                                    key=lambda t: t.key)
        return self

    def value(self) -> Any:
        raise NotImplementedError


class BaseBuilder:
    """``Builder(name, ...).tag(key, value).build()``: the registered meter of that name (made by the first
    ``build()``; later builders of the same name get that meter back)."""

    meter_type: MeterType

    def __init__(self, name: str, tags: list[tuple[str, str]] | None = None) -> None:
        self.meter_id = MeterId(name, self.meter_type, [MeterTag(k, str(v)) for k, v in (tags or [])])

    def tag(self, key: str, value: str) -> BaseBuilder:
        self.meter_id.tags = sorted([*(t for t in self.meter_id.tags if t.key != key), MeterTag(key, str(value))],
                                    key=lambda t: t.key)
        return self

    def create(self) -> BaseMeter:
        raise NotImplementedError

    def build(self) -> Any:
        from skywalking.meter.meter_service import registry

        return registry.register(self.meter_id.name, self.create)
