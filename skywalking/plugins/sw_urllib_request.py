"""``urllib.request`` (standard library): an exit span around ``OpenerDirector.open``, with the configured
headers (``sw6`` by default) added to the request."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from skywalking import Component
from skywalking.plugins import Plugin
from skywalking.plugins._http import http_exit_span, ignored_method, tag_response
from skywalking.trace.context import inside_exit_span


def _open(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    import urllib.request

    if inside_exit_span():
        return wrapped(*args, **kwargs)
    fullurl = args[0] if args else kwargs.get("fullurl")
    data = args[1] if len(args) > 1 else kwargs.get("data")
    # the method open() will use: the Request's own, else POST when there is a body (open() sets ``data`` on it)
    body = data if data is not None else getattr(fullurl, "data", None)
    method = getattr(fullurl, "method", None) or ("GET" if body is None else "POST")
    if ignored_method(method):
        return wrapped(*args, **kwargs)
    if isinstance(fullurl, str):  # what open() would do itself, done first so that headers can be added
        fullurl = urllib.request.Request(fullurl, data)
        args = (fullurl, *args[1:]) if args else args
        if not args:
            kwargs = {**kwargs, "fullurl": fullurl}
    if not isinstance(fullurl, urllib.request.Request):
        return wrapped(*args, **kwargs)
    with http_exit_span(urlsplit(fullurl.full_url), method, Component.General) as span:
        for item in span.inject():
            fullurl.add_header(item.key, item.val)  # urllib capitalizes names; HTTP names are case-insensitive
        try:
            response = wrapped(*args, **kwargs)
        except urllib.error.HTTPError as e:  # a response after all: its status is the outcome
            tag_response(span, e.code)
            raise
        tag_response(span, getattr(response, "status", None))
        return response


class UrllibRequestPlugin(Plugin):
    name = "sw_urllib_request"
    modules = ("urllib.request",)
    note = "urllib.request (standard library) client"

    def _install(self) -> None:
        import urllib.request

        self.wrap(urllib.request, "OpenerDirector.open", _open)


plugin = UrllibRequestPlugin()
