"""An in-memory reporter for tests and benchmarks: keeps the newest segments in a bounded deque."""

from __future__ import annotations

import itertools
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from skywalking.reporter import Reporter

if TYPE_CHECKING:
    from skywalking.trace.identity import Identity
    from skywalking.trace.segment import Segment
    from skywalking.trace.span import Span


class FixedIds:
    """A session that issued ``instance_id`` to the reporter's own identity and no id to any other (``IssuesIds``)."""

    def __init__(self, instance_id: int) -> None:
        self.instance_id = instance_id
        self.own: Identity | None = None

    def resolve(self, identity: Identity) -> int:
        return self.instance_id if identity is self.own else 0

    def note_endpoint(self, name: str) -> None:
        pass

    def wait_ready(self, timeout: float) -> bool:
        return self.instance_id > 0


class MemoryReporter(Reporter):
    """``segments`` holds the newest ``maxlen`` segments (all of them if None); ``count`` is the total. Its session
    hands out ``instance_id`` (what a fresh OAP 6.6.0 hands out first: id 1 is "User") for its own identity."""

    def __init__(self, maxlen: int | None = None, instance_id: int = 2) -> None:
        self.segments: deque[Segment] = deque(maxlen=maxlen)
        self.count = 0
        self.session = FixedIds(instance_id)
        self.identity: Identity | None = None
        self._counter = itertools.count(1)

    def set_identity(self, identity: Identity, eager: bool) -> None:
        self.identity = self.session.own = identity

    def report(self, segment: Segment) -> bool:
        self.segments.append(segment)  # deque.append and next() are atomic: no lock on the hot path
        self.count = next(self._counter)
        return True

    def stats(self) -> dict[str, Any]:
        return {"created": self.count, "delivered": self.count, "dropped": {}, "dropped_total": 0, "kept": 0,
                "queued": 0, "held": 0}

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until at least ``count`` segments have been reported."""
        deadline = time.monotonic() + timeout
        while self.count < count:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def spans(self) -> list[Span]:
        return [span for seg in self.segments for span in seg.spans]

    def clear(self) -> None:
        self.segments.clear()
        self._counter = itertools.count(1)
        self.count = 0
