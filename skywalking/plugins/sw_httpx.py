"""``httpx`` (sync and async clients; what the OpenAI, Anthropic and most LLM SDKs use): an exit span around
``Client.send`` / ``AsyncClient.send``, with the configured headers (``sw6`` by default) added to the request.
For a streamed response the span ends when the headers have arrived, not when the body has been read."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from skywalking import Component, Layer
from skywalking.plugins import Plugin
from skywalking.plugins._http import inside_exit_span, peer_of, tag_response, url_without_credentials
from skywalking.trace.context import get_context
from skywalking.trace.tags import TagHttpMethod, TagHttpURL


def _start(request: Any) -> Any:
    parts = urlsplit(str(request.url))
    span = get_context().new_exit_span(op=parts.path or "/", peer=peer_of(parts), component=Component.HTTPX)
    span.start()
    span.layer = Layer.Http
    span.tag(TagHttpMethod(request.method)).tag(TagHttpURL(url_without_credentials(parts)))
    for item in span.inject():
        request.headers[item.key] = item.val
    return span


def _send(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    request = args[0] if args else kwargs.get("request")
    if request is None or inside_exit_span():
        return wrapped(*args, **kwargs)
    span = _start(request)
    try:
        response = wrapped(*args, **kwargs)
    except BaseException as e:
        span.__exit__(type(e), e, e.__traceback__)
        raise
    tag_response(span, getattr(response, "status_code", None))
    span.__exit__(None, None, None)
    return response


async def _send_async(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    request = args[0] if args else kwargs.get("request")
    if request is None or inside_exit_span():
        return await wrapped(*args, **kwargs)
    span = _start(request)
    try:
        response = await wrapped(*args, **kwargs)
    except BaseException as e:
        span.__exit__(type(e), e, e.__traceback__)
        raise
    tag_response(span, getattr(response, "status_code", None))
    span.__exit__(None, None, None)
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
