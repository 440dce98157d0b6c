"""``requests``: an exit span around ``Session.request`` (every ``requests.get``/``post``/... goes through it),
with the configured headers (``sw6`` by default) added to the request."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from skywalking import Component
from skywalking.plugins import Plugin
from skywalking.plugins._http import http_exit_span, ignored_method, tag_response, with_headers
from skywalking.trace.context import inside_exit_span

_HEADERS_AT = 4  # Session.request(method, url, params, data, headers, ...)


def _request(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    method = args[0] if args else kwargs.get("method", "GET")
    if inside_exit_span() or ignored_method(method):
        return wrapped(*args, **kwargs)
    url = args[1] if len(args) > 1 else kwargs.get("url", "")
    try:
        parts = urlsplit(url if isinstance(url, str) else url.decode())
    except Exception:  # not a URL requests would accept either: let it raise its own error
        return wrapped(*args, **kwargs)
    with http_exit_span(parts, method, Component.Requests) as span:
        args, kwargs = with_headers(args, kwargs, _HEADERS_AT, {item.key: item.val for item in span.inject()})
        response = wrapped(*args, **kwargs)
        tag_response(span, getattr(response, "status_code", None))
        return response


class RequestsPlugin(Plugin):
    name = "sw_requests"
    instruments = ("requests>=2.25",)
    modules = ("requests",)
    note = "requests client (`Session.request`)"

    def _install(self) -> None:
        import requests.sessions

        self.wrap(requests.sessions, "Session.request", _request)


plugin = RequestsPlugin()
