"""websockets, the ``websockets.asyncio`` API (13+) and the legacy one (``websockets.legacy``).

Client: an exit span around the opening handshake (``ClientConnection.handshake``, legacy
``WebSocketClientProtocol.handshake``), with the configured headers (``sw6`` by default) added to the handshake
request; it ends when the server has answered. Messages are not traced.

Server: an entry span per connection, continuing the header of the handshake request. It starts once the handshake
has been answered (``ServerConnection.handshake``, legacy ``WebSocketServerProtocol.handshake``), so it is the
active span while the connection handler runs, and ends when the connection's task does (the handler returned and
the connection closed). A handshake the server refused is a span of its own that ends at once, with the refusal's
status. A handler that raised (the connection closed with 1011) marks the span as an error; websockets logs the
exception itself. Not traced: the ``websockets.sync`` and ``websockets.trio`` APIs.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import SplitResult

from skywalking import Component
from skywalking.plugins import Plugin
from skywalking.plugins._http import describe_entry, http_entry_span, http_exit_span, tag_response
from skywalking.plugins._peer import address_peer, host_port
from skywalking.trace.context import inside_exit_span
from skywalking.trace.span import Span
from skywalking.trace.tags import TagHttpMethod

METHOD = "websocket.connect"  # the http.method tag, as upstream's client spans have it
INTERNAL_ERROR = 1011


# -- client ----------------------------------------------------------------------------------------

def _parts(wsuri: Any) -> SplitResult:
    """``ws(s)://host:port/path?query`` of a ``WebSocketURI`` (the legacy one has ``resource_name`` only)."""
    resource = getattr(wsuri, "resource_name", None) or "/"
    path, _, query = str(resource).partition("?")
    return SplitResult("wss" if wsuri.secure else "ws", host_port(str(wsuri.host), wsuri.port), path, query, "")


def _merged(headers: Any, extra: dict[str, str]) -> list[tuple[str, str]]:
    """The caller's headers (a ``Headers``, a mapping or ``(name, value)`` pairs) as new pairs, then ``extra``,
    which replaces a header of the same name the caller gave (a trace header of its own making)."""
    if headers is None:
        pairs = []
    elif hasattr(headers, "raw_items"):
        pairs = list(headers.raw_items())
    elif hasattr(headers, "keys"):
        pairs = [(key, headers[key]) for key in headers.keys()]
    else:
        pairs = list(headers)
    ours = {name.lower() for name in extra}
    return [(k, v) for k, v in pairs if str(k).lower() not in ours] + list(extra.items())


def _status_of(error: BaseException) -> Any:
    """The status of a refused handshake: ``InvalidStatus.response`` (13+), legacy ``InvalidStatusCode``."""
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None) or getattr(error, "status_code", None)


def _client_span(parts: SplitResult) -> Span:
    span = http_exit_span(parts, "GET", Component.Websockets)
    span.tag(TagHttpMethod(METHOD))
    return span


