"""Helpers shared by the HTTP plugins: peers, URLs without credentials, status tags and error rules."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import SplitResult

from skywalking import Component, Kind, Layer
from skywalking.trace.carrier import Carrier
from skywalking.trace.context import get_context
from skywalking.trace.span import Span
from skywalking.trace.tags import TagHttpMethod, TagHttpStatusCode, TagHttpURL


def inside_exit_span() -> bool:
    """True when an exit span is already active: that span stands for this call (a higher-level client or
    the user's own instrumentation made it and injects the headers), so a client plugin adds nothing."""
    span = get_context().active_span
    return span is not None and span.kind is Kind.Exit


def peer_of(parts: SplitResult) -> str:
    """``host:port`` of a URL, the port filled in from the scheme when absent."""
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def url_without_credentials(parts: SplitResult) -> str:
    """The URL with any ``user:password@`` removed (the query is kept)."""
    if "@" not in parts.netloc:
        return parts.geturl()
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


def http_exit_span(parts: SplitResult, method: str, component: Component) -> Span:
    """The exit span (not started yet) of a client call to ``parts``: op = path, peer = ``host:port``, layer
    Http, tagged with the method and the URL without credentials."""
    span = get_context().new_exit_span(op=parts.path or "/", peer=peer_of(parts), component=component)
    span.layer = Layer.Http
    span.tag(TagHttpMethod(str(method).upper())).tag(TagHttpURL(url_without_credentials(parts)))
    return span


def with_headers(args: tuple[Any, ...], kwargs: dict[str, Any], at: int | None,
                 extra: dict[str, str]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A call's ``args``/``kwargs`` with ``extra`` merged into its ``headers`` parameter (positional number
    ``at`` when given that way, else the keyword); the caller's own mapping is not modified."""
    if not extra:
        return args, kwargs
    if at is not None and len(args) > at:
        return (*args[:at], {**(args[at] or {}), **extra}, *args[at + 1:]), kwargs
    return args, {**kwargs, "headers": {**dict(kwargs.get("headers") or {}), **extra}}


def tag_response(span: Any, status: Any) -> None:
    """``http.status_code``, and the span marked as an error from 400 on."""
    if status is None:
        return
    span.tag(TagHttpStatusCode(status))
    try:
        if int(status) >= 400:
            span.error_occurred = True
    except (TypeError, ValueError):
        pass


def raw_headers(raw: Iterable[tuple[bytes, bytes]], *extra: str) -> dict[str, str]:
    """From ASGI-style ``(name, value)`` byte pairs, the headers this agent reads plus ``extra`` names
    (lower-case names; Latin-1, as HTTP/1.1 header bytes are)."""
    wanted = {item.key for item in Carrier()}.union(extra)
    found = {}
    for key, value in raw:
        name = key.decode("latin-1").lower()
        if name in wanted:
            found[name] = value.decode("latin-1")
    return found
