"""Flask: an entry span per request around ``Flask.wsgi_app``, continuing the caller's ``sw6``/``sw8`` header.

Under a server that already traces WSGI applications (``wsgiref``, see ``sw_http_server``) the Flask span takes
that request span over instead of nesting. The span ends when Flask returns the response; a streamed body is
not covered. Exceptions Flask turns into a 500 are logged on the span. With ``plugin_http_route_template`` the
span is named after the matched rule (``/items/<int:item_id>``) before the view runs.
"""

from __future__ import annotations

from typing import Any

from skywalking import Component, config
from skywalking.plugins import Plugin
from skywalking.plugins._http import (
    describe_entry,
    http_entry_span,
    ignored_method,
    raised_on_entry_span,
    rename_entry_span,
    route_templates,
    wsgi_header,
    wsgi_peer,
    wsgi_start_response,
    wsgi_url,
)


def _wsgi_app(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    environ = args[0] if args else kwargs["environ"]
    start_response = args[1] if len(args) > 1 else kwargs["start_response"]
    method = environ.get("REQUEST_METHOD", "GET")
    if ignored_method(method):
        return wrapped(*args, **kwargs)
    span = http_entry_span(environ.get("PATH_INFO", "/"), wsgi_header(environ), inherit=Component.General)
    with span:
        describe_entry(span, Component.Flask, method, wsgi_url(environ), wsgi_peer(environ),
                       environ.get("QUERY_STRING", ""), config.plugin_flask_collect_http_params)
        return wrapped(environ, wsgi_start_response(span, start_response))


def _full_dispatch_request(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """The request was matched: with route templates on, the entry span takes the rule's name."""
    if route_templates():
        rename_entry_span(Component.Flask, _rule())
    return wrapped(*args, **kwargs)


def _rule() -> str | None:
    from flask import request

    rule = request.url_rule
    return rule.rule if rule is not None else None


def _handle_exception(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``Flask.handle_exception(e)``: an unhandled exception about to become a 500."""
    raised_on_entry_span()  # called inside Flask's ``except``
    return wrapped(*args, **kwargs)


class FlaskPlugin(Plugin):
    name = "sw_flask"
    instruments = ("flask>=2.0",)
    modules = ("flask",)
    note = "Flask applications (`Flask.wsgi_app`)"

    def _install(self) -> None:
        import flask.app

        self.wrap(flask.app, "Flask.wsgi_app", _wsgi_app)
        self.wrap(flask.app, "Flask.handle_exception", _handle_exception)
        self.wrap(flask.app, "Flask.full_dispatch_request", _full_dispatch_request)


plugin = FlaskPlugin()
