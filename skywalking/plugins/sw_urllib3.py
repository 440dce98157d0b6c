"""``urllib3`` 1.x and 2.x: an exit span around ``HTTPConnectionPool.urlopen`` (what ``PoolManager.request``
and most clients built on urllib3 end up in), with the configured headers (``sw6`` by default) added.
Retries and redirects re-enter ``urlopen`` inside the span and add nothing; so does a call made by
``requests`` (its own span stands for it)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from skywalking import Component
from skywalking.plugins import Plugin
from skywalking.plugins._http import http_exit_span, ignored_method, tag_response, with_headers
from skywalking.plugins._peer import host_port
from skywalking.trace.context import inside_exit_span

_HEADERS_AT = 3  # urlopen(method, url, body, headers, ...)


def _urlopen(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    method = args[0] if args else kwargs.get("method", "GET")
    if inside_exit_span() or ignored_method(method):
        return wrapped(*args, **kwargs)
    url = args[1] if len(args) > 1 else kwargs.get("url", "/")
    if "://" not in url:
        url = f"{getattr(instance, 'scheme', 'http') or 'http'}://{host_port(instance.host, instance.port)}{url}"
    with http_exit_span(urlsplit(url), method, Component.Urllib3) as span:
        args, kwargs = with_headers(args, kwargs, _HEADERS_AT, {item.key: item.val for item in span.inject()})
        response = wrapped(*args, **kwargs)
        tag_response(span, getattr(response, "status", None))
        return response


class Urllib3Plugin(Plugin):
    name = "sw_urllib3"
    instruments = ("urllib3>=1.25",)
    modules = ("urllib3",)
    note = "urllib3 1.x and 2.x client (`HTTPConnectionPool.urlopen`)"

    def _install(self) -> None:
        import urllib3.connectionpool

        self.wrap(urllib3.connectionpool, "HTTPConnectionPool.urlopen", _urlopen)


plugin = Urllib3Plugin()