async def _client_handshake(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``ClientConnection.handshake(additional_headers=None, user_agent_header=...)``."""
    if inside_exit_span():
        return await wrapped(*args, **kwargs)
    try:
        protocol = instance.protocol
        parts = _parts(getattr(protocol, "uri", None) or protocol.wsuri)  # ``wsuri`` before 14
    except Exception:
        return await wrapped(*args, **kwargs)
    with _client_span(parts) as span:
        extra = {item.key: item.val for item in span.inject()}
        if args:
            args = (_merged(args[0], extra), *args[1:])
        else:
            kwargs = {**kwargs, "additional_headers": _merged(kwargs.get("additional_headers"), extra)}
        try:
            result = await wrapped(*args, **kwargs)
        except Exception as e:
            tag_response(span, _status_of(e))
            raise
        tag_response(span, getattr(getattr(instance, "response", None), "status_code", None))
        return result


async def _legacy_client_handshake(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``WebSocketClientProtocol.handshake(wsuri, ...)``; it sends the protocol's own ``extra_headers`` (the
    argument of that name is not read), so they are swapped for the duration of the handshake."""
    wsuri = args[0] if args else kwargs.get("wsuri")
    if inside_exit_span() or wsuri is None:
        return await wrapped(*args, **kwargs)
    try:
        parts = _parts(wsuri)
    except Exception:
        return await wrapped(*args, **kwargs)
    with _client_span(parts) as span:
        own = instance.extra_headers
        instance.extra_headers = _merged(own, {item.key: item.val for item in span.inject()})
        try:
            result = await wrapped(*args, **kwargs)
        except Exception as e:
            tag_response(span, _status_of(e))
            raise
        finally:
            instance.extra_headers = own
        tag_response(span, 101)  # the legacy protocol keeps no response object; success is 101
        return result


# -- server ----------------------------------------------------------------------------------------

def _entry(connection: Any, target: str, headers: Any, status: Any, started: int) -> None:
    """The connection's entry span, started (and active in the connection's task) unless the handshake was
    refused, when it ends at once."""
    path, _, query = target.partition("?")
    span = http_entry_span(path, headers.get)
    span.start()
    span.start_time = started  # from the moment the handshake began
    secure = connection.transport.get_extra_info("ssl_object") is not None
    describe_entry(span, Component.Websockets, METHOD,
                   f"{'wss' if secure else 'ws'}://{headers.get('Host') or ''}{target}",
                   address_peer(connection.transport.get_extra_info("peername")))
    tag_response(span, status)
    task = asyncio.current_task() if status == 101 else None
    if task is None:
        span.stop()
        return
    task.add_done_callback(lambda _: _finish(connection, span))


def _finish(connection: Any, span: Span) -> None:
    try:
        sent = getattr(connection, "close_sent", None) or getattr(getattr(connection, "protocol", None),
                                                                 "close_sent", None)
        if sent is not None and sent.code == INTERNAL_ERROR:
            span.error_occurred = True
    finally:
        span.stop()


async def _server_handshake(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``ServerConnection.handshake(process_request, process_response, server_header)``: it answers the request
    (accepted or refused) and returns; ``request`` and ``response`` are set on the connection."""
    started = time.time_ns() // 1_000_000
    result = await wrapped(*args, **kwargs)
    try:
        request, response = instance.request, instance.response
        if request is not None and response is not None:
            _entry(instance, request.path, request.headers, response.status_code, started)
    except Exception:  # never into the connection
        pass
    return result


_REFUSALS = {"InvalidOrigin": 403, "InvalidUpgrade": 426}  # the legacy server's answers to these; others: 400


def _refusal(error: Exception) -> int:
    """The status the legacy server answers a failed handshake with (``AbortHandshake`` carries its own)."""
    status = getattr(error, "status", None)
    if status is not None:
        return int(status)
    name = type(error).__name__
    if name in _REFUSALS:
        return _REFUSALS[name]
    return 400 if any(c.__name__ == "InvalidHandshake" for c in type(error).__mro__) else 500


async def _legacy_server_handshake(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``WebSocketServerProtocol.handshake(...)``: returns the path once accepted, raises when refused (the caller
    answers then)."""
    started = time.time_ns() // 1_000_000
    try:
        result = await wrapped(*args, **kwargs)
    except Exception as e:
        try:
            headers = getattr(instance, "request_headers", None)
            if headers is not None:
                _entry(instance, getattr(instance, "path", "/"), headers, _refusal(e), started)
        except Exception:
            pass
        raise
    try:
        _entry(instance, instance.path, instance.request_headers, 101, started)
    except Exception:
        pass
    return result


class WebsocketsPlugin(Plugin):
    name = "sw_websockets"
    instruments = ("websockets>=10.4",)
    modules = ("websockets",)
    note = "websockets clients (the opening handshake) and servers (one span per connection), `websockets.asyncio` " \
           "and legacy APIs"

    def _install(self) -> None:
        self.when_imported("websockets.asyncio.client", self._install_client)
        self.when_imported("websockets.asyncio.server", self._install_server)
        self.when_imported("websockets.legacy.client", self._install_legacy_client)
        self.when_imported("websockets.legacy.server", self._install_legacy_server)

    def _install_client(self) -> None:
        self.wrap("websockets.asyncio.client", "ClientConnection.handshake", _client_handshake)

    def _install_server(self) -> None:
        self.wrap("websockets.asyncio.server", "ServerConnection.handshake", _server_handshake)

    def _install_legacy_client(self) -> None:
        self.wrap("websockets.legacy.client", "WebSocketClientProtocol.handshake", _legacy_client_handshake)

    def _install_legacy_server(self) -> None:
        self.wrap("websockets.legacy.server", "WebSocketServerProtocol.handshake", _legacy_server_handshake)


plugin = WebsocketsPlugin()
