"""sw_psycopg2, sw_psycopg and sw_asyncpg against a real PostgreSQL server on 127.0.0.1 (tests/plugins/postgres.py
starts it on a free port, with its unix socket and data in a temp dir; the binaries come from tools/postgres-server.sh,
which installs Debian's package when there are none). PostgreSQL refuses to run as root: as root the server runs as the
``postgres`` user. Without binaries the tests skip, or fail when CI or SW_REQUIRE_POSTGRES is set. Each driver's tests
skip when that driver is not installed (each tox env installs one).

The service tests run apps/postgres_app.py called with sw6 by a traced caller and check expected/<driver>.json; the
in-process tests check what the files cannot: driver objects kept real, nesting, parameters off, our own failures,
a server that goes away, uninstall."""

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
from tests.plugins.postgres import DATABASE, PostgresServer, postgres_bin_dir

HERE = Path(__file__).parent
APP = HERE / "apps" / "postgres_app.py"


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    if not any(_installed(name) for name in ("psycopg2", "psycopg", "asyncpg")):
        pytest.skip("no PostgreSQL driver installed")
    yield from serve(lambda: PostgresServer(postgres_bin_dir()))


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# -- the service, its caller and the collector ------------------------------------------------------------------

def _service_run(postgres: PostgresServer, driver: str) -> dict[str, Any]:
    with Services() as services:
        front = port_of(services.python(APP, postgres.port, postgres.socket_dir, DATABASE, name=f"plugin-{driver}",
                                        SW_PLUGIN_SQL_PARAMETERS_MAX_LENGTH="64"))
        answer = services.call_front(front, f"/{driver}")
        services.check(f"{driver}.json", segments=2, front=front, pg=postgres.port, socket=postgres.socket_dir)
        return answer


def test_psycopg2_statements_are_exit_spans(postgres: PostgresServer) -> None:
    pytest.importorskip("psycopg2")
    answer = _service_run(postgres, "psycopg2")
    assert answer == {"select": "b", "dict": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}], "callproc": "ABC",
                      "uuid_type": "UUID", "error": "UndefinedTable", "pool": 2}, answer


def test_psycopg_statements_are_exit_spans(postgres: PostgresServer) -> None:
    pytest.importorskip("psycopg")
    pytest.importorskip("psycopg_pool")
    answer = _service_run(postgres, "psycopg")
    assert answer == {"select": "b", "stream": [1, 2], "composed": "a", "named": [1, 2], "error": "UndefinedTable",
                      "pool": 4, "async": 5, "async_stream": [1, 2, 3], "async_error": "UndefinedTable"}, answer


def test_asyncpg_statements_are_exit_spans(postgres: PostgresServer) -> None:
    pytest.importorskip("asyncpg")
    answer = _service_run(postgres, "asyncpg")
    assert answer == {"fetch": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}], "fetchrow": "b", "fetchval": 2,
                      "prepared": "a", "cursor_iter": [1, 2], "cursor_fetch": [1], "error": "UndefinedTableError",
                      "pool": 6}, answer


# -- in this process ----------------------------------------------------------------------------------------------

def _tags(span: Any) -> dict[str, str]:
    return {t.key: t.val for t in span.tags}


def _dsn(postgres: PostgresServer) -> str:
    return f"host=127.0.0.1 port={postgres.port} dbname={DATABASE} user=postgres"


def test_spans_last_until_the_result(postgres: PostgresServer, reporter: MemoryReporter) -> None:
    """The server answers after 0.3 s: a span that only timed the send would last ~0 ms."""
    calls: list[Any] = []
    if _installed("psycopg2"):
        import psycopg2

        def with_psycopg2() -> None:
            conn = psycopg2.connect(_dsn(postgres))
            conn.cursor().execute("SELECT pg_sleep(0.3)")
            conn.close()

        calls.append(with_psycopg2)
    if _installed("psycopg"):
        import psycopg

        async def with_psycopg() -> None:
            async with await psycopg.AsyncConnection.connect(_dsn(postgres)) as conn:
                await conn.execute("SELECT pg_sleep(0.3)")

        calls.append(lambda: asyncio.run(with_psycopg()))
    if _installed("asyncpg"):
        import asyncpg

        async def with_asyncpg() -> None:
            con = await asyncpg.connect(host="127.0.0.1", port=postgres.port, user="postgres", database=DATABASE)
            await con.execute("SELECT pg_sleep(0.3)")
            await con.fetchval("SELECT pg_sleep($1)", 0.3)
            await con.close()

        calls.append(lambda: asyncio.run(with_asyncpg()))
    _, spans = traced(reporter, lambda: [call() for call in calls])
    assert len(spans) > 1 and spans[-1].op == "/test"
    for span in spans[:-1]:
        assert "pg_sleep" in _tags(span)["db.statement"] and span.end_time - span.start_time >= 250, span


# psycopg2

