"""The ``sw6`` and ``sw8`` / ``sw8-correlation`` header codecs (docs/propagation.md).

Pure functions over strings: decoding never trusts its input (a bad value raises ``HeaderError`` with the
reason) and encoding refuses what a SkyWalking 6.6.0 Java agent could not read back. Which headers a process
sends and reads is decided in ``skywalking.trace.propagation``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping

from skywalking import config
from skywalking.trace._record import SlotRecord
from skywalking.trace.ids import ID, parse_parts

MAX_HEADER_LENGTH = 4096  # Java keeps headers under 2k; larger values are refused unparsed
_B64_BODY = re.compile(r"[A-Za-z0-9+/]*")
_B64_STRICT = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_URLSAFE = str.maketrans("-_", "+/")
_INT = re.compile(r"[0-9]{1,10}")


class HeaderError(ValueError):
    """Why an inbound header was not usable."""


# -- base64 ---------------------------------------------------------------------------------------

_b64_cache: dict[str, str] = {}


def b64encode(text: str) -> str:
    """Standard alphabet, ``=`` padded (never URL-safe: ``-`` is the field separator)."""
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def b64encode_cached(text: str) -> str:
    """``b64encode`` for values that repeat (peers, endpoint names); bounded cache."""
    v = _b64_cache.get(text)
    if v is None:
        if len(_b64_cache) >= 4096:
            _b64_cache.clear()
        v = _b64_cache[text] = b64encode(text)
    return v


def b64decode(text: str) -> str:
    """Lenient decode, like the Java agent: trailing ``=``/whitespace dropped, URL-safe letters and
    missing padding accepted. Anything else raises HeaderError."""
    if _B64_STRICT.fullmatch(text):  # what agents send: one regex and one C call
        try:
            return binascii.a2b_base64(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise HeaderError(f"not base64 text: {text[:64]!r} ({e})") from None
    body = "".join(text.split()).rstrip("=").translate(_URLSAFE)
    if not _B64_BODY.fullmatch(body) or len(body) % 4 == 1:
        raise HeaderError(f"not base64: {text[:64]!r}")
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as e:
        raise HeaderError(f"not base64 text: {text[:64]!r} ({e})") from None


def _uint(field: str, name: str) -> int:
    if not _INT.fullmatch(field):
        raise HeaderError(f"{name} is not a non-negative integer: {field[:32]!r}")
    return int(field)


def _id(field: str, name: str) -> ID:
    text = b64decode(field)
    parts = parse_parts(text)
    if parts is None:
        raise HeaderError(f"{name} is not three int64 parts: {text[:64]!r}")
    return ID(text, parts)


# -- sw6 ------------------------------------------------------------------------------------------

class SW6(SlotRecord):
    """The nine sw6 fields. ``peer``, ``entry_endpoint`` and ``parent_endpoint`` keep their raw
    decoded form: ``#name``, a decimal id, or ``-1`` (endpoints only: "no real endpoint")."""

    __slots__ = ("entry_endpoint", "entry_instance_id", "parent_endpoint", "parent_instance_id", "peer",
                 "sample", "segment_id", "span_id", "trace_id")

    def __init__(self, trace_id: ID, segment_id: ID, span_id: int, parent_instance_id: int,
                 entry_instance_id: int, peer: str, entry_endpoint: str = "-1", parent_endpoint: str = "-1",
                 sample: int = 1) -> None:
        self.sample = sample
        self.trace_id = trace_id
        self.segment_id = segment_id
        self.span_id = span_id
        self.parent_instance_id = parent_instance_id
        self.entry_instance_id = entry_instance_id
        self.peer = peer
        self.entry_endpoint = entry_endpoint
        self.parent_endpoint = parent_endpoint



def _compressed(raw: str, name: str, endpoint: bool) -> str:
    """Validate one of the '#name | id | -1' fields (decoded)."""
    if raw.startswith("#"):
        if len(raw) == 1:
            raise HeaderError(f"{name} is an empty name")
        return raw
    if _INT.fullmatch(raw) and int(raw) > 0 or endpoint and raw == "-1":
        return raw
    raise HeaderError(f"{name} is neither '#name' nor an id: {raw[:64]!r}")


def decode_sw6(value: str) -> SW6:
    """Parse an sw6 value. Nine fields (as Java writes) or the seven-field short form (endpoints
    then read as "no real endpoint"). Raises HeaderError with the reason."""
    if len(value) > MAX_HEADER_LENGTH:
        raise HeaderError(f"longer than {MAX_HEADER_LENGTH} characters")
    f = value.strip().split("-", 8)
    if len(f) not in (7, 9):
        raise HeaderError(f"{len(f)} fields, expected 9 (or 7)")
    sample = 0 if f[0] == "0" else 1
    trace_id = _id(f[1], "trace id")
    segment_id = _id(f[2], "parent segment id")
    span_id = _uint(f[3], "parent span id")
    parent_instance_id = _uint(f[4], "parent service instance id")
    entry_instance_id = _uint(f[5], "entry service instance id")
    if parent_instance_id == 0 or entry_instance_id == 0:
        raise HeaderError("service instance id 0")
    peer = b64decode(f[6])
    if not peer:
        raise HeaderError("empty peer")
    peer = _compressed(peer, "peer", endpoint=False)
    entry = parent = "-1"
    if len(f) == 9:
        entry = b64decode(f[7]) or "-1"  # empty endpoints are re-emitted as -1, never empty
        parent = b64decode(f[8]) or "-1"
        entry = _compressed(entry, "entry endpoint", endpoint=True)
        parent = _compressed(parent, "parent endpoint", endpoint=True)
    return SW6(trace_id, segment_id, span_id, parent_instance_id, entry_instance_id, peer, entry, parent, sample)


