"""``aiohttp`` client: an exit span around ``ClientSession._request`` (every ``session.get``/``post``/...), with the
configured headers (``sw6`` by default) added. The span ends when the response headers have arrived.
The aiohttp server side is not patched (Ray's dashboard is an aiohttp server and stays untouched)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from skywalking import Component
from skywalking.plugins import Plugin
from skywalking.plugins._http import http_exit_span, inside_exit_span, tag_response, with_headers


async def _request(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    if inside_exit_span():
        return await wrapped(*args, **kwargs)
    method = args[0] if args else kwargs.get("method", "GET")
    url = args[1] if len(args) > 1 else kwargs.get("str_or_url", "")
    base = getattr(instance, "_base_url", None)
    try:
        parts = urlsplit(str(base.join(url) if base is not None and not str(url).startswith("http") else url))
    except Exception:  # not a URL aiohttp would accept either: let it raise its own error
        return await wrapped(*args, **kwargs)
    with http_exit_span(parts, method, Component.AioHttp) as span:
        args, kwargs = with_headers(args, kwargs, None, {item.key: item.val for item in span.inject()})
        response = await wrapped(*args, **kwargs)
        tag_response(span, getattr(response, "status", None))
        return response


class AiohttpPlugin(Plugin):
    name = "sw_aiohttp"
    instruments = ("aiohttp>=3.8",)
    modules = ("aiohttp",)
    note = "aiohttp client (`ClientSession._request`); the server side is left alone"

    def _install(self) -> None:
        import aiohttp.client

        self.wrap(aiohttp.client, "ClientSession._request", _request)


plugin = AiohttpPlugin()
