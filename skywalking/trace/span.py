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
from binascii import b2a_base64
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from skywalking import Component, Kind, Layer, Log, LogItem, config
from skywalking.loggings import logger
from skywalking.trace.carrier import (
    SW8,
    Carrier,
    CarrierItem,
    HeaderError,
    OutboundCarrier,
    encode_correlation,
    encode_sw8,
    format_sw6,
)
from skywalking.trace.tags import Tag
from skywalking.trace.tracer import TRACER

if TYPE_CHECKING:
    from skywalking.trace.context import SpanContext
    from skywalking.trace.segment import InstanceRef, Segment, SegmentRef

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


def entry_view(first_op: str | None, first_is_entry: bool, first_ref: SegmentRef | None,
               own: InstanceRef) -> tuple[InstanceRef, str, str]:
    """(entry instance, entry endpoint, parent endpoint) for sw6, as Java 6.6.0 computes them (spec §3.4),
    endpoints in compressed form: ``#name``, an id, or ``-1`` (never empty). ``own``: this segment's
    instance (identity or id), the entry when the trace started here."""
    parent = "#" + first_op if first_is_entry and first_op else "-1"
    if first_ref is not None and first_ref.entry_instance:  # continue the caller's entry
        if first_ref.entry_endpoint_id:
            return first_ref.entry_instance, str(first_ref.entry_endpoint_id), parent
        return first_ref.entry_instance, "#" + first_ref.entry_endpoint if first_ref.entry_endpoint else "-1", \
            parent
    return own, parent, parent


def outbound_entry(ctx: SpanContext, seg: Segment) -> tuple[InstanceRef, str, str]:
    """``entry_view`` of a live segment, for a context about to leave the process (header or handoff). The
    parent endpoint it names, when it is our own entry span's name, is registered now: the OAP resolves it
    when the callee's segment arrives, which may be long before this segment is sent."""
    first = ctx._first
    view = entry_view(first.op, first.kind is _ENTRY, first.refs[0] if first.refs else None, seg.identity)
    if view[2][0] == "#":
        TRACER.note_endpoint(first.op)  # type: ignore[arg-type]
    return view


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
            ctx = self.context
            if ctx._lock is None:
                ctx._nspans += 1
            else:
                ctx._span_started()
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
            self.context._async_prepared()
        return self

    def async_finish(self) -> Span:
        """End a span prepared with ``prepare_async()``; safe from any thread, idempotent."""
        if self._async:
            self._async = False
            self.end_time = _now_ms()
            self.context._async_finished(self)
        return self

    def finish(self, segment: Segment) -> bool:
        """Upstream API: end the span and add it to ``segment``."""
        self.end_time = _now_ms()
        segment.archive(self)
        return True

    __enter__ = start

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> bool:
        if exc_type is not None and issubclass(exc_type, Exception):
            self.raised()
        self._depth -= 1
        if self._depth > 0:
            return False
        self._done = True
        if _active.get() is self:
            _active.set(self._prev)
        ctx = self.context
        if self._async:
            ctx._span_stopped(None)
            return False
        self.end_time = _time_ns() // 1_000_000
        if ctx._lock is None:  # the common case, inlined
            ctx._segment.spans.append(self)
            n = ctx._nspans = ctx._nspans - 1
            if n == 0:
                ctx._archive()
        else:
            ctx._span_stopped(self)
        return False

    def _link_target(self) -> tuple[Any, ...] | None:
        """What a context continuing this span (from another thread or later) links to."""
        ctx = self.context
        return ctx._link_info() if hasattr(ctx, "_link_info") else None

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
                    tags[i] = tag  # type: ignore[index]
                    return self
        tags.append(tag)  # type: ignore[union-attr]
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
            self.context._extract(self, carrier)
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
        seg = ctx._segment
        if seg is None:
            raise IllegalStateError("inject() on a span that is not part of a live segment")
        trace_id = seg.related_traces[0]
        seg_id = seg.segment_id
        out = _new_carrier(OutboundCarrier)  # no __init__ frame: nothing to parse
        out._span = self
        for kind in config.PROPAGATION:
            try:
                if kind == "sw6":
                    if trace_id.parts is None or seg_id.parts is None:
                        continue  # ids made under v8 have no sw6 form
                    own = seg.identity
                    entry_instance, entry, parent = outbound_entry(ctx, seg)
                    # a header needs OAP ids: skipped (and counted) until they are issued
                    instance_id = TRACER.instance_id if own is TRACER.identity else 0
                    if instance_id <= 0:
                        instance_id = TRACER.resolve(own)
                    if entry_instance is own:
                        entry_instance = instance_id
                    elif type(entry_instance) is not int:
                        entry_instance = TRACER.resolve(entry_instance)
                    if instance_id <= 0 or entry_instance <= 0:
                        TRACER.sw6_skipped += 1
                        continue
                    trace_b64 = b2a_base64(trace_id.value.encode(), newline=False).decode()
                    seg_b64 = trace_b64 if seg_id is trace_id else \
                        b2a_base64(seg_id.value.encode(), newline=False).decode()
                    out.append(CarrierItem(config.SW6_HEADER, format_sw6(
                        1, trace_b64, seg_b64, self.sid, instance_id, entry_instance,
                        "#" + (self.peer or "unknown"), entry, parent)))
                else:
                    if ctx._correlation:
                        out.append(CarrierItem("sw8-correlation", encode_correlation(ctx._correlation)))
                    first = ctx._first
                    out.append(CarrierItem("sw8", encode_sw8(SW8(
                        trace_id, seg_id, self.sid, seg.identity[0], seg.identity[1],
                        first.op or "unknown", self.peer or "unknown"))))
            except HeaderError as e:
                logger.debug("no %s header: %s", kind, e)
        return out


class NoopSpan(Span):
    """Returned when a request is not traced; records nothing, injects nothing."""

    __slots__ = ()

    def __init__(self, context: Any = None, kind: Kind | None = None) -> None:
        if context is None:
            from skywalking.trace.context import NOOP_CONTEXT
            context = NOOP_CONTEXT
        super().__init__(context, kind=kind)

    def start(self) -> Span:
        self._depth += 1
        if self._depth == 1:
            self._prev = _active.get()
            _active.set(self)
        return self

    __enter__ = start

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> bool:
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
