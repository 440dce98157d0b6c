"""sw_neo4j against the Bolt stand-in (tests/plugins/standins/bolt.py: the Bolt handshake, chunked PackStream
messages and a tiny Cypher subset, written from the protocol specifications): no Neo4j server installs from PyPI or
Debian here.

The service test runs apps/neo4j_app.py called with sw6 by a traced caller and checks expected/neo4j.json; the
in-process tests check what the file cannot: span timing, sync and async errors unchanged, parameters off and cut,
nesting, our own failures, uninstall."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skywalking import config
from skywalking.reporter.memory import MemoryReporter
from skywalking.trace.context import get_context
from tests.plugins.harness import Services, port_of, serve, traced
from tests.plugins.standins.bolt import BoltStandIn

neo4j = pytest.importorskip("neo4j")

HERE = Path(__file__).parent
APP = HERE / "apps" / "neo4j_app.py"
AUTH = ("neo4j", "password")


@pytest.fixture(scope="module")
def bolt() -> Iterator[BoltStandIn]:
    yield from serve(BoltStandIn)


# -- the service, its caller and the collector ------------------------------------------------------------------

def test_queries_are_exit_spans(bolt: BoltStandIn) -> None:
    with Services() as services:
        front = port_of(services.python(APP, bolt.port, name="plugin-neo4j", SW_PLUGIN_SQL_PARAMETERS_MAX_LENGTH="64"))
        answer = services.call_front(front, "/neo4j")
        syntax = "Neo.ClientError.Statement.SyntaxError"
        assert answer == {"sync": {"x": 1, "unwind": [1, 2, 3], "created": 1, "read": 1, "error": syntax,
                                   "execute_query": 2},
                          "async": {"x": "a", "tx": [1, 2], "error": syntax}}, answer
        services.check("neo4j.json", segments=2, front=front, bolt=bolt.port)


# -- in this process ----------------------------------------------------------------------------------------------

@pytest.fixture
def driver(bolt: BoltStandIn, reporter: MemoryReporter) -> Iterator[Any]:
    with neo4j.GraphDatabase.driver(f"bolt://127.0.0.1:{bolt.port}", auth=AUTH) as d:
        yield d


def _execute_query(driver: Any) -> Any:
    """``driver.execute_query`` (neo4j 5.5+), else the managed read it stands for."""
    if hasattr(driver, "execute_query"):
        return driver.execute_query("RETURN 5 AS x").records[0]["x"]
    with driver.session() as session:
        return session.execute_read(lambda tx: tx.run("RETURN 5 AS x").single()["x"])


def _tags(span: Any) -> dict[str, str]:
    return {t.key: t.val for t in span.tags}


def _async_driver(bolt: BoltStandIn, password: str = AUTH[1]) -> Any:
    return neo4j.AsyncGraphDatabase.driver(f"bolt://127.0.0.1:{bolt.port}", auth=(AUTH[0], password))


def test_spans_last_until_the_server_answers(driver: Any, bolt: BoltStandIn, reporter: MemoryReporter) -> None:
    """The stand-in answers the RUN after 0.3 s: a span that only timed the send would last ~0 ms."""
    async def run_async() -> None:
        async with _async_driver(bolt) as d, d.session() as session:
            await (await session.run("CALL apoc.util.sleep(300)")).consume()
            async with await session.begin_transaction() as tx:
                await (await tx.run("CALL apoc.util.sleep($ms)", ms=300)).consume()

    def call() -> None:
        with driver.session() as session:
            session.run("CALL apoc.util.sleep(300)").consume()
            session.execute_write(lambda tx: tx.run("CALL apoc.util.sleep(300)").consume())
        asyncio.run(run_async())

    _, spans = traced(reporter, call)
    assert [s.op for s in spans] == ["Neo4j/Session/run", "Neo4j/Transaction/run", "Neo4j/AsyncSession/run",
                                     "Neo4j/AsyncTransaction/run", "/test"]
    for span in spans[:-1]:
        assert span.end_time - span.start_time >= 250, span
        assert span.peer == f"127.0.0.1:{bolt.port}" and span.component.value == 112 and span.layer.value == 1


def test_errors_mark_the_span_and_are_reraised_untouched(driver: Any, bolt: BoltStandIn,
                                                         reporter: MemoryReporter) -> None:
    raised: list[BaseException] = []

    async def run_async() -> None:
        async with _async_driver(bolt) as d, d.session() as session:
            try:
                await session.run("RETURN $missing AS m")
            except neo4j.exceptions.ClientError as e:
                raised.append(e)
            try:
                await session.execute_read(lambda tx: tx.run("RETUR 1"))
            except neo4j.exceptions.CypherSyntaxError as e:
                raised.append(e)
        async with _async_driver(bolt, password="wrong") as d, d.session() as session:
            try:
                await session.run("RETURN 1 AS x")
            except neo4j.exceptions.AuthError as e:
                raised.append(e)

    def call() -> None:
        with driver.session() as session:
            try:
                session.run("RETUR 1")
            except neo4j.exceptions.CypherSyntaxError as e:
                raised.append(e)
            assert session.run("RETURN 1 AS x").single()["x"] == 1  # the session still works
        asyncio.run(run_async())

    _, spans = traced(reporter, call)
    assert [type(e).__name__ for e in raised] == ["CypherSyntaxError", "ClientError", "CypherSyntaxError",
                                                  "AuthError"]
    assert getattr(raised[1], "code", None) == "Neo.ClientError.Statement.ParameterMissing"
    assert [s.op for s in spans] == ["Neo4j/Session/run", "Neo4j/Session/run", "Neo4j/AsyncSession/run",
                                     "Neo4j/AsyncTransaction/run", "Neo4j/AsyncSession/run", "/test"]
    assert [s.error_occurred for s in spans] == [True, False, True, True, True, False]
    for span, error in zip([s for s in spans if s.error_occurred], raised, strict=True):
        assert type(error).__name__ in span.logs[0].items[0].val


def test_parameters_are_off_by_default_and_cut(driver: Any, reporter: MemoryReporter) -> None:
    import datetime

    def call(session: Any) -> Any:
        return [session.run("RETURN $x AS x", {"x": 1}, y="ü").single()["x"],
                session.run(neo4j.Query("RETURN $when AS w", timeout=5), when=datetime.date(2024, 1, 2)).single()[0]]

    with driver.session() as session:
        result, spans = traced(reporter, lambda: call(session))
        assert result == [1, neo4j.time.Date(2024, 1, 2)]
        assert [_tags(s).get("db.sql.parameters") for s in spans] == [None, None, None]
        assert _tags(spans[1])["db.statement"] == "RETURN $when AS w"  # a Query's text

        config.plugin_sql_parameters_max_length = 64
        _, spans = traced(reporter, lambda: call(session))
        assert [_tags(s).get("db.sql.parameters") for s in spans[:2]] == ['[{"x": 1, "y": "ü"}]',
                                                                          '[{"when": "2024-01-02"}]']
        config.plugin_sql_parameters_max_length = 8
        _, spans = traced(reporter, lambda: call(session))
        assert _tags(spans[0])["db.sql.parameters"] == '[{"x": 1...'


def test_database_named_by_the_session_or_the_server(driver: Any, bolt: BoltStandIn,
                                                     reporter: MemoryReporter) -> None:
    def call() -> None:
        with driver.session(database="movies") as session:
            session.run("RETURN 1 AS x").consume()
            with session.begin_transaction() as tx:
                tx.run("RETURN 1 AS x").consume()
        with driver.session() as session:  # the home database, whose name this server does not send with RUN
            session.run("RETURN 1 AS x").consume()
            session.run("RETURN 2 AS x").consume()

    _, spans = traced(reporter, call)
    assert [_tags(s).get("db.instance") for s in spans] == ["movies", "movies", None, None, None]
    assert [q[0] for q in bolt.queries[-4:]] == ["movies", "movies", "neo4j", "neo4j"]


def test_a_result_read_in_pages_is_one_span(driver: Any, bolt: BoltStandIn, reporter: MemoryReporter) -> None:
    """Records the driver pulls later (``fetch_size`` at a time) belong to the query's one span, not to new ones."""
    def call() -> Any:
        with driver.session(fetch_size=2) as session:
            return [r["i"] for r in session.run("UNWIND range(1, 7) AS i RETURN i")]

    result, spans = traced(reporter, call)
    assert result == [1, 2, 3, 4, 5, 6, 7]
    assert [s.op for s in spans] == ["Neo4j/Session/run", "/test"]


