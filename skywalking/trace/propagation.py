"""Propagation: the one place that knows header formats and what each wire protocol can express.

Spans and contexts are wire-neutral. They ask the ``Propagation`` chosen when tracing starts
(``TRACER.propagation``, see ``select()``) for three things:

* ``new_id(ms)``: a segment id in the protocol's shape (sw6: three int64 parts; sw8: a string);
* ``link(header)``: what an inbound header (or Ray handoff) means here: the trace id to adopt and the
  CrossProcess ref to add (docs/propagation.md: across protocol versions only the trace id carries over);
* ``outbound``: the ``HeaderFormat`` objects that write headers for an exit span (``agent_propagation``).

The sw6 "entry view" (entry instance, entry endpoint, parent endpoint in their compressed ``#name | id | -1``
forms, as the Java 6.6.0 agent computes them) is defined here too: headers, snapshots and handoffs carry it.
"""

from __future__ import annotations

from binascii import b2a_base64
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from skywalking import Kind, config
from skywalking.loggings import logger
from skywalking.trace.headers import (
    SW6,
    SW8,
    CarrierItem,
    HeaderError,
    decode_sw6,
    decode_sw8,
    encode_correlation,
    encode_sw8,
    format_sw6,
)
from skywalking.trace.identity import NAME, SERVICE
from skywalking.trace.ids import ID, new_sw6_id, new_sw8_id
from skywalking.trace.segment import InstanceRef, Link, Segment, SegmentRef
from skywalking.trace.tracer import TRACER

if TYPE_CHECKING:
    from typing import TypeAlias

    from skywalking.trace.handoff import Handoff
    from skywalking.trace.span import Span

    Inbound: TypeAlias = SW6 | SW8 | Handoff

_ENTRY = Kind.Entry


# -- the sw6 entry view ---------------------------------------------------------------------------

# (entry instance, entry endpoint, parent endpoint): the sw6 fields a propagated context carries, endpoints
# in compressed form
EntryView = tuple[InstanceRef, str, str]


def entry_view(first_op: str | None, first_is_entry: bool, first_ref: SegmentRef | None,
               own: InstanceRef) -> EntryView:
    """The sw6 entry view of a segment whose first span is described by the first three arguments
    (docs/protocol/sw6.md §7.5): endpoints never empty; ``own``: this segment's instance, the entry when the
    trace started here."""
    parent = "#" + first_op if first_is_entry and first_op else "-1"
    if first_ref is not None and first_ref.entry_instance:  # continue the caller's entry
        if first_ref.entry_endpoint_id:
            return first_ref.entry_instance, str(first_ref.entry_endpoint_id), parent
        return first_ref.entry_instance, "#" + first_ref.entry_endpoint if first_ref.entry_endpoint else "-1", \
            parent
    return own, parent, parent


def link_entry_view(link: Link, own: InstanceRef) -> EntryView:
    return entry_view(link.first_op, link.first_is_entry, link.first_ref, own)


def outbound_entry(first_op: str | None, first_is_entry: bool, first_ref: SegmentRef | None,
                   own: InstanceRef) -> EntryView:
    """``entry_view`` for a context about to leave the process (header or handoff). The parent endpoint it
    names, when it is our own entry span's name, is registered now: the OAP resolves it when the callee's
    segment arrives, which may be long before this segment is sent."""
    view = entry_view(first_op, first_is_entry, first_ref, own)
    if view[2][0] == "#":
        TRACER.note_endpoint(first_op)  # type: ignore[arg-type]
    return view


# -- header formats -------------------------------------------------------------------------------

class SpanView(Protocol):
    """What a header format reads from the context of the span it writes headers for."""

    first_span: Span | None

    @property
    def correlation(self) -> Mapping[str, str]: ...


class HeaderFormat:
    """One cross-process header format: writes its headers for an exit span, decodes an inbound value."""

    name = ""
    keys: tuple[str, ...] = ()  # the header names it reads, lower case

    def inject(self, span: Span, ctx: SpanView, seg: Segment, out: list[CarrierItem]) -> None:
        raise NotImplementedError

    def decode(self, headers: Mapping[str, str]) -> SW6 | SW8 | None:
        """The decoded header among ``headers`` (lower-case names); None if absent. Raises HeaderError."""
        raise NotImplementedError


