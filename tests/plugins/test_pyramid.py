"""sw_pyramid with real Pyramid apps on wsgiref: a caller that sends sw6 as a SkyWalking 6.6.0 service would, route
patterns as operation names, checked against expected/pyramid.json (the scenario of test_web.py); then, in process
on a wsgiref server on 127.0.0.1: a traversal app keeps the path, an ignored method, an sw8 caller, exceptions
(escaping, turned into responses by exception views, Pyramid's HTTP exceptions), uninstall."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pyramid")

from pyramid.config import Configurator
from pyramid.httpexceptions import HTTPFound
from pyramid.response import Response

from skywalking import Component
from skywalking.plugins import sw_pyramid
from tests.plugins.test_http import IGNORED
from tests.plugins.test_web import check_front, check_server_ignores
from tests.plugins.wsgi import direct, entry, request, served, sw8, tags

HERE = Path(__file__).parent


def test_pyramid_entry_spans_continue_the_caller() -> None:
    check_front([sys.executable, str(HERE / "apps" / "pyramid_app.py")], "plugin-pyramid", "pyramid.json", 4,
                SW_PLUGIN_HTTP_ROUTE_TEMPLATE="true")


# -- in process --------------------------------------------------------------------------------------------------

def routed_app(*views: tuple[str, str, Callable[[Any], Any]], exception_view: bool = False) -> Any:
    """Routes ``(name, pattern, view)``, each view answering any method with a string response."""
    with Configurator() as config:
        for name, pattern, view in views:
            config.add_route(name, pattern)
            config.add_view(view, route_name=name, renderer="string")
        if exception_view:
            config.add_exception_view(lambda exc, request: Response(f"failed: {exc}", status=503),
                                      context=RuntimeError)
        return config.make_wsgi_app()


def item(request: Any) -> str:
    return f"item {request.matchdict['item_id']}"


def test_without_route_templates_the_path_names_the_span(start_agent: Any) -> None:
    reporter = start_agent()
    with served(routed_app(("item", "/items/{item_id}", item))) as port:
        assert request(port, "GET", "/items/7?q=1") == (200, b"item 7")
    span = entry(reporter)
    assert span.op == "/items/7" and span.component is Component.Pyramid and not span.error_occurred
    assert tags(span) == {"http.method": "GET", "http.url": f"http://127.0.0.1:{port}/items/7?q=1",
                          "http.status_code": "200"}


def test_a_traversal_app_keeps_the_path(start_agent: Any) -> None:
    class Root(dict):
        __name__ = ""
        __parent__ = None

    class Leaf:
        pass

    root = Root(leaf=Leaf())
    reporter = start_agent(plugin_http_route_template=True)
    with Configurator(root_factory=lambda request: root) as config:
        config.add_view(lambda context, request: Response("leaf"), context=Leaf)
        app = config.make_wsgi_app()
    with served(app) as port:
        assert request(port, "GET", "/leaf") == (200, b"leaf")
    assert entry(reporter).op == "/leaf"


def test_an_ignored_method_makes_no_span(start_agent: Any) -> None:
    reporter = start_agent(plugin_http_ignore_method=IGNORED)
    with served(routed_app(("item", "/items/{item_id}", item))) as port:
        check_server_ignores(reporter, lambda method: request(port, method, "/items/1")[0])


def test_an_sw8_caller_is_continued(start_agent: Any) -> None:
    reporter = start_agent(agent_protocol_version="v8", plugin_http_route_template=True)
    with served(routed_app(("item", "items/{item_id}", item))) as port:  # a pattern without its leading slash
        header = sw8("java8-trace.1.1", "java8-seg.1.1", 3, "java8", "java8-1", "/java", f"127.0.0.1:{port}")
        assert request(port, "GET", "/items/9", {"sw8": header})[0] == 200
    span = entry(reporter)
    assert span.op == "/items/{item_id}"
    (ref,) = span.refs
    assert (str(ref.trace_id), str(ref.segment_id), ref.span_id) == ("java8-trace.1.1", "java8-seg.1.1", 3)
    assert (ref.service, ref.service_instance, ref.endpoint, ref.client_address) == \
        ("java8", "java8-1", "/java", f"127.0.0.1:{port}")


def boom(request: Any) -> str:
    raise RuntimeError("boom")


def test_an_exception_view_answer_is_kept_and_the_exception_logged(start_agent: Any) -> None:
    reporter = start_agent()
    with served(routed_app(("boom", "/boom", boom), exception_view=True)) as port:
        assert request(port, "GET", "/boom") == (503, b"failed: boom")
    span = entry(reporter)
    assert span.error_occurred and tags(span)["http.status_code"] == "503"
    assert "RuntimeError: boom" in span.logs[0].items[0].val


def test_an_escaping_exception_passes_through_unchanged(start_agent: Any) -> None:
    raised = LookupError("mine")

    def fail(request: Any) -> str:
        raise raised

    app = routed_app(("boom", "/boom", fail))
    reporter = start_agent()
    with pytest.raises(LookupError) as caught:
        direct(app, "/boom")
    assert caught.value is raised
    span = entry(reporter)
    assert span.error_occurred and tags(span)["http.status_code"] == "500" and span.logs
    reporter.segments.clear()
    with served(app) as port:  # over a server: wsgiref answers 500
        assert request(port, "GET", "/boom")[0] == 500
    assert entry(reporter).error_occurred


def test_a_redirect_raised_by_a_view_is_no_error(start_agent: Any) -> None:
    def moved(request: Any) -> str:
        raise HTTPFound(location="/elsewhere")

    reporter = start_agent()
    with served(routed_app(("moved", "/moved", moved))) as port:
        assert request(port, "GET", "/moved")[0] == 302
    span = entry(reporter)
    assert not span.error_occurred and not span.logs and tags(span)["http.status_code"] == "302"


def test_uninstall_restores_the_originals(start_agent: Any) -> None:
    import pyramid.router
    import pyramid.urldispatch
    import pyramid.view
    import wrapt

    reporter = start_agent()
    targets = ((pyramid.router.Router, "__call__"), (pyramid.urldispatch.RoutesMapper, "__call__"),
               (pyramid.view.ViewMethodsMixin, "invoke_exception_view"))
    patched = [vars(cls)[name] for cls, name in targets]
    assert all(isinstance(f, wrapt.FunctionWrapper) for f in patched)
    sw_pyramid.plugin.uninstall()
    try:
        assert [vars(cls)[name] for cls, name in targets] == [f.__wrapped__ for f in patched]
        with served(routed_app(("item", "/items/{item_id}", item))) as port:
            assert request(port, "GET", "/items/1")[0] == 200
        assert entry(reporter).component is Component.General  # wsgiref's span, not taken over
    finally:
        sw_pyramid.plugin.install()
    assert isinstance(vars(pyramid.router.Router)["__call__"], wrapt.FunctionWrapper)