def test_psycopg2_keeps_the_callers_factories_and_real_objects(postgres: PostgresServer,
                                                               reporter: MemoryReporter) -> None:
    pytest.importorskip("psycopg2")
    import psycopg2.extensions
    import psycopg2.extras

    def call() -> Any:
        conn = psycopg2.connect(_dsn(postgres), connection_factory=psycopg2.extras.DictConnection)
        try:
            assert isinstance(conn, psycopg2.extras.DictConnection)
            assert isinstance(conn, psycopg2.extensions.connection)
            psycopg2.extras.register_default_json(conn)  # C-level type checks accept it
            cur = conn.cursor()
            assert isinstance(cur, psycopg2.extras.DictCursor)
            psycopg2.extras.execute_values(cur, "SELECT * FROM (VALUES %s) AS v (a, b)", [(1, 2), (3, 4)])
            rows = [dict(r) for r in cur.fetchall()]
            with get_context().new_exit_span(op="orm-layer", peer="somewhere"):
                cur.execute("SELECT 1")  # inside another exit span: not recorded twice
            return rows
        finally:
            conn.close()

    rows, spans = traced(reporter, call)
    assert rows == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]
    assert [s.op for s in spans] == ["PostgreSQL/Psycopg/execute", "orm-layer", "/test"]
    tags = _tags(spans[0])
    assert tags["db.statement"].startswith("SELECT * FROM (VALUES (1,2),(3,4))")
    assert "db.sql.parameters" not in tags  # plugin_sql_parameters_max_length is 0 by default
    assert spans[0].peer == f"127.0.0.1:{postgres.port}" and tags["db.instance"] == DATABASE


def test_psycopg2_server_gone_marks_the_span_and_raises_the_drivers_error(postgres: PostgresServer,
                                                                          reporter: MemoryReporter) -> None:
    psycopg2 = pytest.importorskip("psycopg2")
    conn = psycopg2.connect(_dsn(postgres))
    conn.autocommit = True
    raised: list[BaseException] = []

    def call() -> None:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            pid = cur.fetchone()[0]
            postgres.psql(f"SELECT pg_terminate_backend({pid})")
            try:
                cur.execute("SELECT 1")
            except psycopg2.OperationalError as e:
                raised.append(e)

    try:
        _, spans = traced(reporter, call)
    finally:
        conn.close()
    assert len(raised) == 1 and isinstance(raised[0], psycopg2.OperationalError)  # the driver's own error
    assert [s.op for s in spans] == ["PostgreSQL/Psycopg/execute"] * 2 + ["/test"]
    assert not spans[0].error_occurred and spans[1].error_occurred
    assert type(raised[0]).__name__ in spans[1].logs[0].items[0].val


