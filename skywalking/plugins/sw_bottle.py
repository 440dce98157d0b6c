"""Bottle: an entry span per request around ``Bottle.__call__``, continuing the caller's ``sw6``/``sw8`` header.

Under a server that already traces WSGI applications (``wsgiref``, Bottle's default server) the Bottle span takes
that request span over instead of nesting. With ``plugin_http_route_template`` the span is renamed after the
matched route's rule (``/items/<id>``) as soon as Bottle's router has matched it, before the handler runs, so
the calls it makes carry that name. An exception Bottle turns into a 500 is logged on the span. The span ends
when Bottle returns the response; a streamed body is not covered.
"""

from __future__ import annotations

from typing import Any

from skywalking import Component, config
from skywalking.plugins import Plugin
from skywalking.plugins._http import (
    entry_span_of,
    route_templates,
    wsgi_app_call,
)

_SCRIPT = "skywalking.script_name"  # SCRIPT_NAME when the request reached the outermost Bottle app


def _call(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    def prepare(environ: dict[str, Any]) -> None:  # an app mounted in another is under the outer one's span
        environ[_SCRIPT] = environ.get("SCRIPT_NAME", "")

    return wsgi_app_call(Component.Bottle, wrapped, args, kwargs, config.plugin_bottle_collect_http_params, prepare)


def _match(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``Router.match(environ)`` -> ``(route, url_args)``: the span takes the route's rule."""
    result = wrapped(*args, **kwargs)
    if route_templates():
        span = entry_span_of(Component.Bottle)
        rule = getattr(result[0], "rule", None) if isinstance(result, tuple) and result else None
        if span is not None and isinstance(rule, str):
            environ = args[0] if args else kwargs.get("environ")
            mounted = ""  # the path prefix of a WSGI-mounted app (Bottle 0.12 mounts): SCRIPT_NAME grew by it
            if isinstance(environ, dict):
                script = str(environ.get("SCRIPT_NAME", ""))
                mounted = script[len(str(environ.get(_SCRIPT, ""))):].rstrip("/")
            span.op = mounted + rule if rule.startswith("/") else f"{mounted}/{rule}"
    return result


def _handle(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``Bottle._handle(environ)``: a handler's exception comes back as an ``HTTPError`` 500 carrying it."""
    out = wrapped(*args, **kwargs)
    exception = getattr(out, "exception", None)
    if isinstance(exception, Exception):
        span = entry_span_of(Component.Bottle)
        if span is not None:
            span.log(exception)
    return out


class BottlePlugin(Plugin):
    name = "sw_bottle"
    instruments = ("bottle>=0.12",)
    modules = ("bottle",)
    note = "Bottle applications (`Bottle.__call__`; route rules from `Router.match`)"

    def _install(self) -> None:
        self.wrap("bottle", "Bottle.__call__", _call)
        self.wrap("bottle", "Bottle._handle", _handle)
        self.wrap("bottle", "Router.match", _match)


plugin = BottlePlugin()