def encode_sw6(h: SW6) -> str:
    """Nine fields, standard base64. Refuses what Java 6.6.0 could not read back."""
    trace = b64encode(h.trace_id.value)
    segment = trace if h.segment_id is h.trace_id else b64encode(h.segment_id.value)
    return format_sw6(h.sample, trace, segment, h.span_id, h.parent_instance_id, h.entry_instance_id, h.peer,
                      h.entry_endpoint, h.parent_endpoint)


def format_sw6(sample: int, trace_b64: str, segment_b64: str, span_id: int, parent_instance_id: int,
               entry_instance_id: int, peer: str, entry_endpoint: str, parent_endpoint: str) -> str:
    """sw6 from already-encoded ids (the inject hot path); the raw fields are checked here."""
    if span_id < 0 or parent_instance_id <= 0 or entry_instance_id <= 0:
        raise HeaderError("sw6 plain fields must be non-negative span ids and positive instance ids")
    return (f"{1 if sample else 0}-{trace_b64}-{segment_b64}-{span_id}-{parent_instance_id}-{entry_instance_id}"
            + sw6_tail(peer, entry_endpoint, parent_endpoint))


# -- sw8 ------------------------------------------------------------------------------------------

class SW8(SlotRecord):
    """The eight sw8 fields."""

    __slots__ = ("client_address", "endpoint", "sample", "segment_id", "service", "service_instance", "span_id",
                 "trace_id")

    def __init__(self, trace_id: ID, segment_id: ID, span_id: int, service: str, service_instance: str,
                 endpoint: str, client_address: str, sample: int = 1) -> None:
        self.sample = sample
        self.trace_id = trace_id
        self.segment_id = segment_id
        self.span_id = span_id
        self.service = service
        self.service_instance = service_instance
        self.endpoint = endpoint
        self.client_address = client_address



def decode_sw8(value: str) -> SW8:
    if len(value) > MAX_HEADER_LENGTH:
        raise HeaderError(f"longer than {MAX_HEADER_LENGTH} characters")
    f = value.strip().split("-", 7)
    if len(f) != 8:
        raise HeaderError(f"{len(f)} fields, expected 8")
    texts = [b64decode(f[i]) for i in (1, 2, 4, 5, 6, 7)]
    if not all(texts):
        raise HeaderError("empty field")
    trace, segment, service, instance, endpoint, address = texts
    return SW8(ID(trace, parse_parts(trace)), ID(segment, parse_parts(segment)), _uint(f[3], "parent span id"),
               service, instance, endpoint, address, 0 if f[0] == "0" else 1)


def encode_sw8(h: SW8) -> str:
    return (f"{1 if h.sample else 0}-{b64encode(h.trace_id.value)}-{b64encode(h.segment_id.value)}-{h.span_id}-"
            f"{b64encode_cached(h.service)}-{b64encode_cached(h.service_instance)}-"
            f"{b64encode_cached(h.endpoint)}-{b64encode_cached(h.client_address)}")


def decode_correlation(value: str) -> dict[str, str]:
    """``b64(k):b64(v),...``; bad pairs are skipped; capped by the correlation options."""
    out: dict[str, str] = {}
    if len(value) > MAX_HEADER_LENGTH:
        return out
    for pair in value.split(","):
        if len(out) >= config.correlation_element_max_number:
            break
        k, sep, v = pair.partition(":")
        if not sep:
            continue
        try:
            key, val = b64decode(k), b64decode(v)
        except HeaderError:
            continue
        if key and len(val) <= config.correlation_value_max_length:
            out[key] = val
    return out


def encode_correlation(correlation: Mapping[str, str]) -> str:
    return ",".join(f"{b64encode_cached(k)}:{b64encode_cached(v)}" for k, v in correlation.items())


_tail_cache: dict[tuple[str, str, str], str] = {}


def sw6_tail(peer: str, entry_endpoint: str, parent_endpoint: str) -> str:
    """``-b64(peer)-b64(entry)-b64(parent)``, cached: these repeat from request to request."""
    key = (peer, entry_endpoint, parent_endpoint)
    tail = _tail_cache.get(key)
    if tail is None:
        if not peer or not entry_endpoint or not parent_endpoint:
            raise HeaderError("sw6 peer and endpoint fields must not be empty")
        if len(_tail_cache) >= 4096:
            _tail_cache.clear()
        tail = _tail_cache[key] = f"-{b64encode(peer)}-{b64encode(entry_endpoint)}-{b64encode(parent_endpoint)}"
    return tail


class CarrierItem:
    """One header: ``key`` and ``val``."""

    __slots__ = ("key", "val")

    def __init__(self, key: str = "", val: str = "") -> None:
        self.key = key
        self.val = val

    def __repr__(self) -> str:
        return f"CarrierItem({self.key!r}, {self.val!r})"
