"""Tracing contexts: one segment of spans per context, one context per thread or task chain.

``get_context()`` returns the context of the active span, or a fresh one. Contexts live in a
``ContextVar``: asyncio tasks inherit the caller's; a context used from another thread (for
example through ``contextvars.copy_context`` or ``asyncio.to_thread``) gets a new segment linked
to the calling span by a CrossThread reference, so a segment never has two writers. Tracing starts
with the agent, before the OAP has issued any id: segments name their process by its identity and the
reporter turns identities into ids when it encodes them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from skywalking import Component, Kind, config
from skywalking.loggings import logger
from skywalking.trace.carrier import Carrier
from skywalking.trace.identity import NAME, SERVICE, Identity
from skywalking.trace.ids import ID
from skywalking.trace.noop import _EMPTY, NOOP_CONTEXT, NoopContext, NoopSpan
from skywalking.trace.propagation import install, select
from skywalking.trace.segment import Link, Segment, SegmentRef
from skywalking.trace.snapshot import Snapshot
from skywalking.trace.span import EntrySpan, ExitSpan, IllegalStateError, Span, _active
from skywalking.trace.tracer import TRACER, no_ids, no_names

__all__ = ["NOOP_CONTEXT", "NoopContext", "SpanContext", "fresh_context", "get_context", "inside_exit_span", "peek",
           "suppress_tracing"]
_new_link = tuple.__new__

SPAN_LIMIT_PER_SEGMENT = 300  # Java Agent.SPAN_LIMIT_PER_SEGMENT; further spans are no-ops
OPERATION_NAME_THRESHOLD = 500  # Java Agent.OPERATION_NAME_THRESHOLD
_get_ident = threading.get_ident
_time_ns = time.time_ns
_ENTRY, _EXIT = Kind.Entry, Kind.Exit


def enable(reporter: Callable[[Segment], Any], *, identity: Identity, protocol: str = "v6",
           sample_n_per_3_secs: int = 0, instance_id: int = 0,
           resolve: Callable[[Identity], int] | None = None,
           note_endpoint: Callable[[str], None] | None = None) -> None:
    """Start tracing: finished segments go to ``reporter`` (called once per segment). ``instance_id`` is the
    OAP's id for ``identity`` if already known; ``resolve`` looks up (and asks for) the id of an identity."""
    t = TRACER
    install(select(protocol))
    set_identity(identity, instance_id)
    t.resolve = resolve if resolve is not None else no_ids
    t.note_endpoint = note_endpoint if note_endpoint is not None else no_names
    t.sample_limit, t.sample_count, t.sample_window = sample_n_per_3_secs, 0, 0.0
    t.max_calls = max(0, config.agent_trace_max_calls_per_span)
    _ignored.clear()
    t.reporter = reporter


def set_identity(identity: Identity, instance_id: int = 0) -> None:
    """Report as ``identity`` from now on (segments already started keep theirs)."""
    t = TRACER
    t.identity, t.service, t.instance, t.instance_id = identity, identity[SERVICE], identity[NAME], instance_id


def set_instance_id(identity: Identity, instance_id: int) -> None:
    """The OAP issued (or, with 0, withdrew) the id of ``identity``; kept if it is still this process's."""
    t = TRACER
    if t.identity is identity:
        t.instance_id = instance_id


def disable() -> None:
    """Stop tracing: ``get_context()`` returns the no-op context from now on."""
    TRACER.reporter = None


_ignored: dict[str, bool] = {}
config.on_recompute("RE_IGNORE_PATH", _ignored.clear)  # a new agent_trace_ignore_path applies at once


def _is_ignored(op: str) -> bool:
    v = _ignored.get(op)
    if v is None:
        regex = config.RE_IGNORE_PATH
        v = regex is not None and regex.match(op) is not None
        if len(_ignored) >= 2048:
            _ignored.clear()
        _ignored[op] = v
    return v


