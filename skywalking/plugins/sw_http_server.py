"""Standard library servers: ``http.server`` request handlers (``do_<METHOD>``) and ``wsgiref`` WSGI
applications, each request in an entry span that continues the caller's ``sw6``/``sw8`` header."""

from __future__ import annotations

from typing import Any

from skywalking import Component
from skywalking.plugins import Plugin
from skywalking.plugins._http import (
    describe_entry,
    http_entry_span,
    ignored_method,
    tag_response,
    wsgi_header,
    wsgi_peer,
    wsgi_start_response,
    wsgi_url,
)
from skywalking.plugins._peer import address_peer

_SPAN = "_skywalking_span"


# -- http.server --------------------------------------------------------------------------------

def _parse_request(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """After a request line and headers parse, route this request's ``do_<METHOD>`` through a span."""
    ok = wrapped(*args, **kwargs)
    if ok and not ignored_method(instance.command):
        name = f"do_{instance.command}"
        handler = getattr(type(instance), name, None)
        if handler is not None:
            def traced() -> Any:
                path = instance.path
                span = http_entry_span(path.split("?", 1)[0], instance.headers.get)
                setattr(instance, _SPAN, span)
                try:
                    with span:
                        describe_entry(span, Component.General, instance.command,
                                       f"http://{instance.headers.get('Host', '')}{path}",
                                       address_peer(instance.client_address))
                        return handler(instance)
                finally:
                    setattr(instance, _SPAN, None)

            setattr(instance, name, traced)  # this instance, this request (keep-alive parses again)
    return ok


def _send_response(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    span = getattr(instance, _SPAN, None)
    if span is not None:
        tag_response(span, args[0] if args else kwargs.get("code"))
    return wrapped(*args, **kwargs)


# -- wsgiref ------------------------------------------------------------------------------------

def _wsgi_run(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``wsgiref.handlers.BaseHandler.run(application)``: the span covers the application and the body. A
    framework plugin inside (Flask, Django) takes this span over and names it."""
    application = args[0] if args else kwargs.get("application")
    state: dict[str, Any] = {}

    def traced_app(environ: dict[str, Any], start_response: Any) -> Any:
        if ignored_method(environ.get("REQUEST_METHOD", "GET")):
            return application(environ, start_response)
        span = http_entry_span(environ.get("PATH_INFO", "/"), wsgi_header(environ))
        span.start()
        state["span"] = span
        describe_entry(span, Component.General, environ.get("REQUEST_METHOD", "GET"), wsgi_url(environ),
                       wsgi_peer(environ))
        return application(environ, wsgi_start_response(span, start_response))

    try:
        return wrapped(traced_app)
    finally:
        span = state.get("span")
        if span is not None:
            span.__exit__(None, None, None)


class HttpServerPlugin(Plugin):
    name = "sw_http_server"
    modules = ("http.server", "wsgiref.handlers")
    note = "http.server request handlers and wsgiref WSGI applications (standard library)"

    def _install(self) -> None:
        self.when_imported("http.server", self._install_http_server)
        self.when_imported("wsgiref.handlers", self._install_wsgiref)

    def _install_http_server(self) -> None:
        import http.server

        self.wrap(http.server, "BaseHTTPRequestHandler.parse_request", _parse_request)
        self.wrap(http.server, "BaseHTTPRequestHandler.send_response", _send_response)

    def _install_wsgiref(self) -> None:
        import wsgiref.handlers

        self.wrap(wsgiref.handlers, "BaseHandler.run", _wsgi_run)


plugin = HttpServerPlugin()
