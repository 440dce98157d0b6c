"""Helpers shared by the HTTP plugins: peers, URLs without credentials, status tags and error rules."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import SplitResult

from skywalking import Kind
from skywalking.trace.carrier import Carrier
from skywalking.trace.context import get_context
from skywalking.trace.tags import TagHttpStatusCode


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