class SpanContext:
    """The spans of one segment. Created by ``get_context()``; not shared between threads."""

    __slots__ = ("__dict__", "_archived", "_nspans", "_sid", "_thread", "current_segment", "first_span")

    # rarely used state: class-level defaults, set on the instance only when needed
    _lock: threading.Lock | None = None  # made by the first prepare_async()
    _pending = 0  # spans prepared for async finish and not finished yet
    _parent: Span | None = None  # span of another thread / finished segment this context continues
    _correlation: dict[str, str] | None = None
    # the archived segment's ``Link`` fields (a plain tuple: made for every segment, read rarely)
    _last: tuple[ID, ID, str | None, bool, SegmentRef | None] | None = None
    profile_status = None

    def __init__(self, parent: Span | None = None) -> None:
        self.current_segment: Segment | None = None  # the live segment (read-only; ``segment`` starts one)
        self.first_span: Span | None = None  # its first span (read-only)
        self._sid = 0
        self._nspans = 0
        self._archived = False
        self._thread = _get_ident()
        if parent is not None:
            self._parent = parent

    @property
    def create_time(self) -> int:
        seg = self.current_segment
        return seg.timestamp if seg is not None else 0

    @property
    def trace_id(self) -> ID | None:
        """The trace of the live segment, or of the last one this context archived."""
        seg = self.current_segment
        if seg is not None and not self._archived:
            return seg.related_traces[0]
        last = self._last
        return last[0] if last is not None else None

    @property
    def correlation(self) -> Mapping[str, str]:
        """The correlation entries (read-only view; ``put_correlation`` changes them)."""
        corr = self._correlation
        return corr if corr else _EMPTY

    # -- segment ----------------------------------------------------------------------------------

    @property
    def segment(self) -> Segment:
        seg = self.current_segment
        if seg is None or self._archived:
            seg = self._start_segment(None)
        return seg

    def _start_segment(self, trace_id: ID | None) -> Segment:
        t = TRACER
        if trace_id is None and (self._last is not None or self._parent is not None):
            link = self.link() or (self._parent.context.link() if self._parent is not None else None)
            if link is not None:
                trace_id = link.trace_id  # continue the trace of a held or parent context
        ms = _time_ns() // 1_000_000
        seg_id = t.propagation.new_id(ms)
        seg = Segment(seg_id, trace_id or seg_id, ms, t.identity)
        self.current_segment = seg
        self._archived = False
        self._sid = 0
        self.first_span = None
        return seg

    @property
    def active_span(self) -> Span | None:
        span = _active.get()
        while span is not None and span._done:
            span = span._prev
        return span if span is not None and span.context is self else None

    @property
    def primary_endpoint(self) -> str | None:
        first = self.first_span
        return first.op if first is not None else None

    # -- span creation ----------------------------------------------------------------------------

    def new_entry_span(self, op: str, carrier: Carrier | None = None, inherit: Component | None = None) -> Span:
        parent = _active.get()
        if parent is not None and (parent._done or parent.context is not self):
            parent = self.active_span
        if parent is not None and parent.kind is _ENTRY and inherit is not None and inherit == parent.component:
            parent.op = op
            if carrier is not None and not parent.refs:
                self.extract(parent, carrier)
            return parent
        header = carrier.decode() if carrier is not None else None
        if header is None:
            return self._new_span(EntrySpan, op, parent, False)
        trace_id, ref = TRACER.propagation.link(header)
        span = self._new_span(EntrySpan, op, parent, True, trace_id)
        if span.context is self:
            self._continue(span, trace_id, ref)
            self._adopt_correlation(carrier)  # type: ignore[arg-type]
        return span

    def new_exit_span(self, op: str, peer: str | None = None, component: Component | None = None,
                      inherit: Component | None = None) -> Span:
        parent = _active.get()
        if parent is not None and (parent._done or parent.context is not self):
            parent = self.active_span
        if parent is not None and parent.kind is _EXIT and parent.inherit is not None \
                and parent.inherit == component:
            parent.op = op
            parent.peer = peer
            parent.component = component
            return parent
        if TRACER.max_calls and parent is not None and _over_cap(parent):
            return NoopSpan(NOOP_CONTEXT)
        sid = self._sid
        if parent is not None and sid < SPAN_LIMIT_PER_SEGMENT and _ignored.get(op) is False \
                and len(op) <= OPERATION_NAME_THRESHOLD:  # the common case: inside a live segment
            self._sid = sid + 1
            span: Span = ExitSpan(self, sid, parent.sid, op, peer, None, component)
        else:
            span = self._new_span(ExitSpan, op, parent, False, None, peer, component)
        if inherit is not None:
            span.inherit = inherit
        return span

    def new_local_span(self, op: str) -> Span:
        return self._new_span(Span, op, self.active_span, False)

    def _new_span(self, cls: type[Span], op: str, parent: Span | None, inbound: bool, trace_id: ID | None = None,
                  peer: str | None = None, component: Component | None = None) -> Span:
        """``inbound``: the span continues a propagated context (``trace_id``: the trace it adopts)."""
        ignored = _ignored.get(op)
        if ignored is None:
            ignored = _is_ignored(op) if op else False
        if ignored:
            return NoopSpan(NOOP_CONTEXT)
        seg = self.current_segment
        if seg is None or self._archived:
            if not inbound and TRACER.sample_limit and self._parent is None and self._last is None \
                    and not TRACER.sample_root():  # only new traces are sampled
                return NoopSpan(NOOP_CONTEXT)
            seg = self._start_segment(trace_id)
        sid = self._sid
        if sid >= SPAN_LIMIT_PER_SEGMENT:
            seg.is_size_limited = True
            TRACER.spans_over_limit += 1  # counted here, logged by the reporter's control thread
            return NoopSpan(NOOP_CONTEXT)
        self._sid = sid + 1
        if op and len(op) > OPERATION_NAME_THRESHOLD:
            op = op[:OPERATION_NAME_THRESHOLD]
        span = cls(self, sid, parent.sid if parent is not None else -1, op, peer, None, component)
        if sid == 0:
            self.first_span = span
            if self._parent is not None and not inbound:
                self._link(span, self._parent)
            profiler = TRACER.profiler
            if profiler is not None and cls is EntrySpan:
                profiler(span)
        return span

    # -- lifecycle (called by spans) ----------------------------------------------------------------

    def span_started(self) -> None:
        lock = self._lock
        if lock is None:
            self._nspans += 1
        else:
            with lock:
                self._nspans += 1

    def span_stopped(self, span: Span | None) -> None:
        """``span`` left its block and is finished (None: prepared for async, ``async_finish`` ends it)."""
        if self._lock is None:  # the common case: no async span
            seg = self.current_segment
            if seg is None:  # made in a segment that was reported before the span started
                TRACER.spans_after_segment += 1
                self._nspans -= 1
                return
            seg.spans.append(span)  # type: ignore[arg-type]
            n = self._nspans = self._nspans - 1
            if n == 0:
                self._archive()
        else:
            self._finish_locked(span, 1, 0)

    def span_async_prepared(self) -> None:
        if self._lock is None:
            self._lock = threading.Lock()  # from now on the counters change under it
        with self._lock:
            self._pending += 1

    def span_async_finished(self, span: Span) -> None:
        self._finish_locked(span, 0, 1)

    def _finish_locked(self, span: Span | None, stopped: int, finished: int) -> None:
        with self._lock:  # type: ignore[union-attr]
            if span is not None:
                seg = self.current_segment
                if seg is None:  # its segment was reported before it finished
                    TRACER.spans_after_segment += 1
                else:
                    seg.spans.append(span)
            self._nspans -= stopped
            self._pending -= finished
            done = self._nspans == 0 and self._pending == 0 and not self._archived
            if done:
                self._archived = True
        if done:
            self._archive()

    def _archive(self) -> None:
        self._archived = True
        seg = self.current_segment
        if seg is None:
            return
        # break the segment -> span -> context -> segment cycle so finished requests need no GC; keep
        # what a later span of this context (or a task that outlived it) needs to link to it
        first = self.first_span
        self._last = (seg.related_traces[0], seg.segment_id, first.op if first else None,
                      first is not None and first.kind is _ENTRY, first.refs[0] if first and first.refs else None)
        self.current_segment = None
        self.first_span = None
        reporter = TRACER.reporter
        if reporter is None or not seg.spans:
            return
        try:
            reporter(seg)
        except Exception:  # never into the application
            logger.exception("reporter failed to accept a segment")

    # -- propagation ------------------------------------------------------------------------------

    def extract(self, span: Span, carrier: Carrier) -> None:
        """Continue the context ``carrier`` holds in ``span`` (an entry span of this context)."""
        header = carrier.decode()
        if header is not None:
            self._continue(span, *TRACER.propagation.link(header))
            self._adopt_correlation(carrier)

    def _continue(self, span: Span, trace_id: ID | None, ref: SegmentRef | None) -> None:
        """Adopt a propagated trace id and add its CrossProcess ref (what the protocol can express)."""
        if trace_id is None:
            return
        (self.current_segment or self.segment).relate(trace_id)
        if ref is not None:
            span.refs = [*span.refs, ref]

    def _adopt_correlation(self, carrier: Carrier) -> None:
        incoming = carrier.inbound_correlation()
        if incoming:
            for k, v in incoming.items():
                self.put_correlation(k, v)

    # -- correlation --------------------------------------------------------------------------------

    def put_correlation(self, key: str, value: str | None) -> None:
        """Set (or with ``None`` remove) a correlation entry, within the configured limits."""
        corr = self._correlation
        if value is None:
            if corr:
                corr.pop(key, None)
            return
        if not key or len(value) > config.correlation_value_max_length:
            return
        if corr is None:
            corr = self._correlation = {}
        if key in corr or len(corr) < config.correlation_element_max_number:
            corr[key] = value

    def get_correlation(self, key: str) -> str | None:
        return self._correlation.get(key) if self._correlation else None

    # -- cross-thread -----------------------------------------------------------------------------

    def capture(self) -> Snapshot | None:
        """A snapshot of the active span, to continue this trace in another thread."""
        span = self.active_span
        seg = self.current_segment
        if span is None or seg is None:
            return None
        return Snapshot.of(self.link(), span.sid, seg.identity, dict(self._correlation or {}))  # type: ignore[arg-type]

    def continued(self, snapshot: Snapshot | None) -> None:
        """Link the active span to a snapshot taken in another thread (a CrossThread ref)."""
        trace_id = snapshot.trace_id if snapshot is not None and snapshot.is_valid() else None
        span = self.active_span
        if trace_id is None or span is None or snapshot.is_from_current(self):  # type: ignore[union-attr]
            return
        self.segment.relate(trace_id)
        for k, v in snapshot.correlation.items():  # type: ignore[union-attr]
            self.put_correlation(k, v)
        if span.kind is _ENTRY:
            return  # OAP 6.6.0 drops entry spans whose refs lack a network address (docs/protocol/sw6.md §8.10)
        span.refs = [*span.refs, snapshot.to_ref(self.segment.identity)]  # type: ignore[union-attr]

    def join(self, snapshots: list[Snapshot | None]) -> None:
        """Link the active (local or exit) span to several snapshots, e.g. a batch that serves several
        requests: one CrossThread ref each; the segment belongs to every one of their traces, the first one
        primary (under v6 the OAP files a segment under one trace, the primary)."""
        span = self.active_span
        valid = [s for s in snapshots if s is not None and s.is_valid()]
        if span is None or span.kind is _ENTRY or not valid:
            return
        seg = self.segment
        traces = [s.trace_id for s in valid if s.trace_id is not None]
        seg.relate(traces[0])
        for trace_id in traces[1:]:
            if trace_id not in seg.related_traces:
                seg.related_traces.append(trace_id)
        span.refs = [*span.refs, *(snap.to_ref(seg.identity) for snap in valid)]

    def link(self) -> Link | None:
        """What a context continuing this one's live (or else last) segment links to."""
        seg = self.current_segment
        if seg is not None and not self._archived:
            first = self.first_span
            return _new_link(Link, (seg.related_traces[0], seg.segment_id, first.op if first else None,
                                    first is not None and first.kind is _ENTRY,
                                    first.refs[0] if first and first.refs else None))
        last = self._last
        return _new_link(Link, last) if last is not None else None

    def _link(self, span: Span, parent: Span) -> None:
        """First span of a context that continues ``parent`` (another thread or a finished segment)."""
        link = parent.context.link()
        if link is None:
            return
        self.current_segment.relate(link.trace_id)  # type: ignore[union-attr]
        if span.kind is _ENTRY:
            return  # OAP 6.6.0 drops entry spans whose refs lack a network address (docs/protocol/sw6.md §8.10)
        identity = self.current_segment.identity  # type: ignore[union-attr]
        span.refs = [*span.refs, Snapshot.of(link, parent.sid, identity).to_ref(identity)]


