"""Django: an entry span per request around ``BaseHandler.get_response`` (WSGI) and ``get_response_async``
(ASGI), continuing the caller's ``sw6``/``sw8`` header.

Under ``runserver`` or another ``wsgiref`` server (traced by ``sw_http_server``) the Django span takes that
request span over instead of nesting. Exceptions Django turns into a 500 are logged on the span. With
``plugin_http_route_template`` the span is named after the matched URL pattern (``/items/<int:item_id>``) once
Django resolved the request, before the view runs.
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
    tag_response,
    wsgi_header,
    wsgi_peer,
    wsgi_url,
)
from skywalking.trace.span import Span


def _span(request: Any) -> tuple[Span | None, str]:
    """The entry span (not started) of ``request`` and its method; None when the method is not traced."""
    method = request.method or "GET"
    if ignored_method(method):
        return None, method
    return http_entry_span(request.path, wsgi_header(request.META), inherit=Component.General), method


def _describe(span: Span, request: Any, method: str) -> None:
    meta = request.META  # the WSGI environ, or its ASGI equivalent (same keys)
    describe_entry(span, Component.Django, method, wsgi_url(meta), wsgi_peer(meta), meta.get("QUERY_STRING", ""),
                   config.plugin_django_collect_http_params)


def _get_response(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    request = args[0] if args else kwargs["request"]
    span, method = _span(request)
    if span is None:
        return wrapped(*args, **kwargs)
    with span:
        _describe(span, request, method)
        response = wrapped(*args, **kwargs)
        tag_response(span, getattr(response, "status_code", None))
        return response


async def _get_response_async(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    request = args[0] if args else kwargs["request"]
    span, method = _span(request)
    if span is None:
        return await wrapped(*args, **kwargs)
    with span:
        _describe(span, request, method)
        response = await wrapped(*args, **kwargs)
        tag_response(span, getattr(response, "status_code", None))
        return response


def _resolve_request(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``BaseHandler.resolve_request(request)``: with route templates on, the entry span takes the pattern's name."""
    match = wrapped(*args, **kwargs)
    if route_templates():
        route = getattr(match, "route", None)
        rename_entry_span(Component.Django, "/" + route.lstrip("/") if route else None)
    return match


def _handle_uncaught_exception(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``handle_uncaught_exception(request, resolver, exc_info)``: a view's exception about to become a 500."""
    raised_on_entry_span()  # called inside Django's ``except``
    return wrapped(*args, **kwargs)


class DjangoPlugin(Plugin):
    name = "sw_django"
    instruments = ("django>=3.2",)
    modules = ("django.core.handlers.base",)
    note = "Django applications, WSGI and ASGI (`BaseHandler.get_response`, `get_response_async`)"

    def _install(self) -> None:
        import django.core.handlers.base
        import django.core.handlers.exception

        self.wrap(django.core.handlers.base, "BaseHandler.get_response", _get_response)
        self.wrap(django.core.handlers.base, "BaseHandler.get_response_async", _get_response_async)
        self.wrap(django.core.handlers.exception, "handle_uncaught_exception", _handle_uncaught_exception)
        self.wrap(django.core.handlers.base, "BaseHandler.resolve_request", _resolve_request)


plugin = DjangoPlugin()
