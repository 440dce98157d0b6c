"""sw_elasticsearch against the Elasticsearch protocol stand-in (tests/plugins/standins/elasticsearch.py: no
Elasticsearch server installs here), with the real elasticsearch-py client and its real HTTP clients underneath.

The service test runs apps/elasticsearch_app.py (sync client over urllib3, AsyncElasticsearch over aiohttp) called
with sw6 by a traced caller, the stand-in in its own process, and checks expected/elasticsearch.json. The
in-process tests check what the file cannot: one span whatever HTTP client the transport uses (their plugins
installed), the DSL option, retries, connection errors, our own failures, uninstall."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skywalking import config
from skywalking.reporter.memory import MemoryReporter
from skywalking.trace.context import get_context
from tests.plugins.harness import Services, port_of, serve
from tests.plugins.standins.elasticsearch import StandIn
from tests.protocol.procs import free_port

HERE = Path(__file__).parent
APP = HERE / "apps" / "elasticsearch_app.py"

es = pytest.importorskip("elasticsearch")


@pytest.fixture(scope="module")
def standin() -> Iterator[StandIn]:
    yield from serve(StandIn)


# -- the service, its caller and the collector ------------------------------------------------------------------

def test_requests_of_the_sync_and_async_clients_are_database_exit_spans() -> None:
    pytest.importorskip("aiohttp")
    with Services() as services:
        es = port_of(services.python("-m", "tests.plugins.standins.elasticsearch"))
        front = port_of(services.python(APP, es, name="plugin-elasticsearch", SW_PLUGIN_ELASTICSEARCH_TRACE_DSL="true"))
        answer = services.call_front(front, "/elasticsearch")
        assert answer == {"sync": {"get": "Dune", "search": ["1"], "bulk_errors": False,
                                   "get_error": "NotFoundError 404", "exists": False},
                          "async": {"total": 4}}, answer
        services.check("elasticsearch.json", segments=2, front=front, es=es)


# -- in this process ----------------------------------------------------------------------------------------------

def _traced(reporter: MemoryReporter, fn: Any) -> tuple[Any, list[Any]]:
    """``fn()`` inside a local span; its result and the spans of its segment (the local span last). The in-thread
    stand-in is an ``http.server`` traced by sw_http_server: its segments are in the reporter too, skipped here."""
    with get_context().new_local_span("/test") as local:
        result = fn()
    assert reporter.wait_for(1)
    return result, next(list(seg.spans) for seg in reversed(reporter.segments) if seg.spans[-1] is local)


def _tags(span: Any) -> dict[str, str]:
    return {t.key: t.val for t in span.tags}


def _client(port: int, **kwargs: Any) -> Any:
    return es.Elasticsearch(f"http://127.0.0.1:{port}", **kwargs)


@pytest.mark.parametrize("node_class", ["urllib3", "requests"])
def test_one_span_whatever_http_client_is_underneath(standin: StandIn, reporter: MemoryReporter,
                                                     node_class: str) -> None:
    if node_class == "requests":
        pytest.importorskip("requests")
    from skywalking.plugins import sw_requests, sw_urllib3

    assert sw_urllib3.plugin.installed and (node_class != "requests" or sw_requests.plugin.installed)
    client = _client(standin.port, node_class=node_class)
    try:
        result, spans = _traced(reporter, lambda: client.index(index="one", id="a", document={"n": 1})["result"])
    finally:
        client.close()
    assert result in ("created", "updated")
    assert [s.op for s in spans] == ["Elasticsearch/PUT/one/_doc/a", "/test"]
    span = spans[0]
    assert (span.peer, span.layer.name, span.component.value, span.error_occurred) == (
        f"127.0.0.1:{standin.port}", "Database", 47, False)
    assert _tags(span) == {"db.type": "Elasticsearch"}  # no DSL by default


@pytest.mark.parametrize("node_class", ["aiohttp", "httpxasync"])
def test_async_client_one_span(standin: StandIn, reporter: MemoryReporter, node_class: str) -> None:
    pytest.importorskip("aiohttp" if node_class == "aiohttp" else "httpx")
    if node_class == "httpxasync" and not hasattr(pytest.importorskip("elastic_transport"), "HttpxAsyncHttpNode"):
        pytest.skip("this elastic-transport has no httpx node")

    async def run() -> Any:
        client = es.AsyncElasticsearch(f"http://127.0.0.1:{standin.port}", node_class=node_class)
        try:
            await client.index(index="async", id="1", document={"n": 1})
            return (await client.search(index="async", query={"match_all": {}}, size=5))["hits"]["total"]["value"]
        finally:
            await client.close()

    from skywalking.plugins import sw_aiohttp, sw_httpx

    result, spans = _traced(reporter, lambda: asyncio.run(run()))
    assert (sw_aiohttp if node_class == "aiohttp" else sw_httpx).plugin.installed
    assert result >= 1
    assert [s.op for s in spans] == ["Elasticsearch/PUT/async/_doc/1", "Elasticsearch/POST/async/_search", "/test"]
    assert all(s.peer == f"127.0.0.1:{standin.port}" and s.pid == spans[-1].sid for s in spans[:2])


def test_dsl_is_recorded_only_when_asked_and_cut(standin: StandIn, reporter: MemoryReporter) -> None:
    from skywalking.plugins.sw_elasticsearch import STATEMENT_MAX

    client = _client(standin.port)
    long_text = "x" * (STATEMENT_MAX + 100)
    try:
        def calls() -> Any:
            client.index(index="dsl", id="0", document={"tag": "b"})
            config.init(plugin_elasticsearch_trace_dsl=True)
            client.index(index="dsl", id="1", document={"tag": "a"}, refresh=True)
            client.index(index="dsl", id="2", document={"text": long_text})
            client.get(index="dsl", id="1")
            return client.search(index="dsl", query={"term": {"tag": "a"}})["hits"]["total"]["value"]

        result, spans = _traced(reporter, calls)
    finally:
        client.close()
    assert result == 1
    first, indexed, long_one, got, searched = (_tags(s) for s in spans[:5])
    assert "db.statement" not in first  # the option was off for the first call
    assert indexed["db.statement"] == '{"tag":"a"}'
    assert long_one["db.statement"] == ('{"text":"' + long_text)[:STATEMENT_MAX]
    assert "db.statement" not in got  # no body
    assert searched["db.statement"] == '{"query":{"term":{"tag":"a"}}}'
    # the query string is not part of the operation name
    assert spans[1].op == "Elasticsearch/PUT/dsl/_doc/1"


def test_error_answers_mark_the_span_and_the_client_raises_as_usual(standin: StandIn,
                                                                      reporter: MemoryReporter) -> None:
    client = _client(standin.port)
    raised: list[BaseException] = []
    try:
        def calls() -> Any:
            client.indices.create(index="twice")
            try:
                client.indices.create(index="twice")
            except es.BadRequestError as e:
                raised.append(e)
            return client.exists(index="twice", id="nope")

        result, spans = _traced(reporter, calls)
    finally:
        client.close()
    assert bool(result) is False
    assert len(raised) == 1 and type(raised[0]) is es.BadRequestError
    assert raised[0].meta.status == 400 and raised[0].error == "resource_already_exists_exception"
    created, refused, head = spans[:3]
    assert not created.error_occurred and not head.error_occurred  # HEAD 404 is the answer "no"
    assert refused.op == "Elasticsearch/PUT/twice" and refused.error_occurred
    items = dict(refused.logs[0].items)
    assert items["http.status_code"] == "400" and items["error.kind"] == "resource_already_exists_exception"
    assert "already exists" in items["message"]


def test_connection_errors_mark_the_span_with_the_configured_nodes(reporter: MemoryReporter) -> None:
    dead = [free_port(), free_port()]  # nothing listens there
    client = es.Elasticsearch([f"http://127.0.0.1:{p}" for p in dead], max_retries=1, retry_on_timeout=False,
                              request_timeout=5)
    raised: list[BaseException] = []

    def call() -> None:
        try:
            client.info()
        except es.ConnectionError as e:
            raised.append(e)

    try:
        _, spans = _traced(reporter, call)
    finally:
        client.close()
    assert len(raised) == 1 and type(raised[0]) is es.ConnectionError
    assert [s.op for s in spans] == ["Elasticsearch/GET/", "/test"]  # one span for both attempts
    span = spans[0]
    assert span.error_occurred and "ConnectionError" in span.logs[0].items[0].val
    assert sorted(span.peer.split(",")) == sorted(f"127.0.0.1:{p}" for p in dead)


def test_a_retry_on_another_node_stays_in_one_span_whose_peer_answered(standin: StandIn,
                                                                         reporter: MemoryReporter) -> None:
    dead = free_port()
    client = es.Elasticsearch([f"http://127.0.0.1:{dead}", f"http://127.0.0.1:{standin.port}"],
                              node_selector_class="round_robin", randomize_nodes_in_pool=False, max_retries=2)
    try:  # round robin from the dead node: the first request is retried on the live one
        result, spans = _traced(reporter, lambda: [client.info()["tagline"], client.info()["tagline"]])
    finally:
        client.close()
    assert result == ["You Know, for Search"] * 2
    assert [s.op for s in spans] == ["Elasticsearch/GET/", "Elasticsearch/GET/", "/test"]
    assert all(s.peer == f"127.0.0.1:{standin.port}" and not s.error_occurred for s in spans[:2])


def test_nothing_inside_an_exit_span(standin: StandIn, reporter: MemoryReporter) -> None:
    client = _client(standin.port)
    try:
        def call() -> Any:
            with get_context().new_exit_span(op="search-layer", peer="somewhere"):
                return client.info()["tagline"]

        result, spans = _traced(reporter, call)
    finally:
        client.close()
    assert result == "You Know, for Search"
    assert [s.op for s in spans] == ["search-layer", "/test"]


def test_a_failure_of_the_plugin_leaves_the_request_alone(standin: StandIn, reporter: MemoryReporter,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from skywalking.plugins import sw_elasticsearch

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("plugin bug")

    client = _client(standin.port)
    try:
        monkeypatch.setattr(sw_elasticsearch, "get_context", broken)  # no span of ours: urllib3's stands in
        result, spans = _traced(reporter, lambda: client.info()["tagline"])
        assert result == "You Know, for Search" and [s.op for s in spans] == ["/", "/test"]
        monkeypatch.undo()
        monkeypatch.setattr(sw_elasticsearch, "host_port", broken)  # the answer cannot be read
        result, spans = _traced(reporter, lambda: client.info()["tagline"])
        assert result == "You Know, for Search" and [s.op for s in spans] == ["Elasticsearch/GET/", "/test"]
    finally:
        client.close()


def test_uninstall_restores_the_originals(standin: StandIn, reporter: MemoryReporter) -> None:
    import elastic_transport._async_transport as async_transport
    import elastic_transport._transport as transport
    import wrapt

    from skywalking.plugins.sw_elasticsearch import plugin

    targets = [transport.Transport.__dict__["perform_request"],
               async_transport.AsyncTransport.__dict__["perform_request"]]
    assert plugin.installed and all(isinstance(t, wrapt.FunctionWrapper) for t in targets)
    plugin.uninstall()
    try:
        assert [transport.Transport.__dict__["perform_request"],
                async_transport.AsyncTransport.__dict__["perform_request"]] == [t.__wrapped__ for t in targets]
        client = _client(standin.port)
        _, spans = _traced(reporter, lambda: client.info())
        client.close()
        assert not any(s.op.startswith("Elasticsearch/") for s in spans)
    finally:
        assert plugin.install()
    assert isinstance(transport.Transport.__dict__["perform_request"], wrapt.FunctionWrapper)