def _over_cap(parent: Span) -> bool:
    """Count an exit span under ``parent``; True (and counted) past ``agent_trace_max_calls_per_span``."""
    calls = parent.__dict__.get("_calls", 0) + 1
    parent.__dict__["_calls"] = calls
    if calls > TRACER.max_calls:
        TRACER.calls_over_cap += 1
        return True
    return False


def get_context() -> SpanContext | NoopContext:
    """The context of the active span in this thread/task, or a new one."""
    top = _active.get()
    if top is not None:
        if top._done:
            first_done = top
            while top is not None and top._done:
                top = top._prev
            if top is None:  # e.g. a task that outlived its request: continue that trace
                ctx = first_done.context
                if ctx is NOOP_CONTEXT or TRACER.reporter is None:
                    return NOOP_CONTEXT
                return SpanContext(first_done)
        ctx = top.context
        if ctx is NOOP_CONTEXT or ctx._thread == _get_ident():
            return ctx
        return SpanContext(top) if TRACER.reporter is not None else NOOP_CONTEXT
    if TRACER.reporter is not None or (TRACER.pending is not None and TRACER.pending()):
        return SpanContext()
    return NOOP_CONTEXT


def fresh_context() -> SpanContext | NoopContext:
    """A new context, not nested in the active span: for work that is its own segment whatever runs around it
    (a consumed message continues its producer's trace, not the trace of the code that happened to receive it).
    The no-op context when tracing is off or suppressed here."""
    ctx = get_context()
    return ctx if ctx is NOOP_CONTEXT else SpanContext()


@contextmanager
def suppress_tracing() -> Iterator[None]:
    """Nothing inside this block is traced (the agent wraps its own network calls in it)."""
    span = NoopSpan(NOOP_CONTEXT)
    span.start()
    try:
        yield
    finally:
        span.stop()


def peek(raise_if_none: bool = False) -> Span | None:
    """The active span, if any."""
    span = _active.get()
    while span is not None and span._done:
        span = span._prev
    if span is None and raise_if_none:
        raise IllegalStateError("No active span")
    return span


def inside_exit_span() -> bool:
    """True when an exit span is already active: that span stands for the call being made (a higher-level
    client or the user's own instrumentation made it and injects the headers), so a client plugin adds nothing."""
    span = get_context().active_span
    return span is not None and span.kind is Kind.Exit


class PrimaryEndpoint:
    """Upstream's holder of a context's primary endpoint: the first entry span, else the first span."""

    def __init__(self, span: Span) -> None:
        self.span = span

    def set_primary_endpoint(self, span: Span) -> None:
        if self.span.kind is not Kind.Entry and span.kind is Kind.Entry:
            self.span = span

    def get_name(self) -> str:
        return self.span.op or ""
