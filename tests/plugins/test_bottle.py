"""sw_bottle with real Bottle apps on wsgiref: a caller that sends sw6 as a SkyWalking 6.6.0 service would, route
rules as operation names, checked against expected/bottle.json (the scenario of test_web.py); then, in process on
a wsgiref server on 127.0.0.1: the raw path without route templates, ``http.params``, an ignored method, an sw8
caller, exceptions, a mounted app, uninstall."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

bottle = pytest.importorskip("bottle")

from skywalking import Component  # noqa: E402
from skywalking.plugins import sw_bottle  # noqa: E402
from tests.plugins.test_http import IGNORED  # noqa: E402
from tests.plugins.test_web import check_front, check_server_ignores  # noqa: E402
from tests.plugins.wsgi import direct, entry, request, served, sw8, tags  # noqa: E402

HERE = Path(__file__).parent


def test_bottle_entry_spans_continue_the_caller() -> None:
    check_front([sys.executable, str(HERE / "apps" / "bottle_app.py")], "plugin-bottle", "bottle.json", 4,
                SW_PLUGIN_HTTP_ROUTE_TEMPLATE="true")


# -- in process --------------------------------------------------------------------------------------------------

def sample_app() -> Any:
    app = bottle.Bottle()
    app.route("/items/<item_id>", ["GET", "POST"], lambda item_id: {"item": item_id})
    return app


def test_the_path_names_the_span_and_params_are_collected(start_agent: Any) -> None:
    reporter = start_agent(plugin_bottle_collect_http_params=True)
    with served(sample_app()) as port:
        assert request(port, "GET", "/items/7?q=1&q=2&x=") == (200, b'{"item": "7"}')
    span = entry(reporter)
    assert span.op == "/items/7" and span.component is Component.Bottle and not span.error_occurred
    assert tags(span) == {"http.method": "GET", "http.url": f"http://127.0.0.1:{port}/items/7?q=1&q=2&x=",
                          "http.params": "q=[1,2]\nx=[]", "http.status_code": "200"}


def test_an_ignored_method_makes_no_span(start_agent: Any) -> None:
    reporter = start_agent(plugin_http_ignore_method=IGNORED)
    with served(sample_app()) as port:
        check_server_ignores(reporter, lambda method: request(port, method, "/items/1")[0])


def test_an_sw8_caller_is_continued(start_agent: Any) -> None:
    reporter = start_agent(agent_protocol_version="v8", plugin_http_route_template=True)
    with served(sample_app()) as port:
        header = sw8("java8-trace.1.1", "java8-seg.1.1", 3, "java8", "java8-1", "/java", f"127.0.0.1:{port}")
        assert request(port, "GET", "/items/9", {"sw8": header})[0] == 200
    span = entry(reporter)
    assert span.op == "/items/<item_id>"
    (ref,) = span.refs
    assert (str(ref.trace_id), str(ref.segment_id), ref.span_id) == ("java8-trace.1.1", "java8-seg.1.1", 3)
    assert (ref.service, ref.service_instance, ref.endpoint, ref.client_address) == \
        ("java8", "java8-1", "/java", f"127.0.0.1:{port}")
    assert str(reporter.segments[0].related_traces[0]) == "java8-trace.1.1"


def test_an_exception_is_a_logged_error_and_the_answer_stays_bottles(start_agent: Any) -> None:
    app = bottle.Bottle()

    @app.get("/boom")
    def boom() -> str:
        raise KeyError("boom")

    with served(app) as port:
        untraced = request(port, "GET", "/boom")  # before the agent starts: no span around it
        reporter = start_agent()
        traced = request(port, "GET", "/boom")
    assert traced == untraced and traced[0] == 500 and b"Internal Server Error" in traced[1]
    span = entry(reporter)
    assert span.error_occurred and tags(span)["http.status_code"] == "500"
    assert "boom" in span.logs[0].items[0].val


def test_an_exception_past_bottle_passes_through_unchanged(start_agent: Any) -> None:
    reporter = start_agent()
    app = bottle.Bottle()
    app.catchall = False
    raised = LookupError("mine")

    @app.get("/boom")
    def boom() -> str:
        raise raised

    with pytest.raises(LookupError) as caught:
        direct(app, "/boom")
    assert caught.value is raised
    span = entry(reporter)
    assert span.error_occurred and tags(span)["http.status_code"] == "500" and span.logs


def test_a_mounted_app_is_one_span_named_with_its_prefix(start_agent: Any) -> None:
    reporter = start_agent(plugin_http_route_template=True)
    parent = bottle.Bottle()
    parent.mount("/sub/", sample_app())
    with served(parent) as port:
        assert request(port, "GET", "/sub/items/3")[0] == 200
    span = entry(reporter)
    assert span.op == "/sub/items/<item_id>" and len(reporter.segments[0].spans) == 1


def test_uninstall_restores_the_originals(start_agent: Any) -> None:
    import wrapt

    reporter = start_agent()
    patched = {name: vars(cls)[name] for cls, name in ((bottle.Bottle, "__call__"), (bottle.Bottle, "_handle"),
                                                       (bottle.Router, "match"))}
    assert all(isinstance(f, wrapt.FunctionWrapper) for f in patched.values())
    sw_bottle.plugin.uninstall()
    try:
        assert vars(bottle.Bottle)["__call__"] is patched["__call__"].__wrapped__
        assert vars(bottle.Bottle)["_handle"] is patched["_handle"].__wrapped__
        assert vars(bottle.Router)["match"] is patched["match"].__wrapped__
        with served(sample_app()) as port:
            assert request(port, "GET", "/items/1")[0] == 200
        assert entry(reporter).component is Component.General  # wsgiref's span, not taken over
    finally:
        sw_bottle.plugin.install()
    assert isinstance(vars(bottle.Bottle)["__call__"], wrapt.FunctionWrapper)

