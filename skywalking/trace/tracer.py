"""Process-wide tracing state, set by the agent; read by contexts and spans."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from skywalking.trace.identity import NO_IDENTITY, Identity

if TYPE_CHECKING:
    from skywalking.trace.propagation import Propagation
    from skywalking.trace.segment import Segment


def no_names(name: str) -> None:
    """``Tracer.note_endpoint`` when no reporter registers names."""


def no_ids(identity: Identity) -> int:
    """``Tracer.resolve`` when no reporter issues ids."""
    return 0


class Tracer:
    __slots__ = ("calls_over_cap", "identity", "instance", "instance_id", "max_calls", "note_endpoint", "pending",
                 "profiler", "propagation", "reporter", "resolve", "sample_count", "sample_limit", "sample_window",
                 "service", "spans_after_segment", "spans_over_limit", "sw6_skipped")

    def __init__(self) -> None:
        self.reporter: Callable[[Segment], Any] | None = None  # None = not tracing
        # while not tracing: called when a span is wanted; True if tracing has started (a pre-fork worker)
        self.pending: Callable[[], bool] | None = None
        # the header formats and id shape of the protocol in use (skywalking.trace.propagation sets it)
        self.propagation: Propagation = None  # type: ignore[assignment]
        self.identity: Identity = NO_IDENTITY  # who this process reports as (set_identity may change it)
        self.service = ""  # identity's service and instance name, for the sw8 view
        self.instance = ""
        self.instance_id = 0  # sw6: the id the OAP issued for ``identity``; 0 until it has
        # sw6: the OAP id of an identity (0 if not issued yet; asks for it); set by the reporter
        self.resolve: Callable[[Identity], int] = no_ids
        # sw6: an entry-span name of this process that a propagated context names (registered early)
        self.note_endpoint: Callable[[str], None] = no_names
        self.sw6_skipped = 0  # sw6 headers not sent because an instance id was not issued yet
        self.spans_over_limit = 0  # spans not recorded: their segment already had SPAN_LIMIT_PER_SEGMENT
        self.spans_after_segment = 0  # spans not recorded: finished after their segment had been reported
        self.max_calls = 0  # agent_trace_max_calls_per_span (0: no cap)
        self.calls_over_cap = 0  # exit spans not recorded: their parent already had max_calls
        self.profiler: Callable[[Any], None] | None = None  # called with each segment's first span, an entry span
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
