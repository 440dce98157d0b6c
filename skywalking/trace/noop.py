"""The no-op span and context: what untraced requests get (tracing off, not sampled, ignored, over a limit).

A no-op span still becomes the active span while its block runs, so that nothing under it is traced either.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

from skywalking import Component, Kind
from skywalking.trace.carrier import Carrier, OutboundCarrier
from skywalking.trace.ids import ID
from skywalking.trace.segment import Link
from skywalking.trace.snapshot import Snapshot
from skywalking.trace.span import Span, _active
from skywalking.trace.tags import Tag

_EMPTY: Mapping[str, str] = MappingProxyType({})


class NoopSpan(Span):
    """Returned when a request is not traced; records nothing, injects nothing."""

    __slots__ = ()

    def __init__(self, context: Any = None, kind: Kind | None = None) -> None:
        super().__init__(context if context is not None else NOOP_CONTEXT, kind=kind)  # type: ignore[arg-type]

    def start(self) -> Span:
        self._depth += 1
        if self._depth == 1:
            self._prev = _active.get()
            _active.set(self)
        return self

    __enter__ = start

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> Literal[False]:
        self._depth -= 1
        if self._depth <= 0:
            self._done = True
            if _active.get() is self:
                _active.set(self._prev)
        return False

    def prepare_async(self) -> Span:
        return self

    def async_finish(self) -> Span:
        return self

    def tag(self, tag: Tag) -> Span:
        return self

    def log(self, ex: BaseException) -> Span:
        return self

    def raised(self) -> Span:
        return self

    def inject(self) -> Carrier:
        return OutboundCarrier()

    def extract(self, carrier: Carrier | None) -> Span:
        return self


class _NoopSegment:
    def __init__(self) -> None:
        self.segment_id = ID("N/A")
        self.related_traces = [ID("N/A")]
        self.spans: list[Span] = []
        self.is_size_limited = False

    def relate(self, trace_id: ID) -> None:
        pass

    def archive(self, span: Span) -> None:
        pass


class NoopContext:
    """The context of requests that are not traced: every span is a ``NoopSpan``."""

    current_segment = None
    trace_id = None
    correlation = _EMPTY

    def __init__(self) -> None:
        self.segment = _NoopSegment()
        self.create_time = 0
        self.profile_status = None
        self.primary_endpoint = None

    def new_entry_span(self, op: str, carrier: Carrier | None = None, inherit: Component | None = None,
                       **kwargs: Any) -> Span:
        return NoopSpan(self, Kind.Entry)

    def new_exit_span(self, op: str, peer: str | None = None, component: Component | None = None,
                      inherit: Component | None = None, **kwargs: Any) -> Span:
        return NoopSpan(self, Kind.Exit)

    def new_local_span(self, op: str) -> Span:
        return NoopSpan(self, Kind.Local)

    @property
    def active_span(self) -> Span | None:
        span = _active.get()
        return span if span is not None and span.context is self and not span._done else None

    def link(self) -> Link | None:
        return None

    def put_correlation(self, key: str, value: str | None) -> None:
        pass

    def get_correlation(self, key: str) -> str | None:
        return None

    def capture(self) -> Snapshot | None:
        return None

    def continued(self, snapshot: Snapshot | None) -> None:
        pass


NOOP_CONTEXT = NoopContext()
