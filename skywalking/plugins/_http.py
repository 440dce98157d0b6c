"""Helpers shared by the HTTP plugins: peers, URLs without credentials, status tags and error rules."""

from __future__ import annotations

from typing import Any
from urllib.parse import SplitResult

from skywalking import Kind
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
