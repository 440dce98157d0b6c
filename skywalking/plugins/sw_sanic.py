"""Sanic: an entry span per request, continuing the caller's ``sw6``/``sw8`` header, made through Sanic's own
signals, which every ``Sanic`` application created while the plugin is installed gets (``Sanic.__init__``):

* ``http.lifecycle.request``: the span starts (the request's head is read);
* ``http.routing.after``: with route templates on, it is renamed after the route (``/items/<item_id:int>``);
* ``http.lifecycle.exception``: an exception of the application's is recorded (a ``SanicException`` below 500,
  such as ``NotFound``, is an answer: its status says enough);
* ``http.lifecycle.response``: the status is tagged and the span ends, before the response is sent.

Sanic dispatches these signals inline, in the task that serves the connection, so the span is active in the
handler. A request that gets no response signal (a websocket route, a response cut short) ends when the next
request on the connection starts or the connection closes. Applications created before the plugin was installed
are not traced; after ``uninstall()`` the handlers already added do nothing.
"""

from __future__ import annotations

import importlib
import sys
from contextvars import ContextVar
from typing import Any

from skywalking import Component, config
from skywalking.plugins import Plugin
from skywalking.plugins._http import describe_entry, http_entry_span, ignored_method, route_templates, tag_response
from skywalking.plugins._peer import host_port
from skywalking.trace.span import Span

_current: ContextVar[Span | None] = ContextVar("sw_sanic_span", default=None)


def _end(span: Span | None) -> None:
    if span is not None and span.depth > 0:
        span.stop()


def _on_request(request: Any, **_: Any) -> None:
    try:
        _end(_current.get())  # the connection's previous request never got its response signal
        _current.set(None)
        if not plugin.installed or ignored_method(request.method):
            return
        span = http_entry_span(request.path, request.headers.get)
        span.start()
        _current.set(span)
        ip, port = request.ip, request.port
        describe_entry(span, Component.Sanic, request.method, request.url, host_port(ip, port) if ip else None,
                       request.query_string, config.plugin_sanic_collect_http_params)
    except Exception:  # never into the application
        pass


def _on_routed(request: Any, route: Any = None, **_: Any) -> None:
    span = _current.get()
    if span is None or route is None or not route_templates():
        return
    try:
        path = str(route.path)
        span.op = path if path.startswith("/") else "/" + path  # Sanic keeps routes without the leading slash
    except Exception:
        pass


def _on_exception(request: Any, exception: BaseException | None = None, **_: Any) -> None:
    span = _current.get()
    if span is None or exception is None:
        return
    try:
        status = getattr(exception, "status_code", None)
        if isinstance(status, int) and status < 500 and _is_sanic_exception(exception):
            return
        if sys.exc_info()[1] is exception:
            span.raised()
        else:
            span.log(exception)
    except Exception:
        pass


def _on_response(request: Any, response: Any = None, **_: Any) -> None:
    span = _current.get()
    if span is None:
        return
    _current.set(None)
    try:
        tag_response(span, getattr(response, "status", None))
    except Exception:
        pass
    _end(span)


def _on_complete(**_: Any) -> None:
    span = _current.get()
    if span is not None:
        _current.set(None)
        _end(span)


def _is_sanic_exception(exception: BaseException) -> bool:
    return isinstance(exception, importlib.import_module("sanic.exceptions").SanicException)


_SIGNALS = (("http.lifecycle.request", _on_request), ("http.routing.after", _on_routed),
            ("http.lifecycle.exception", _on_exception), ("http.lifecycle.response", _on_response),
            ("http.lifecycle.complete", _on_complete))


def _init(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    result = wrapped(*args, **kwargs)
    try:
        for event, handler in _SIGNALS:
            instance.add_signal(handler, event)
    except Exception:  # the application works untraced
        pass
    return result


class SanicPlugin(Plugin):
    name = "sw_sanic"
    instruments = ("sanic>=23.12",)
    modules = ("sanic",)
    note = "Sanic applications (signals `http.lifecycle.request` / `response` / `exception`, added by `Sanic.__init__`)"

    def _install(self) -> None:
        self.wrap("sanic.app", "Sanic.__init__", _init)


plugin = SanicPlugin()