def test_psycopg2_a_failure_of_the_plugin_runs_the_statement_untraced(postgres: PostgresServer,
                                                                      reporter: MemoryReporter,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    psycopg2 = pytest.importorskip("psycopg2")
    from skywalking.plugins import sw_psycopg2

    def broken(*args: Any) -> Any:
        raise RuntimeError("plugin bug")

    monkeypatch.setattr(sw_psycopg2, "exit_span", broken)
    conn = psycopg2.connect(_dsn(postgres))
    try:
        result, spans = traced(reporter, lambda: conn.cursor().execute("SELECT 1"))
    finally:
        conn.close()
    assert result is None and [s.op for s in spans] == ["/test"]


def test_psycopg2_uninstall_restores_connect(postgres: PostgresServer, reporter: MemoryReporter) -> None:
    psycopg2 = pytest.importorskip("psycopg2")
    import wrapt

    from skywalking.plugins.sw_psycopg2 import plugin

    assert plugin.installed and isinstance(psycopg2.connect, wrapt.FunctionWrapper)
    original = psycopg2.connect.__wrapped__
    plugin.uninstall()
    try:
        assert psycopg2.connect is original
        conn = psycopg2.connect(_dsn(postgres))
        assert type(conn) is psycopg2.extensions.connection
        _, spans = traced(reporter, lambda: conn.cursor().execute("SELECT 1"))
        conn.close()
        assert [s.op for s in spans] == ["/test"]
    finally:
        assert plugin.install()
    assert isinstance(psycopg2.connect, wrapt.FunctionWrapper)


# psycopg 3

def test_psycopg_stream_closed_early_ends_its_span(postgres: PostgresServer, reporter: MemoryReporter) -> None:
    psycopg = pytest.importorskip("psycopg")
    config.plugin_sql_parameters_max_length = 5

    def call() -> Any:
        conn = psycopg.connect(_dsn(postgres), autocommit=True)
        try:
            rows = conn.cursor().stream("SELECT generate_series(1, %s)", (100000,))
            first = next(rows)
            rows.close()  # psycopg cancels the rest (psycopg 3.1.0 leaves the connection unusable)
        finally:
            conn.close()
        with psycopg.connect(_dsn(postgres)) as other:
            return first[0], other.execute("SELECT 1").fetchone()[0]

    result, spans = traced(reporter, call)
    assert result == (1, 1)
    assert [s.op for s in spans] == ["PostgreSQL/Psycopg/stream", "PostgreSQL/Psycopg/execute", "/test"]
    assert not spans[0].error_occurred and spans[0].end_time >= spans[0].start_time
    assert _tags(spans[0])["db.sql.parameters"] == "[1000..."  # cut to plugin_sql_parameters_max_length


def test_psycopg_stream_read_after_its_request_ended(postgres: PostgresServer, reporter: MemoryReporter) -> None:
    """A streamed response body: stream() is called in the request, its rows are read after the request's span has
    ended. The rows all arrive, nothing is raised, and the stream gets a span of its own (review finding: reading
    it used to raise AttributeError at the end)."""
    psycopg = pytest.importorskip("psycopg")
    conn = psycopg.connect(_dsn(postgres), autocommit=True)
    try:
        with get_context().new_entry_span("/request"):
            rows = (r[0] for r in conn.cursor().stream("SELECT generate_series(1, 3)"))
        assert reporter.wait_for(1) and [s.op for s in reporter.segments[-1].spans] == ["/request"]
        assert list(rows) == [1, 2, 3]
    finally:
        conn.close()
    assert reporter.wait_for(2)
    assert [s.op for s in reporter.segments[-1].spans] == ["PostgreSQL/Psycopg/stream"]


def test_psycopg_async_error_is_reraised_untouched(postgres: PostgresServer, reporter: MemoryReporter) -> None:
    pytest.importorskip("psycopg")
    import psycopg.errors

    async def run() -> BaseException | None:
        async with await psycopg.AsyncConnection.connect(_dsn(postgres)) as conn:
            try:
                await conn.execute("SELEC 1")
            except psycopg.errors.SyntaxError as e:
                return e
        return None

    raised, spans = traced(reporter, lambda: asyncio.run(run()))
    assert type(raised) is psycopg.errors.SyntaxError
    assert [s.op for s in spans] == ["PostgreSQL/Psycopg/execute", "/test"]
    assert spans[0].error_occurred and "SyntaxError" in spans[0].logs[0].items[0].val


def test_psycopg_uninstall_restores_the_cursor_methods(postgres: PostgresServer, reporter: MemoryReporter) -> None:
    psycopg = pytest.importorskip("psycopg")
    import wrapt

    from skywalking.plugins.sw_psycopg import plugin

    assert plugin.installed and isinstance(psycopg.Cursor.__dict__["execute"], wrapt.FunctionWrapper)
    plugin.uninstall()
    try:
        assert not isinstance(psycopg.Cursor.__dict__["execute"], wrapt.FunctionWrapper)
        assert not isinstance(psycopg.AsyncCursor.__dict__["stream"], wrapt.FunctionWrapper)
        with psycopg.connect(_dsn(postgres)) as conn:
            _, spans = traced(reporter, lambda: conn.execute("SELECT 1"))
        assert [s.op for s in spans] == ["/test"]
    finally:
        assert plugin.install()
    assert isinstance(psycopg.Cursor.__dict__["execute"], wrapt.FunctionWrapper)


# asyncpg

def test_asyncpg_pool_release_is_not_traced_and_plugin_failure_is_harmless(postgres: PostgresServer,
                                                                           reporter: MemoryReporter,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    asyncpg = pytest.importorskip("asyncpg")
    from skywalking.plugins import sw_asyncpg

    async def run() -> Any:
        pool = await asyncpg.create_pool(host="127.0.0.1", port=postgres.port, user="postgres", database=DATABASE,
                                         min_size=1, max_size=1)
        try:
            async with pool.acquire() as con:
                value = await con.fetchval("SELECT $1::int", 7)
            with monkeypatch.context() as patch:
                patch.setattr(sw_asyncpg, "exit_span", lambda *a: 1 / 0)
                async with pool.acquire() as con:
                    return value, await con.fetchval("SELECT 8")
        finally:
            await pool.close()

    result, spans = traced(reporter, lambda: asyncio.run(run()))
    assert result == (7, 8)
    assert [s.op for s in spans] == ["PostgreSQL/AsyncPG/bind_execute", "/test"]
    assert spans[0].peer == f"127.0.0.1:{postgres.port}" and _tags(spans[0])["db.statement"] == "SELECT $1::int"


def test_asyncpg_uninstall_restores_the_protocol(postgres: PostgresServer, reporter: MemoryReporter) -> None:
    pytest.importorskip("asyncpg")
    import asyncpg.protocol
    import wrapt

    from skywalking.plugins.sw_asyncpg import plugin

    assert plugin.installed and isinstance(asyncpg.protocol.Protocol.__dict__["query"], wrapt.FunctionWrapper)
    plugin.uninstall()
    try:
        assert "query" not in asyncpg.protocol.Protocol.__dict__  # inherited from the Cython base again
        assert "__init__" not in asyncpg.protocol.Protocol.__dict__

        async def run() -> None:
            con = await asyncpg.connect(host="127.0.0.1", port=postgres.port, user="postgres", database=DATABASE)
            await con.execute("SELECT 1")
            await con.fetchval("SELECT $1::int", 1)
            await con.close()

        _, spans = traced(reporter, lambda: asyncio.run(run()))
        assert [s.op for s in spans] == ["/test"]
    finally:
        assert plugin.install()
    assert isinstance(asyncpg.protocol.Protocol.__dict__["query"], wrapt.FunctionWrapper)
