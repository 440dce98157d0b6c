"""``urllib3`` 1.x and 2.x: an exit span around ``HTTPConnectionPool.urlopen`` (what ``PoolManager.request``
and most clients built on urllib3 end up in), with the configured headers (``sw6`` by default) added.
Retries and redirects re-enter ``urlopen`` inside the span and add nothing; so does a call made by
``requests`` (its own span stands for it)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from skywalking import Component, Layer
from skywalking.plugins import Plugin
from skywalking.plugins._http import inside_exit_span, tag_response
from skywalking.trace.context import get_context
from skywalking.trace.tags import TagHttpMethod, TagHttpURL

_HEADERS_AT = 3  # urlopen(method, url, body, headers, ...)


def _urlopen(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    if inside_exit_span():
        return wrapped(*args, **kwargs)
    method = args[0] if args else kwargs.get("method", "GET")
    url = args[1] if len(args) > 1 else kwargs.get("url", "/")
    host, port, scheme = instance.host, instance.port, getattr(instance, "scheme", "http") or "http"
    port = port or (443 if scheme == "https" else 80)
    peer = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    path = urlsplit(url).path if "://" in url else url.split("?", 1)[0]
    full = url if "://" in url else f"{scheme}://{peer}{url}"
    span = get_context().new_exit_span(op=path or "/", peer=peer, component=Component.Urllib3)
    with span:
        span.layer = Layer.Http
        span.tag(TagHttpMethod(str(method).upper())).tag(TagHttpURL(full))
        carrier = {item.key: item.val for item in span.inject()}
        if carrier:
            if len(args) > _HEADERS_AT:
                args = (*args[:_HEADERS_AT], {**(args[_HEADERS_AT] or {}), **carrier}, *args[_HEADERS_AT + 1:])
            else:
                kwargs = {**kwargs, "headers": {**(kwargs.get("headers") or {}), **carrier}}
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
