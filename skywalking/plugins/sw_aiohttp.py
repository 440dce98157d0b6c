"""``aiohttp``. Client: an exit span around ``ClientSession._request`` (every ``session.get``/``post``/...), with
the configured headers (``sw6`` by default) added; it ends when the response headers have arrived.
Server: an entry span per request around ``web.Application._handle`` (routing, middlewares and the handler),
continuing the caller's header. The connection-level ``RequestHandler`` is not touched, so the server's own
signatures (which changed in 3.9) do not matter; Ray's dashboard, an aiohttp server, keeps working. With
``plugin_http_route_template`` the span is named after the matched resource (``/items/{item_id}``) once the router
resolved the request (``UrlDispatcher.resolve``), before the handler runs."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from skywalking import Component
from skywalking.plugins import Plugin
from skywalking.plugins._http import (
    describe_entry,
    http_entry_span,
    http_exit_span,
    ignored_method,
    rename_entry_span,
    route_templates,
    tag_response,
    with_headers,
)
from skywalking.plugins._peer import address_peer
from skywalking.trace.context import inside_exit_span


async def _request(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    method = args[0] if args else kwargs.get("method", "GET")
    if inside_exit_span() or ignored_method(method):
        return await wrapped(*args, **kwargs)
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


async def _handle(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    request = args[0] if args else kwargs["request"]
    method = request.method
    if ignored_method(method):
        return await wrapped(*args, **kwargs)
    headers = request.headers
    span = http_entry_span(request.path, headers.get)
    span.start()
    try:
        transport = request.transport
        address = transport.get_extra_info("peername") if transport is not None else None
        query = request.query_string
        describe_entry(span, Component.AioHttp, method,
                       f"{request.scheme}://{request.host}{request.path}" + (f"?{query}" if query else ""),
                       address_peer(address))
        try:
            response = await wrapped(*args, **kwargs)
        except Exception as e:
            status = getattr(e, "status", None)
            if isinstance(status, int):  # a web.HTTPException: a response raised (error from 400 on)
                tag_response(span, status)
            else:
                span.raised()
                tag_response(span, 500)
            raise
        tag_response(span, getattr(response, "status", None))
        return response
    finally:
        span.stop()


async def _resolve(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    match_info = await wrapped(*args, **kwargs)
    if route_templates():
        route = getattr(match_info, "route", None)
        resource = getattr(route, "resource", None)
        rename_entry_span(Component.AioHttp, getattr(resource, "canonical", None))
    return match_info


class AiohttpPlugin(Plugin):
    name = "sw_aiohttp"
    instruments = ("aiohttp>=3.8",)
    modules = ("aiohttp",)
    note = "aiohttp client (`ClientSession._request`) and server (`web.Application._handle`)"

    def _install(self) -> None:
        import aiohttp.client

        self.wrap(aiohttp.client, "ClientSession._request", _request)
        self.when_imported("aiohttp.web_app", self._install_server)

    def _install_server(self) -> None:
        import aiohttp.web_app
        import aiohttp.web_urldispatcher

        self.wrap(aiohttp.web_app, "Application._handle", _handle)
        self.wrap(aiohttp.web_urldispatcher, "UrlDispatcher.resolve", _resolve)


plugin = AiohttpPlugin()
