"""Upstream's scrubbing helpers (``skywalking.utils.filter``): URLs without credentials, log text without them in
``agent_log_reporter_safe_mode``, tracebacks cut to ``agent_cause_exception_depth``."""

from __future__ import annotations

import re
import traceback
from typing import TypeVar
from urllib.parse import ParseResult, SplitResult, urlparse

from skywalking import config

_CREDENTIALS = re.compile(r"(?<=://)[^/@\s:]+:[^/@\s]*@")


URLParts = TypeVar("URLParts", ParseResult, SplitResult)


def without_credentials(parts: URLParts) -> URLParts:
    """``urlparse``/``urlsplit`` parts with any ``user:password@`` removed from the network location."""
    if "@" not in parts.netloc:
        return parts
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1])


def sw_urlparse(url: str) -> ParseResult:
    """``urlparse(url)`` with any ``user:password@`` removed from the network location."""
    return without_credentials(urlparse(url))


def scrub(text: str) -> str:
    """``text`` with every ``scheme://user:password@`` reduced to ``scheme://``."""
    return _CREDENTIALS.sub("", text)


def sw_filter(target: str) -> str:
    """``target`` scrubbed of URL credentials when ``agent_log_reporter_safe_mode`` is on, else unchanged."""
    return scrub(target) if config.agent_log_reporter_safe_mode else target


def sw_traceback() -> str:
    """The exception being handled, formatted with at most ``agent_cause_exception_depth`` frames, scrubbed as
    ``sw_filter`` does."""
    return sw_filter(traceback.format_exc(limit=config.agent_cause_exception_depth))