def test_the_standin_packstream_round_trips_every_type() -> None:
    from tests.plugins.standins.bolt import Structure, pack, unpack

    values: list[Any] = [None, True, False, 0, -16, 127, -17, 128, -129, 32767, -32769, 2**31, -(2**63), 1.5,
                         "", "é" * 20, "x" * 300, "y" * 70000, b"\x00\xff", b"z" * 300, list(range(20)), [],
                         {f"k{i}": i for i in range(20)}, {"nested": [{"a": [1, "b"]}]}, Structure(0x44, 19000)]
    for value in values:
        assert unpack(bytes(pack(value))) == value, value
    assert pack(-16) == b"\xf0" and pack(128) == b"\xc9\x00\x80" and pack("a") == b"\x81a"
    assert pack({"a": 1}) == b"\xa1\x81a\x01" and pack(Structure(0x70, {})) == b"\xb1\x70\xa0"


def test_nothing_inside_an_exit_span(driver: Any, reporter: MemoryReporter) -> None:
    def call() -> Any:
        with get_context().new_exit_span(op="graph-layer", peer="somewhere"), driver.session() as session:
            return session.run("RETURN 1 AS x").single()["x"]

    result, spans = traced(reporter, call)
    assert result == 1 and [s.op for s in spans] == ["graph-layer", "/test"]


def test_a_failure_of_the_plugin_runs_the_query_untraced(driver: Any, reporter: MemoryReporter,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from skywalking.plugins import sw_neo4j

    def broken(*args: Any) -> Any:
        raise RuntimeError("plugin bug")

    monkeypatch.setattr(sw_neo4j, "exit_span", broken)
    result, spans = traced(reporter, lambda: _execute_query(driver))
    assert result == 5 and [s.op for s in spans] == ["/test"]


def test_uninstall_restores_the_originals(driver: Any, reporter: MemoryReporter) -> None:
    import wrapt
    from neo4j._async.work.session import AsyncSession
    from neo4j._async.work.transaction import AsyncTransactionBase
    from neo4j._sync.work.session import Session
    from neo4j._sync.work.transaction import TransactionBase

    from skywalking.plugins.sw_neo4j import plugin

    classes = (Session, TransactionBase, AsyncSession, AsyncTransactionBase)
    wrapped = [cls.__dict__["run"] for cls in classes]
    assert plugin.installed and all(isinstance(w, wrapt.FunctionWrapper) for w in wrapped)
    plugin.uninstall()
    try:
        assert [cls.__dict__["run"] for cls in classes] == [w.__wrapped__ for w in wrapped]
        result, spans = traced(reporter, lambda: _execute_query(driver))
        assert result == 5 and [s.op for s in spans] == ["/test"]
    finally:
        assert plugin.install()
    assert isinstance(Session.__dict__["run"], wrapt.FunctionWrapper)
