"""The context one traced process hands to another that runs this agent too (a Ray call): a plain tuple,
pickled with the call, that names the caller by its identity instead of OAP-issued ids. Neither side waits
for the OAP: the callee's ref keeps the caller's identity and the reporter registers it (on the caller's
behalf, same UUID) before the segment is encoded. Headers (sw6/sw8) remain the format for everything else.

    (VERSION, trace id, trace id parts, segment id, segment id parts, span id, caller identity,
     entry instance, entry endpoint, parent endpoint, parent endpoint name, peer, correlation)

Ids travel as text plus their int64 parts (None for sw8-style ids); the entry instance is an OAP id or an
identity; endpoints are in the compressed sw6 form (``#name``, an id, ``-1``).
"""

from __future__ import annotations

from typing import Any

from skywalking.loggings import logger
from skywalking.trace._record import SlotRecord
from skywalking.trace.carrier import Carrier
from skywalking.trace.identity import Identity, is_identity
from skywalking.trace.ids import ID
from skywalking.trace.noop import NoopSpan
from skywalking.trace.propagation import outbound_entry
from skywalking.trace.segment import InstanceRef
from skywalking.trace.span import Span
from skywalking.trace.tracer import TRACER

VERSION = 1
SKIP = (0,)  # the caller does not trace this call (not sampled, over a limit): neither does the callee


def capture(span: Span) -> tuple[Any, ...] | None:
    """The handoff for a call made inside ``span`` (an exit span of a live segment); ``SKIP`` for a call the
    agent does not trace (a no-op span: the callee then traces nothing either); None when not tracing."""
    ctx = span.context
    seg = ctx.current_segment
    link = ctx.link() if seg is not None and span.sid >= 0 else None
    if link is None:
        return SKIP if TRACER.reporter is not None and isinstance(span, NoopSpan) else None
    entry, entry_raw, parent_raw = outbound_entry(link.first_op, link.first_is_entry, link.first_ref,
                                                  seg.identity)  # type: ignore[union-attr]
    trace_id, seg_id = link.trace_id, link.segment_id
    corr = ctx.correlation
    return (VERSION, trace_id.value, trace_id.parts, seg_id.value, seg_id.parts, span.sid,
            seg.identity, entry, entry_raw, parent_raw, link.first_op or "", span.peer or "",  # type: ignore[union-attr]
            dict(corr) if corr else None)


class Handoff(SlotRecord):
    """A decoded handoff."""

    __slots__ = ("caller", "correlation", "entry", "entry_raw", "parent_endpoint", "parent_raw", "peer",
                 "segment_id", "span_id", "trace_id")

    def __init__(self, trace_id: ID, segment_id: ID, span_id: int, caller: Identity, entry: InstanceRef,
                 entry_raw: str, parent_raw: str, parent_endpoint: str, peer: str,
                 correlation: dict[str, str] | None) -> None:
        self.trace_id = trace_id
        self.segment_id = segment_id
        self.span_id = span_id
        self.caller = caller
        self.entry = entry
        self.entry_raw = entry_raw
        self.parent_raw = parent_raw
        self.parent_endpoint = parent_endpoint
        self.peer = peer
        self.correlation = correlation


def _parts(value: Any) -> tuple[int, int, int] | None:
    if value is None:
        return None
    if type(value) is tuple and len(value) == 3 and type(value[0]) is int and type(value[1]) is int \
            and type(value[2]) is int:
        return value
    raise ValueError("bad id parts")


_checked: dict[Identity, None] = {}  # identities that passed is_identity: a process hears from few callers
_CHECKED_MAX = 256


def _identity(value: Any) -> bool:
    """``is_identity``, remembered: a hash lookup instead of a walk over every field (TypeError if unhashable)."""
    if value in _checked:
        return True
    if not is_identity(value):
        return False
    if len(_checked) >= _CHECKED_MAX:
        _checked.clear()
    _checked[value] = None
    return True


def _raw(value: Any) -> str:
    if type(value) is str and value and (value[0] == "#" or value == "-1" or value.isdigit()):
        return value
    raise ValueError("bad endpoint")


def decode(value: Any) -> Handoff | None:
    """A handoff from another process, checked field by field; None (and a debug line) if unusable."""
    try:
        if type(value) is not tuple or len(value) != 13 or value[0] != VERSION:
            raise ValueError("not a version 1 handoff")
        _, trace, trace_parts, seg, seg_parts, span_id, caller, entry, entry_raw, parent_raw, endpoint, peer, corr \
            = value
        if type(trace) is not str or type(seg) is not str or not trace or not seg:
            raise ValueError("bad ids")
        if type(span_id) is not int or span_id < 0 or not _identity(caller):
            raise ValueError("bad span id or caller")
        if not (type(entry) is int and entry > 0 or _identity(entry)):
            raise ValueError("bad entry instance")
        if type(endpoint) is not str or type(peer) is not str:
            raise ValueError("bad names")
        if corr is not None and not (type(corr) is dict and all(type(k) is str and type(v) is str
                                                                for k, v in corr.items())):
            raise ValueError("bad correlation")
        return Handoff(ID(trace, _parts(trace_parts)), ID(seg, _parts(seg_parts)), span_id, caller, entry,
                       _raw(entry_raw), _raw(parent_raw), endpoint, peer, corr)
    except (ValueError, TypeError) as e:
        logger.debug("ignoring an inbound handoff (%s); starting a new trace", e)
        return None


class HandoffCarrier(Carrier):
    """An inbound carrier holding a handoff instead of headers (``new_entry_span(op, carrier=...)``)."""

    def __init__(self, value: Any) -> None:  # no headers: the list stays empty
        self._value = value
        self._decoded: Handoff | None = None

    def decode(self) -> Handoff | None:
        if self._decoded is None and self._value is not None:
            self._decoded = decode(self._value)
            self._value = None
        return self._decoded

    def inbound_correlation(self) -> dict[str, str]:
        h = self.decode()
        return dict(h.correlation) if h is not None and h.correlation else {}