class SW6Format(HeaderFormat):
    """``sw6`` (``<namespace>-sw6`` with ``agent_namespace``): needs the ids the OAP issued, so a header is
    skipped, and counted in ``TRACER.sw6_skipped``, until they are known."""

    name = "sw6"

    def __init__(self, key: str = "sw6") -> None:
        self.key = key
        self.keys = (key,)

    def inject(self, span: Span, ctx: SpanView, seg: Segment, out: list[CarrierItem]) -> None:
        trace_id, seg_id = seg.related_traces[0], seg.segment_id
        if trace_id.parts is None or seg_id.parts is None:
            return  # ids made under v8 have no sw6 form
        own = seg.identity
        first = ctx.first_span
        if first is None:
            return
        entry_instance, entry, parent = outbound_entry(first.op, first.kind is _ENTRY,
                                                       first.refs[0] if first.refs else None, own)
        t = TRACER
        instance_id = t.instance_id if own is t.identity else 0
        if instance_id <= 0:
            instance_id = t.resolve(own)
        if entry_instance is own:
            entry_id = instance_id
        elif type(entry_instance) is int:
            entry_id = entry_instance
        else:
            entry_id = t.resolve(entry_instance)  # type: ignore[arg-type]  # an Identity
        if instance_id <= 0 or entry_id <= 0:
            t.sw6_skipped += 1
            return
        trace_b64 = b2a_base64(trace_id.value.encode(), newline=False).decode()
        seg_b64 = trace_b64 if seg_id is trace_id else b2a_base64(seg_id.value.encode(), newline=False).decode()
        out.append(CarrierItem(self.key, format_sw6(1, trace_b64, seg_b64, span.sid, instance_id, entry_id,
                                                    "#" + (span.peer or "unknown"), entry, parent)))

    def decode(self, headers: Mapping[str, str]) -> SW6 | None:
        value = headers.get(self.key)
        return decode_sw6(value) if value else None


class SW8Format(HeaderFormat):
    """``sw8`` plus ``sw8-correlation`` (SkyWalking 8+)."""

    name = "sw8"
    keys = ("sw8-correlation", "sw8")

    def inject(self, span: Span, ctx: SpanView, seg: Segment, out: list[CarrierItem]) -> None:
        correlation = ctx.correlation
        if correlation:
            out.append(CarrierItem("sw8-correlation", encode_correlation(correlation)))
        first = ctx.first_span
        first_op = first.op if first is not None else None
        identity = seg.identity
        out.append(CarrierItem("sw8", encode_sw8(SW8(seg.related_traces[0], seg.segment_id, span.sid,
                                                     identity[SERVICE], identity[NAME], first_op or "unknown",
                                                     span.peer or "unknown"))))

    def decode(self, headers: Mapping[str, str]) -> SW8 | None:
        value = headers.get("sw8")
        return decode_sw8(value) if value else None


# -- protocols ------------------------------------------------------------------------------------

class Propagation:
    """What the wire protocol chosen at start decides; one instance per tracing start."""

    version = ""
    new_id: Callable[[int], ID]

    def __init__(self, outbound: tuple[HeaderFormat, ...], inbound: tuple[HeaderFormat, ...]) -> None:
        self.outbound = outbound  # formats written for every exit span, in order
        self.inbound = inbound  # formats read, the protocol's own first
        self.inbound_keys: tuple[str, ...] = tuple(dict.fromkeys(k for f in inbound for k in f.keys))

    def decode(self, headers: Mapping[str, str]) -> SW6 | SW8 | None:
        """The inbound header to continue (own protocol's preferred); never raises."""
        for fmt in self.inbound:
            try:
                header = fmt.decode(headers)
            except HeaderError as e:
                logger.debug("ignoring inbound %s header (%s); starting a new trace", fmt.name, e)
                continue
            if header is not None:
                return header
        return None

    def link(self, h: Inbound) -> tuple[ID | None, SegmentRef | None]:
        """(trace id to adopt, CrossProcess ref to add) for an inbound header or handoff."""
        raise NotImplementedError


