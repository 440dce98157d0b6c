"""``httpx`` (sync and async clients; what the OpenAI, Anthropic and most LLM SDKs use): an exit span around
``Client.send`` / ``AsyncClient.send``, with the configured headers (``sw6`` by default) added to the request.
For a streamed response the span ends when the headers have arrived, not when the body has been read."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from skywalking import Component
from skywalking.plugins import Plugin
from skywalking.plugins._http import http_exit_span, ignored_method, tag_response
from skywalking.trace.context import inside_exit_span


def _span(request: Any) -> Any:
    """The exit span of ``request`` (not started); the headers go into the request when it starts."""
    return http_exit_span(urlsplit(str(request.url)), request.method, Component.HTTPX)


def _send(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    request = args[0] if args else kwargs.get("request")
    if request is None or inside_exit_span() or ignored_method(request.method):
        return wrapped(*args, **kwargs)
    with _span(request) as span:
        request.headers.update({item.key: item.val for item in span.inject()})
        response = wrapped(*args, **kwargs)
        tag_response(span, getattr(response, "status_code", None))
        return response


async def _send_async(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    request = args[0] if args else kwargs.get("request")
    if request is None or inside_exit_span() or ignored_method(request.method):
        return await wrapped(*args, **kwargs)
    with _span(request) as span:
        request.headers.update({item.key: item.val for item in span.inject()})
        response = await wrapped(*args, **kwargs)
        tag_response(span, getattr(response, "status_code", None))
        return response


class HttpxPlugin(Plugin):
    name = "sw_httpx"
    instruments = ("httpx>=0.23",)
    modules = ("httpx",)
    note = "httpx client, sync and async (`Client.send`, `AsyncClient.send`)"

    def _install(self) -> None:
        import httpx

        self.wrap(httpx, "Client.send", _send)
        self.wrap(httpx, "AsyncClient.send", _send_async)


plugin = HttpxPlugin()
