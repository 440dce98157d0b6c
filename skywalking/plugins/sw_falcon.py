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

from skywalking import Component
from skywalking.plugins import Plugin
from skywalking.plugins._http import (
    asgi_call,
    asgi_url,
    describe_entry,
    entry_span_of,
    http_entry_span,
    ignored_method,
    raised_on_entry_span,
    raw_headers,
    route_templates,
    wsgi_app_call,
)
from skywalking.plugins._peer import address_peer


def _call(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``App.__call__(env, start_response)``: WSGI."""
    return wsgi_app_call(Component.Falcon, wrapped, args, kwargs)


def _acall(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``asgi.App.__call__(scope, receive, send)``. Not a coroutine function itself: a call with other arguments
    reaches the original and fails as it would untraced."""
    if len(args) + len(kwargs) != 3:
        return wrapped(*args, **kwargs)
    scope = args[0] if args else kwargs.get("scope")
    if not isinstance(scope, dict) or scope.get("type") != "http" or ignored_method(scope.get("method")) \
            or entry_span_of(Component.Falcon) is not None:
        return wrapped(*args, **kwargs)
    receive = args[1] if len(args) > 1 else kwargs["receive"]
    send = args[2] if len(args) > 2 else kwargs["send"]
    return _traced(wrapped, scope, receive, send)


async def _traced(wrapped: Any, scope: dict[str, Any], receive: Any, send: Any) -> Any:
    headers = raw_headers(scope.get("headers", ()), "host")
    span = http_entry_span(scope.get("path", "/"), headers.get)
    with span:
        describe_entry(span, Component.Falcon, scope.get("method", "GET"),
                       asgi_url(scope, headers.get("host"), root_path=True), address_peer(scope.get("client")))
        return await asgi_call(span, wrapped, scope, receive, send)


def _get_responder(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``App._get_responder(req)`` -> ``(responder, params, resource, uri_template)``: the span takes the
    template (None when no route matched)."""
    result = wrapped(*args, **kwargs)
    if route_templates():
        span = entry_span_of(Component.Falcon)
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
