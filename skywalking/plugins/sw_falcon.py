"""Falcon 3.1.1+ and 4, WSGI (``falcon.App``) and ASGI (``falcon.asgi.App``): an entry span per HTTP request around the
app's ``__call__``, continuing the caller's ``sw6``/``sw8`` header.

Under a server that already traces WSGI applications (``wsgiref``) the Falcon span takes that request span over
instead of nesting. With ``plugin_http_route_template`` the span is renamed after the resource's ``uri_template``
(``/items/{item_id}``) as soon as Falcon has routed the request, before the responder runs. An exception Falcon's
error handlers turn into a response is logged on the span (not ``HTTPError``/``HTTPStatus``, which are
responses). ASGI lifespan and WebSocket scopes are left alone.
"""

from __future__ import annotations

import importlib
from typing import Any

from skywalking import Component, Kind
from skywalking.plugins import Plugin
from skywalking.plugins._http import (
    describe_entry,
    http_entry_span,
    ignored_method,
    raised_on_entry_span,
    raw_headers,
    route_templates,
    tag_response,
    wsgi_header,
    wsgi_peer,
    wsgi_start_response,
    wsgi_url,
)
from skywalking.plugins._peer import address_peer
from skywalking.trace.context import peek
from skywalking.trace.span import Span


def _falcon_span() -> Span | None:
    span = peek()
    return span if span is not None and span.kind is Kind.Entry and span.component is Component.Falcon else None


def _call(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``App.__call__(env, start_response)``: WSGI."""
    if len(args) != 2 or kwargs or not isinstance(args[0], dict):  # not a server's call: untraced
        return wrapped(*args, **kwargs)
    environ, start_response = args
    method = environ.get("REQUEST_METHOD", "GET")
    if ignored_method(method) or _falcon_span() is not None:  # an app called by another: the outer span covers it
        return wrapped(*args, **kwargs)
    span = http_entry_span(environ.get("PATH_INFO", "/"), wsgi_header(environ), inherit=Component.General)
    with span:
        describe_entry(span, Component.Falcon, method, wsgi_url(environ), wsgi_peer(environ))
        try:
            return wrapped(environ, wsgi_start_response(span, start_response))
        except Exception:
            tag_response(span, 500)  # no error handler took it: the server answers 500
            raise


def _acall(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``asgi.App.__call__(scope, receive, send)``. Not a coroutine function itself: a call with other arguments
    reaches the original and fails as it would untraced."""
    if len(args) + len(kwargs) != 3:
        return wrapped(*args, **kwargs)
    scope = args[0] if args else kwargs.get("scope")
    if not isinstance(scope, dict) or scope.get("type") != "http" or ignored_method(scope.get("method")) \
            or _falcon_span() is not None:
        return wrapped(*args, **kwargs)
    receive = args[1] if len(args) > 1 else kwargs["receive"]
    send = args[2] if len(args) > 2 else kwargs["send"]
    return _traced(wrapped, scope, receive, send)


async def _traced(wrapped: Any, scope: dict[str, Any], receive: Any, send: Any) -> Any:
    headers = raw_headers(scope.get("headers", ()), "host")
    path = scope.get("path", "/")
    span = http_entry_span(path, headers.get)
    with span:
        host = headers.get("host") or ":".join(str(p) for p in scope.get("server") or ("", ""))
        query = scope.get("query_string", b"").decode("latin-1")
        describe_entry(span, Component.Falcon, scope.get("method", "GET"),
                       f"{scope.get('scheme', 'http')}://{host}{scope.get('root_path', '')}{path}"
                       + (f"?{query}" if query else ""), address_peer(scope.get("client")))
        started = False

        async def traced_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message.get("type") == "http.response.start" and not started:
                started = True
                tag_response(span, message.get("status"))
            await send(message)

        try:
            return await wrapped(scope, receive, traced_send)
        finally:
            if not started:
                tag_response(span, 500)  # no response at all: the server answers 500


def _get_responder(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``App._get_responder(req)`` -> ``(responder, params, resource, uri_template)``: the span takes the
    template (None when no route matched)."""
    result = wrapped(*args, **kwargs)
    if route_templates():
        span = _falcon_span()
        template = result[3] if isinstance(result, tuple) and len(result) == 4 else None
        if span is not None and isinstance(template, str) and template:
            span.op = template
    return result


def _handled(ex: Any) -> None:
    """An exception Falcon is about to hand to an error handler (inside its ``except``)."""
    falcon = importlib.import_module("falcon")
    if not isinstance(ex, (falcon.HTTPError, falcon.HTTPStatus)):
        raised_on_entry_span()


def _handle_exception(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``App._handle_exception(req, resp, ex, params)``."""
    _handled(args[2] if len(args) > 2 else kwargs.get("ex"))
    return wrapped(*args, **kwargs)


async def _handle_exception_async(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``asgi.App._handle_exception(req, resp, ex, params)``, a coroutine; awaited inside the ``except``."""
    _handled(args[2] if len(args) > 2 else kwargs.get("ex"))
    return await wrapped(*args, **kwargs)


class FalconPlugin(Plugin):
    name = "sw_falcon"
    instruments = ("falcon>=3.1.1",)
    modules = ("falcon.app",)
    note = "Falcon applications, WSGI and ASGI (`App.__call__`, `asgi.App.__call__`; templates from `_get_responder`)"

    def _install(self) -> None:
        self.wrap("falcon.app", "App.__call__", _call)
        self.wrap("falcon.app", "App._get_responder", _get_responder)
        self.wrap("falcon.app", "App._handle_exception", _handle_exception)
        self.when_imported("falcon.asgi.app", self._install_asgi)

    def _install_asgi(self) -> None:
        self.wrap("falcon.asgi.app", "App.__call__", _acall)
        self.wrap("falcon.asgi.app", "App._handle_exception", _handle_exception_async)


plugin = FalconPlugin()
