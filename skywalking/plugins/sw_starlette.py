"""FastAPI and every other Starlette application (Ray Serve ingress apps, vLLM's OpenAI server, gateways): an
entry span per HTTP request around ``Starlette.__call__``, continuing the caller's ``sw6``/``sw8`` header.

Inside Ray Serve the replica's request already has its entry span (``sw_ray``); the app then adds nothing.
"""

from __future__ import annotations

from typing import Any

from skywalking import Component, Kind, config
from skywalking.plugins import Plugin
from skywalking.plugins._http import (
    asgi_call,
    asgi_url,
    describe_entry,
    http_entry_span,
    ignored_method,
    raw_headers,
    route_templates,
)
from skywalking.plugins._peer import address_peer
from skywalking.trace.context import peek


def route_template(app: Any, scope: dict[str, Any]) -> str | None:
    """The path template of the route that fully matches ``scope`` (``/items/{item_id}``), mounts included."""
    try:
        from starlette.routing import Match
    except ImportError:
        return None
    routes, prefix = getattr(getattr(app, "router", None), "routes", None) or [], ""
    for _ in range(8):  # mounts nest; bounded
        for route in routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                sub = getattr(route, "routes", None)
                if sub:  # a Mount: keep matching inside it
                    prefix += getattr(route, "path", "")
                    routes, scope = sub, {**scope, **child}
                    break
                return prefix + getattr(route, "path", "")
        else:
            return None
    return None


def _call(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Not a coroutine function itself: a call with other than the three ASGI arguments reaches the original and
    fails at once, as it would untraced (uvicorn calls the app with none to tell an app factory from an app)."""
    if len(args) + len(kwargs) != 3:
        return wrapped(*args, **kwargs)
    scope = args[0] if args else kwargs.get("scope", {})
    if not isinstance(scope, dict) or scope.get("type") != "http" or ignored_method(scope.get("method")):
        return wrapped(*args, **kwargs)
    outer = peek()
    if outer is not None and outer.kind is Kind.Entry:  # e.g. a Ray Serve replica's request span
        return wrapped(*args, **kwargs)
    receive = args[1] if len(args) > 1 else kwargs["receive"]
    send = args[2] if len(args) > 2 else kwargs["send"]
    return _traced(wrapped, instance, scope, receive, send)


async def _traced(wrapped: Any, instance: Any, scope: dict[str, Any], receive: Any, send: Any) -> Any:
    headers = raw_headers(scope.get("headers", ()), "host")
    path = scope.get("path", "/")
    op = (route_templates(config.plugin_starlette_route_template) and route_template(instance, scope)) or path
    span = http_entry_span(op, headers.get)
    with span:
        describe_entry(span, Component.FastAPI, scope.get("method", "GET"), asgi_url(scope, headers.get("host")),
                       address_peer(scope.get("client")))
        return await asgi_call(span, wrapped, scope, receive, send)


class StarlettePlugin(Plugin):
    name = "sw_starlette"
    instruments = ("starlette>=0.20",)
    modules = ("starlette.applications",)
    note = "FastAPI and any Starlette ASGI application (HTTP requests)"

    def _install(self) -> None:
        import starlette.applications

        self.wrap(starlette.applications, "Starlette.__call__", _call)


plugin = StarlettePlugin()
