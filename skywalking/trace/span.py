"""Spans: entry, exit, local, and the no-op span returned when a request is not traced.

A span is a context manager: entering starts it (makes it the active span of the current
thread/task), leaving stops it; an exception leaving the block marks it as an error and is
re-raised. A span can also be finished from another thread or callback: call
``prepare_async()`` in the owning code, leave the block as usual, and call ``async_finish()``
when the work really ends (Java's prepareForAsync / asyncFinish).
"""

from __future__ import annotations

import sys
import time
import traceback
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Literal

from skywalking import Component, Kind, Layer, Log, LogItem, config
from skywalking.loggings import logger
from skywalking.trace.carrier import Carrier, OutboundCarrier
from skywalking.trace.headers import HeaderError
from skywalking.trace.tags import Tag
from skywalking.trace.tracer import TRACER

if TYPE_CHECKING:
    from skywalking.trace.context import SpanContext
    from skywalking.trace.segment import Segment, SegmentRef

# The active span of the current thread / asyncio task. Spans link to the span that was active
# before them, so pushing and popping allocate nothing.
_active: ContextVar[Span | None] = ContextVar("skywalking_active_span", default=None)


class IllegalStateError(RuntimeError):
    """An API call that does not fit the span's state (e.g. ``inject`` on an entry span)."""


_LOCAL, _ENTRY, _EXIT = Kind.Local, Kind.Entry, Kind.Exit  # enum class lookups are slow on the hot path
_UNKNOWN_COMPONENT = Component.Unknown
_UNKNOWN_LAYER = Layer.Unknown
_time_ns = time.time_ns
_new_carrier = list.__new__


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Span:
    __slots__ = ("__dict__", "_depth", "_done", "_prev", "component", "context", "end_time", "kind", "layer", "op",
                 "peer", "pid", "sid", "start_time", "tags")

    _default_kind = _LOCAL
    # rarely set: class-level defaults, written on the instance only when they change
    inherit: Component | None = None
    logs: list[Log] | tuple[()] = ()
    refs: list[SegmentRef] | tuple[()] = ()
    error_occurred = False
    _async = False

    def __init__(self, context: SpanContext, sid: int = -1, pid: int = -1, op: str | None = None,
                 peer: str | None = None, kind: Kind | None = None, component: Component | None = None,
                 layer: Layer | None = None) -> None:
        self.context = context
        self.sid = sid
        self.pid = pid
        self.op = op
        self.peer = peer
        self.kind = kind if kind is not None else self._default_kind
        self.component = component if component is not None else _UNKNOWN_COMPONENT
        self.layer = layer if layer is not None else _UNKNOWN_LAYER
        self.tags: list[Tag] | tuple[()] = ()  # lists are made on first write: fewer GC-tracked objects
        self.start_time = 0
        self.end_time = 0
        self._depth = 0
        self._prev: Span | None = None
        self._done = False

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> Span:
        self._depth += 1
        if self._depth == 1:
            self.start_time = _time_ns() // 1_000_000
            self._prev = _active.get()
            _active.set(self)
            self.context.span_started()
        elif self.kind is _ENTRY:
            # re-entered by an inheriting plugin (e.g. Flask inside the generic WSGI span): the inner
            # plugin describes the request from scratch
            self.tags = ()
            self.logs = ()
            self.component = _UNKNOWN_COMPONENT
            self.layer = _UNKNOWN_LAYER
        return self

    def stop(self) -> bool:
        """Stop once per start; the last stop finishes the span. True when it finished."""
        last = self._depth == 1
        self.__exit__(None, None, None)
        return last

    def prepare_async(self) -> Span:
        """Let ``async_finish()`` (from any thread) end this span after its block has been left."""
        if not self._async and self._depth > 0:
            self._async = True
            self.context.span_async_prepared()
        return self

    def async_finish(self) -> Span:
        """End a span prepared with ``prepare_async()``; safe from any thread, idempotent."""
        if self._async:
            self._async = False
            self.end_time = _now_ms()
            self.context.span_async_finished(self)
        return self

    def finish(self, segment: Segment) -> bool:
        """Upstream API: end the span and add it to ``segment``."""
        self.end_time = _now_ms()
        segment.archive(self)
        return True

    __enter__ = start

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> Literal[False]:
        if exc_type is not None and issubclass(exc_type, Exception):
            self.raised()
        self._depth -= 1
        if self._depth > 0:
            return False
        self._done = True
        if _active.get() is self:
            _active.set(self._prev)
        if self._async:
            self.context.span_stopped(None)  # async_finish() ends it
            return False
        self.end_time = _time_ns() // 1_000_000
        self.context.span_stopped(self)
        return False

    @property
    def depth(self) -> int:
        return self._depth

    # -- data -------------------------------------------------------------------------------------

    def tag(self, tag: Tag) -> Span:
        tags = self.tags
        if not tags:
            self.tags = [tag]
            return self
        if tag.overridable:
            key = tag.key
            for i, t in enumerate(tags):
                if t.key == key:
                    tags[i] = tag
                    return self
        tags.append(tag)
        return self

    def iter_tags(self) -> Any:
        return iter(self.tags)

    def log(self, ex: BaseException) -> Span:
        self.error_occurred = True
        self.logs = [*self.logs, Log(items=[LogItem("Traceback", str(ex))])]
        return self

    def raised(self) -> Span:
        """Mark as error and record the exception being handled (depth-limited traceback)."""
        self.error_occurred = True
        exc = sys.exc_info()[1]
        if exc is not None:
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__,
                                                      limit=config.agent_cause_exception_depth))
            self.logs = [Log(items=[LogItem("Traceback", text)])]
        return self

    # -- propagation ------------------------------------------------------------------------------

    def inject(self) -> Carrier:
        raise IllegalStateError("inject() is only for exit spans")

    def extract(self, carrier: Carrier | None) -> Span:
        if carrier is not None:
            self.context.extract(self, carrier)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sid={self.sid}, pid={self.pid}, op={self.op!r}, peer={self.peer!r})"


class EntrySpan(Span):
    __slots__ = ()
    _default_kind = _ENTRY


class ExitSpan(Span):
    __slots__ = ()
    _default_kind = _EXIT

    def inject(self) -> Carrier:
        """The headers to send with this call (``agent_propagation``); empty if none can be made."""
        ctx = self.context
        seg = ctx.current_segment
        if seg is None:
            raise IllegalStateError("inject() on a span that is not part of a live segment")
        out = _new_carrier(OutboundCarrier)  # no __init__ frame: nothing to parse
        out._span = self
        for fmt in TRACER.propagation.outbound:
            try:
                fmt.inject(self, ctx, seg, out)
            except HeaderError as e:
                logger.debug("no %s header: %s", fmt.name, e)
        return out


def __getattr__(name: str) -> Any:
    if name == "NoopSpan":  # moved to skywalking.trace.noop; still importable from here
        from skywalking.trace.noop import NoopSpan
        return NoopSpan
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
