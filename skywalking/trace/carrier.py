"""Carriers: the headers of one call crossing a process boundary (the upstream plugin API).

Plugins use the upstream shape: outbound, ``for item in span.inject(): headers[item.key] = item.val``;
inbound, ``carrier = Carrier(); for item in carrier: item.val = headers.get(item.key)``, then
``context.new_entry_span(op, carrier)``. An inbound carrier offers every header this agent reads (the
configured sw6 header, ``sw8``, ``sw8-correlation``); an outbound one holds the headers of the formats in
``agent_propagation``. Decoding never raises: a malformed header yields ``None`` and a debug line. The
codecs are in ``skywalking.trace.headers``; which formats apply is ``skywalking.trace.propagation``'s call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from skywalking.trace import propagation as _propagation  # noqa: F401  (sets TRACER.propagation)
from skywalking.trace.headers import (  # noqa: F401  (re-exported: the codecs used to live here)
    MAX_HEADER_LENGTH,
    SW6,
    SW8,
    CarrierItem,
    HeaderError,
    b64decode,
    b64encode,
    decode_correlation,
    decode_sw6,
    decode_sw8,
    encode_correlation,
    encode_sw6,
    encode_sw8,
    format_sw6,
)
from skywalking.trace.ids import ID
from skywalking.trace.tracer import TRACER

if TYPE_CHECKING:
    from skywalking.trace.handoff import Handoff
    from skywalking.trace.segment import Segment
    from skywalking.trace.span import Span


class SW8CorrelationCarrier(CarrierItem):
    __slots__ = ()

    def __init__(self, val: str = "") -> None:
        super().__init__("sw8-correlation", val)


class Carrier(list):  # a list of CarrierItem: plugins iterate it at C speed
    """Headers crossing a process boundary (see the module docstring)."""

    trace_id = segment_id = service = service_instance = endpoint = client_address = ""
    span_id: str | int = ""
    is_suppressed = False  # kept for upstream plugins; a bad header no longer suppresses

    def __init__(self, trace_id: str = "", segment_id: str = "", span_id: str | int = "", service: str = "",
                 service_instance: str = "", endpoint: str = "", client_address: str = "",
                 correlation: dict[str, str] | None = None) -> None:
        super().__init__()
        self.trace_id = trace_id
        self.segment_id = segment_id
        self.span_id = span_id
        self.service = service
        self.service_instance = service_instance
        self.endpoint = endpoint
        self.client_address = client_address
        self.correlation: dict[str, str] = correlation if correlation is not None else {}
        if trace_id and segment_id and span_id != "" and service and service_instance:
            # built by hand, upstream style: an outbound sw8 carrier
            sw8 = SW8(ID(str(trace_id)), ID(str(segment_id)), int(span_id), service, service_instance,
                      endpoint, client_address)
            self += [SW8CorrelationCarrier(encode_correlation(self.correlation)), CarrierItem("sw8", encode_sw8(sw8))]
        else:  # inbound: offer every header this agent reads
            self += [CarrierItem(key, "") for key in TRACER.propagation.inbound_keys]

    def get(self, key: str) -> str:
        for item in self:
            if item.key == key:
                return item.val or ""
        return ""

    @property
    def is_valid(self) -> bool:
        """True if an inbound header decodes to a context this agent can continue."""
        return self.decode() is not None

    def decode(self) -> SW6 | SW8 | Handoff | None:
        """The header to continue, preferring the protocol's own; never raises."""
        return TRACER.propagation.decode({item.key: item.val for item in self if isinstance(item.val, str)
                                          and item.val})

    def inbound_correlation(self) -> dict[str, str]:
        value = self.get("sw8-correlation")
        return decode_correlation(value) if value else {}

    def __eq__(self, other: object) -> bool:
        return self is other

    __hash__ = object.__hash__  # type: ignore[assignment]  # identity: a list is otherwise unhashable


def inbound_header_names() -> tuple[str, ...]:
    """The (lower-case) names of the headers this agent reads: the configured sw6 header, sw8, sw8-correlation."""
    return TRACER.propagation.inbound_keys


def inbound_carrier(lookup: Callable[[str], str | None]) -> Carrier:
    """A carrier for an entry span, each header this agent reads filled from ``lookup`` (``headers.get``)."""
    carrier = Carrier()
    for item in carrier:
        item.val = lookup(item.key)
    return carrier


class OutboundCarrier(Carrier):
    """What ``ExitSpan.inject()`` returns: the encoded headers; fields are read from the span lazily."""

    _span: Span | None = None

    def __init__(self) -> None:  # no super().__init__(): nothing to parse, items appended by inject()
        pass

    def _segment(self) -> Segment | None:
        span = self._span
        return span.context.current_segment if span is not None else None

    @property
    def trace_id(self) -> str:  # type: ignore[override]
        seg = self._segment()
        return seg.related_traces[0].value if seg is not None else ""

    @property
    def segment_id(self) -> str:  # type: ignore[override]
        seg = self._segment()
        return seg.segment_id.value if seg is not None else ""

    @property
    def span_id(self) -> int | str:  # type: ignore[override]
        return self._span.sid if self._span is not None else ""

    @property
    def correlation(self) -> dict[str, str]:  # type: ignore[override]
        span = self._span
        return dict(span.context.correlation) if span is not None else {}
