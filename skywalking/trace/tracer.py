"""Process-wide tracing state, set by the agent; read by contexts and spans."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from skywalking.trace.segment import Segment


class Tracer:
    __slots__ = ("instance", "instance_id", "reporter", "sample_count", "sample_limit",
                 "sample_window", "service", "v6")

    def __init__(self) -> None:
        self.reporter: Callable[[Segment], Any] | None = None  # None = not tracing
        self.v6 = True
        self.service = ""
        self.instance = ""
        self.instance_id = 0  # sw6: the OAP-issued instance id
        self.sample_limit = 0
        self.sample_window = 0.0
        self.sample_count = 0

    def sample_root(self) -> bool:
        """Sampling of new (not propagated) traces: at most N per 3-second window."""
        limit = self.sample_limit
        if limit <= 0:
            return True
        now = time.monotonic()
        if now - self.sample_window >= 3.0:
            self.sample_window = now
            self.sample_count = 0
        self.sample_count += 1
        return self.sample_count <= limit


TRACER = Tracer()