def handoff_ref(h: Handoff) -> SegmentRef:
    ref = SegmentRef("CrossProcess", h.trace_id, h.segment_id, h.span_id)
    ref.parent_instance, ref.entry_instance = h.caller, h.entry
    ref.service, ref.service_instance = h.caller[SERVICE], h.caller[NAME]
    ref.endpoint = h.parent_endpoint
    ref.client_address = h.peer
    ref.set_endpoints(h.entry_raw, h.parent_raw)
    return ref


def sw6_ref(h: SW6) -> SegmentRef:
    ref = SegmentRef("CrossProcess", h.trace_id, h.segment_id, h.span_id)
    ref.parent_instance = h.parent_instance_id
    ref.entry_instance = h.entry_instance_id
    if h.peer.startswith("#"):
        ref.client_address = h.peer[1:]
    else:
        ref.peer_id = int(h.peer)
    ref.set_endpoints(h.entry_endpoint, h.parent_endpoint)
    return ref


def sw8_ref(h: SW8) -> SegmentRef:
    ref = SegmentRef("CrossProcess", h.trace_id, h.segment_id, h.span_id)
    ref.service = h.service
    ref.service_instance = h.service_instance
    ref.endpoint = h.endpoint
    ref.client_address = h.client_address
    return ref


class V6Propagation(Propagation):
    """Trace protocol v2 (OAP 6.6.0): sw6 ids; refs from sw6 headers and handoffs with sw6 ids."""

    version = "v6"
    new_id = staticmethod(new_sw6_id)

    def link(self, h: Inbound) -> tuple[ID | None, SegmentRef | None]:
        if isinstance(h, SW6):
            return h.trace_id, sw6_ref(h)
        if h.trace_id.parts is None:  # an sw8-style id: v2 cannot carry it
            logger.debug("inbound trace id %r has no sw6 form; starting a new trace", h.trace_id.value)
            return None, None
        if isinstance(h, SW8):
            return h.trace_id, None  # the trace carries over, the ref cannot (no instance ids)
        return h.trace_id, handoff_ref(h)


class V8Propagation(Propagation):
    """Trace protocol v3 (SkyWalking 8+): string ids; refs from sw8 headers and handoffs."""

    version = "v8"
    new_id = staticmethod(new_sw8_id)

    def link(self, h: Inbound) -> tuple[ID | None, SegmentRef | None]:
        if isinstance(h, SW8):
            return h.trace_id, sw8_ref(h)
        if isinstance(h, SW6):
            return ID(h.trace_id.value), None  # names instances by OAP 6 ids: only the trace carries over
        return h.trace_id, handoff_ref(h)


def select(protocol: str | None = None, formats: tuple[str, ...] | None = None,
           sw6_key: str | None = None) -> Propagation:
    """The propagation for a protocol (``agent_protocol_version``), outbound header formats
    (``agent_propagation``) and sw6 header name (``agent_namespace``); defaults from config."""
    protocol = protocol or config.agent_protocol_version
    sw6 = SW6Format(sw6_key or config.SW6_HEADER)
    sw8 = SW8Format()
    by_name: dict[str, HeaderFormat] = {"sw6": sw6, "sw8": sw8}
    outbound = tuple(by_name[name] for name in (formats or config.PROPAGATION))
    if protocol == "v8":
        return V8Propagation(outbound, (sw8, sw6))
    return V6Propagation(outbound, (sw6, sw8))


def install(propagation: Propagation | None = None) -> Propagation:
    """Make ``propagation`` (default: ``select()``) the process's; called when tracing starts."""
    chosen = propagation if propagation is not None else select()
    TRACER.propagation = chosen
    return chosen


install()  # until tracing starts: the configured defaults (inbound carriers made before agent.start())
