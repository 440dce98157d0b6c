"""Where every segment went: created, delivered, dropped (by reason), kept for the next agent.

``created`` is counted on the application's threads without a lock (``itertools.count`` advances atomically under
the GIL); the other counts change off the hot path. Once a reporter has stopped, ``created = delivered + dropped +
kept``; while it runs the difference is what is queued, held or being sent.
"""

from __future__ import annotations

import itertools
import threading
from enum import Enum
from typing import Any

from skywalking.loggings import logger

DROP_SUMMARY = 30.0  # seconds between the drop summary lines (the first drop is logged at once)


class Drop(Enum):
    """Why segments were dropped; the value is what ``stats()["dropped"]`` and the log lines say."""

    QUEUE_FULL = "queue full"
    QUEUE_FULL_UNREACHABLE = "queue full while the backend is unreachable"
    HELD_FULL = "instance not registered with the OAP and the buffer is full"
    NOT_ACCEPTED = "not accepted by the backend"
    ENCODE_FAILED = "encoding failed"
    INTERPRETER_EXITING = "interpreter exiting: cannot open a stream"
    STOPPED = "not sent before stop"
    STOPPED_UNANSWERED = "not sent before stop: the backend did not answer"
    STOPPED_UNREGISTERED = "not sent before stop: instance not registered with the OAP"


class Counter:
    """A counter many threads may advance; ``incr`` is one C call, ``value`` is exact."""

    __slots__ = ("_count", "_lock", "_reads", "incr")

    def __init__(self) -> None:
        self._count = itertools.count()
        self.incr = self._count.__next__  # each call adds one
        self._reads = 0
        self._lock = threading.Lock()

    @property
    def value(self) -> int:
        with self._lock:  # reading advances the count too: subtract the reads
            value = next(self._count) - self._reads
            self._reads += 1
            return value


class Accounts:
    """The reporter's books, and the lines that report them."""

    def __init__(self, noun: str = "segment") -> None:
        self.noun = noun  # what is counted, for the log lines
        self.created = Counter()
        self.delivered = 0  # the sender thread's
        self.kept = 0  # left in a spool for the next agent on the node at stop
        self.dropped: dict[Drop, int] = {}
        self._lock = threading.Lock()
        self._logged: dict[Drop, int] = {}  # dropped, as of the last line
        self._first_logged = False

    def drop(self, n: int, why: Drop) -> None:
        with self._lock:
            self.dropped[why] = self.dropped.get(why, 0) + n
            first = not self._first_logged
            self._first_logged = True
        if first:
            logger.warning("dropped %d %s(s): %s (further drops are summed up every %.0f s)", n, self.noun,
                           why.value, DROP_SUMMARY)
            with self._lock:
                self._logged = dict(self.dropped)

    @property
    def total_dropped(self) -> int:
        with self._lock:
            return sum(self.dropped.values())

    def summary(self) -> None:
        """Log the drops since the previous line, exactly, by reason (nothing if there were none)."""
        with self._lock:
            since = {why: n - self._logged.get(why, 0) for why, n in self.dropped.items()
                     if n > self._logged.get(why, 0)}
            self._logged = dict(self.dropped)
            total = sum(self.dropped.values())
        if since:
            reasons = ", ".join(f"{why.value}: {n}" for why, n in since.items())
            logger.warning("dropped %d %s(s) since the last report (%s); in all %d created, %d delivered, "
                           "%d dropped", sum(since.values()), self.noun, reasons, self.created.value, self.delivered,
                           total)

    def by_reason(self) -> dict[str, int]:
        """Drops so far, keyed by each reason's text."""
        with self._lock:
            return {why.value: n for why, n in self.dropped.items()}

    def snapshot(self) -> dict[str, Any]:
        dropped = self.by_reason()
        return {"created": self.created.value, "delivered": self.delivered, "dropped": dropped,
                "dropped_total": sum(dropped.values()), "kept": self.kept}
