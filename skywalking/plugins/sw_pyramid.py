"""Pyramid: an entry span per request around ``Router.__call__`` (the WSGI application), continuing the caller's
``sw6``/``sw8`` header.

Under a server that already traces WSGI applications (``wsgiref``) the Pyramid span takes that request span over
instead of nesting. With ``plugin_http_route_template`` the span is renamed after the pattern of the route that
matched (``/items/{id}``) as soon as Pyramid's route mapper has matched it, before the view runs; traversal
requests (no route) keep the path. An exception an exception view turns into a response is logged on the span
(not Pyramid's own HTTP exceptions, which are responses); one that escapes Pyramid makes the span a 500 error.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from skywalking import Component
from skywalking.plugins import Plugin
from skywalking.plugins._http import (
    entry_span_of,
    raised_on_entry_span,
    route_templates,
    wsgi_app_call,
)


def _call(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    return wsgi_app_call(Component.Pyramid, wrapped, args, kwargs)


def _route(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``RoutesMapper.__call__(request)`` -> ``{"match": ..., "route": ...}``: the span takes the route's pattern."""
    info = wrapped(*args, **kwargs)
    if route_templates():
        span = entry_span_of(Component.Pyramid)
        pattern = getattr(info.get("route"), "pattern", None) if isinstance(info, dict) else None
        if span is not None and isinstance(pattern, str):
            span.op = pattern if pattern.startswith("/") else "/" + pattern
    return info


def _invoke_exception_view(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``request.invoke_exception_view(exc_info)``: called inside the ``except`` of Pyramid's exception view tween."""
    http_exception = importlib.import_module("pyramid.httpexceptions").HTTPException  # pyramid has no types
    exc_info = args[0] if args else kwargs.get("exc_info")
    exception = exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) == 3 else sys.exc_info()[1]
    if exception is not None and exception is sys.exc_info()[1] and not isinstance(exception, http_exception):
        raised_on_entry_span()
    return wrapped(*args, **kwargs)


class PyramidPlugin(Plugin):
    name = "sw_pyramid"
    instruments = ("pyramid>=2.0",)
    modules = ("pyramid.router",)
    note = "Pyramid applications (`Router.__call__`; route patterns from `RoutesMapper`)"

    def _install(self) -> None:
        self.wrap("pyramid.router", "Router.__call__", _call)
        self.wrap("pyramid.urldispatch", "RoutesMapper.__call__", _route)
        self.wrap("pyramid.view", "ViewMethodsMixin.invoke_exception_view", _invoke_exception_view)


plugin = PyramidPlugin()
