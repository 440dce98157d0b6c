"""sw_pymysql and sw_mysqlclient against a real MariaDB server on 127.0.0.1 (tools/mariadb.py, shared with the DB
benchmark: started on a free port with a data directory in a temp dir, a test database, a second one and a user made
at start; the binary comes from tools/mariadb-server.sh, which installs Debian's package when there is none).
Without a server the tests skip, or fail when CI or SW_REQUIRE_MYSQL is set. Every test runs once per library
(``-k pymysql`` / ``-k mysqlclient``); a library that is not installed skips its half.

The service test runs apps/mysql_app.py called with sw6 by a traced caller and checks expected/<library>.json; the
in-process tests check what the file cannot: parameters off by default, errors (bad SQL, a connection killed by the
server), ``executemany`` with an iterator, our own failures, exit-span nesting, peers of other setups, uninstall."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, NoReturn

import pytest

from skywalking import config
from skywalking.reporter.memory import MemoryReporter
from skywalking.trace.context import get_context
from tests.plugins.harness import Services, port_of, traced
from tests.plugins.servers import unavailable
from tools.mariadb import MariaDB, Unavailable, account_sql

HERE = Path(__file__).parent
APP = HERE / "apps" / "mysql_app.py"
USER, PASSWORD, DATABASE, OTHER = "sw", "sw-secret", "sw_test", "sw_other"
LIBRARIES = ("pymysql", "mysqlclient")
INIT_SQL = account_sql(USER, PASSWORD, DATABASE, OTHER) + f"""
CREATE OR REPLACE TABLE {DATABASE}.sw_pymysql (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(64) NOT NULL,
                                               qty INT NOT NULL);
CREATE OR REPLACE TABLE {DATABASE}.sw_mysqlclient (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(64) NOT NULL,
                                                   qty INT NOT NULL);
CREATE OR REPLACE TABLE {DATABASE}.sw_rows (n INT NOT NULL);
"""


@dataclass(frozen=True)
class Library:
    name: str  # pymysql or mysqlclient
    module: str  # what the application imports
    plugin: str
    op: str  # operation name prefix
    component: int

    def load(self) -> Any:
        return pytest.importorskip(self.module)


KINDS = {"pymysql": Library("pymysql", "pymysql", "sw_pymysql", "Mysql/PyMySQL", 7003),
         "mysqlclient": Library("mysqlclient", "MySQLdb", "sw_mysqlclient", "Mysql/MysqlClient", 7013)}


def _unavailable(why: str) -> NoReturn:
    unavailable("MariaDB server", "SW_REQUIRE_MYSQL", why)


@pytest.fixture(scope="module")
def mariadb() -> Iterator[MariaDB]:
    if not any(importlib.util.find_spec(kind.module) for kind in KINDS.values()):
        pytest.skip("neither PyMySQL nor mysqlclient is installed")
    try:
        server = MariaDB.start(INIT_SQL)
    except Unavailable as e:
        _unavailable(str(e))
        raise
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=LIBRARIES)
def lib(request: pytest.FixtureRequest) -> Library:
    kind = KINDS[request.param]
    kind.load()
    return kind


# -- the service, its caller and the collector ------------------------------------------------------------------

@pytest.mark.parametrize("name", LIBRARIES)
def test_statements_of_a_request_and_of_a_pooled_connection_are_exit_spans(name: str, mariadb: MariaDB) -> None:
    KINDS[name].load()
    with Services() as services:
        front = port_of(services.python(APP, name, mariadb.port, USER, PASSWORD, DATABASE, OTHER,
                                        name=f"plugin-{name}", SW_PLUGIN_SQL_PARAMETERS_MAX_LENGTH="32"))
        answer = services.call_front(front, "/mysql")
        assert answer == {"rows": [["apple", 3], ["pear", 11], ["plum", 22]], "long": 50,
                          "error": ["ProgrammingError", 1146], "database": OTHER}, answer
        for _ in range(2):  # the same connection, taken from the pool by two requests
            assert services.call_front(front, "/reuse") == {"count": 3}
        services.check(f"{name}.json", segments=6, front=front, mysql=mariadb.port)


# -- in this process ----------------------------------------------------------------------------------------------

@pytest.fixture
def db(lib: Library, mariadb: MariaDB, reporter: MemoryReporter) -> Iterator[Any]:
    """A connection to the test database (the agent started first, so the library is patched)."""
    conn = lib.load().connect(host="127.0.0.1", port=mariadb.port, user=USER, password=PASSWORD, database=DATABASE)
    yield conn
    try:
        conn.close()
    except Exception:  # already closed by the test, or killed
        pass


def _tags(span: Any) -> dict[str, str]:
    return {tag.key: tag.val for tag in span.tags}


def test_span_shape_and_no_parameters_by_default(lib: Library, db: Any, reporter: MemoryReporter,
                                                 mariadb: MariaDB) -> None:
    def call() -> Any:
        cur = db.cursor()
        cur.execute("SELECT %s + %s", (1, 2))
        return cur.fetchone()[0]

    result, spans = traced(reporter, call)
    assert result == 3
    span = spans[0]
    assert (span.op, span.peer, span.component.value, span.layer.name) == (
        f"{lib.op}/execute", f"127.0.0.1:{mariadb.port}", lib.component, "Database")
    assert _tags(span) == {"db.type": "mysql", "db.instance": DATABASE, "db.statement": "SELECT %s + %s"}
    assert not span.error_occurred and span.end_time >= span.start_time


def test_error_marks_the_span_and_is_reraised_untouched(lib: Library, db: Any, reporter: MemoryReporter) -> None:
    module = lib.load()
    raised: list[BaseException] = []

    def call() -> None:
        try:
            db.cursor().execute("SELECT * FROM no_such_table")
        except module.ProgrammingError as e:
            raised.append(e)

    _, spans = traced(reporter, call)
    assert len(raised) == 1 and type(raised[0]) is module.ProgrammingError and raised[0].args[0] == 1146
    assert "no_such_table" in str(raised[0].args[1])
    assert spans[0].error_occurred and "ProgrammingError" in spans[0].logs[0].items[0].val


def test_a_connection_the_server_killed_is_an_error_span(lib: Library, db: Any, reporter: MemoryReporter,
                                                          mariadb: MariaDB) -> None:
    module = lib.load()
    cur = db.cursor()
    cur.execute("SELECT CONNECTION_ID()")
    victim = cur.fetchone()[0]
    other = module.connect(host="127.0.0.1", port=mariadb.port, user=USER, password=PASSWORD, database=DATABASE)
    try:
        killer = other.cursor()
        killer.execute(f"KILL {victim}")
        for _ in range(100):  # KILL returns before the connection is gone
            killer.execute(f"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {victim}")
            if killer.fetchone()[0] == 0:
                break
            time.sleep(0.05)
    finally:
        other.close()
    raised: list[BaseException] = []

    def call() -> None:
        try:
            cur.execute("SELECT 1")
        except module.OperationalError as e:
            raised.append(e)

    _, spans = traced(reporter, call)
    assert len(raised) == 1 and type(raised[0]) is module.OperationalError, raised
    assert raised[0].args[0] in (1927, 2006, 2013, 4031), raised[0]  # killed / gone away / lost / disconnected
    assert [s.op for s in spans] == [f"{lib.op}/execute", "/test"]
    assert spans[0].error_occurred and "OperationalError" in spans[0].logs[0].items[0].val


def test_executemany_is_one_span_with_its_first_row(lib: Library, db: Any, reporter: MemoryReporter) -> None:
    config.plugin_sql_parameters_max_length = 64
    module = lib.load()

    def call() -> Any:
        cur = db.cursor(module.cursors.SSCursor)  # a subclass: traced through the inherited methods
        cur.execute("DELETE FROM sw_rows")
        cur.executemany("INSERT INTO sw_rows (n) VALUES (%s)", [(1,), (2,), (3,)])
        cur.executemany("UPDATE sw_rows SET n = n * 10 WHERE n = %s", [(1,), (2,)])
        cur.executemany("INSERT INTO sw_rows (n) VALUES (%s)", ((n,) for n in (4, 5)))  # an iterator: not read
        cur.execute("SELECT n FROM sw_rows ORDER BY n")
        rows = [row[0] for row in cur.fetchall()]
        db.commit()
        return rows

    rows, spans = traced(reporter, call)
    assert rows == [3, 4, 5, 10, 20]
    assert [(s.op, _tags(s).get("db.sql.parameters")) for s in spans] == [
        (f"{lib.op}/execute", None), (f"{lib.op}/executemany", "[1]"), (f"{lib.op}/executemany", "[1]"),
        (f"{lib.op}/executemany", None), (f"{lib.op}/execute", None), ("/test", None)]
    assert _tags(spans[1])["db.statement"] == "INSERT INTO sw_rows (n) VALUES (%s)"


def test_nothing_inside_an_exit_span(lib: Library, db: Any, reporter: MemoryReporter) -> None:
    def call() -> Any:
        with get_context().new_exit_span(op="orm", peer="somewhere"):
            cur = db.cursor()
            cur.execute("SELECT 1")
            return cur.fetchone()[0]

    result, spans = traced(reporter, call)
    assert result == 1
    assert [s.op for s in spans] == ["orm", "/test"]


def test_a_failure_of_the_plugin_runs_the_statement_untraced(lib: Library, db: Any, reporter: MemoryReporter,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    plugin_module = importlib.import_module(f"skywalking.plugins.{lib.plugin}")

    def broken(*args: Any) -> Any:
        raise RuntimeError("plugin bug")

    monkeypatch.setattr(plugin_module._sql, "exit_span", broken)

    def call() -> Any:
        cur = db.cursor()
        cur.execute("SELECT 7")
        cur.executemany("SELECT %s", [(1,)])
        return cur.fetchone()[0]

    result, spans = traced(reporter, call)
    assert result == 1
    assert [s.op for s in spans] == ["/test"]


def test_pymysql_peer_of_a_unix_socket_and_a_selected_database(reporter: MemoryReporter) -> None:
    from skywalking.plugins.sw_pymysql import _selected, _span

    class Conn:
        pass

    conn = Conn()
    conn.__dict__.update(host="localhost", port=3306, unix_socket="/run/mysqld/mysqld.sock", db=b"shop")
    cursor = SimpleNamespace(connection=conn)
    with get_context().new_local_span("/test"):
        span = _span(cursor, "execute", ("SELECT 1",), {})
        assert span is not None and span.peer == "/run/mysqld/mysqld.sock"
        assert _tags(span)["db.instance"] == "shop"
        conn.unix_socket = None
        _selected[conn] = "other"
        span = _span(cursor, "execute", (), {"query": "SELECT 1"})
        assert span is not None and span.peer == "localhost:3306" and _tags(span)["db.instance"] == "other"
        assert _span(SimpleNamespace(connection=None), "execute", ("SELECT 1",), {}) is None  # closed cursor


def test_mysqlclient_peer_from_the_connect_arguments(reporter: MemoryReporter) -> None:
    from skywalking.plugins.sw_mysqlclient import _address, _connection_address, _where

    class Conn:
        pass

    def peer(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any, Any]:
        conn = Conn()
        _where[conn] = _address(args, kwargs)
        return _connection_address(conn)

    assert peer(("db.internal", "u", "p", "shop", 3307), {}) == ("db.internal", 3307, "shop")
    assert peer((), {"host": "::1", "db": "shop", "passwd": "p"}) == ("::1", 3306, "shop")
    assert peer((), {"unix_socket": "/run/mysqld/mysqld.sock", "database": "shop"}) == (
        "/run/mysqld/mysqld.sock", None, "shop")
    assert peer((), {"host": "10.0.0.5", "unix_socket": "/tmp/s"}) == ("10.0.0.5", 3306, None)
    assert peer((), {}) == ("localhost", 3306, None)
    later = Conn()  # made before the plugin was installed: mysqlclient 2.2+ attributes
    later.__dict__.update(host="127.0.0.1", port=3310, database="shop")
    assert _connection_address(later) == ("127.0.0.1", 3310, "shop")


def test_mysqlclient_leaves_pymysql_installed_as_mysqldb_to_sw_pymysql(monkeypatch: pytest.MonkeyPatch) -> None:
    from skywalking.plugins.sw_mysqlclient import MysqlclientPlugin

    monkeypatch.setitem(sys.modules, "MySQLdb", ModuleType("pymysql"))  # what pymysql.install_as_MySQLdb() does
    plugin = MysqlclientPlugin()
    try:
        plugin._install()
        assert plugin._wrapped == []
    finally:
        plugin._restore()


def test_uninstall_restores_the_originals(lib: Library, mariadb: MariaDB, reporter: MemoryReporter) -> None:
    import wrapt

    from skywalking import plugins

    module = lib.load()
    plugin = plugins.load(lib.plugin)
    assert plugin is not None
    if lib.name == "pymysql":
        owners = [(module.cursors.Cursor, "execute"), (module.cursors.Cursor, "executemany"),
                  (module.connections.Connection, "select_db")]
    else:
        owners = [(module.cursors.BaseCursor, "execute"), (module.cursors.BaseCursor, "executemany"),
                  (module.connections.Connection, "__init__"), (module.connections.Connection, "select_db")]
    wrapped = [vars(owner)[name] for owner, name in owners]
    assert plugin.installed and all(isinstance(w, wrapt.FunctionWrapper) for w in wrapped)
    plugin.uninstall()
    try:
        for (owner, name), w in zip(owners, wrapped, strict=True):
            if name == "select_db" and lib.name == "mysqlclient":  # inherited from the C connection: ours deleted
                assert name not in vars(owner)
            else:
                assert vars(owner)[name] is w.__wrapped__
        conn = module.connect(host="127.0.0.1", port=mariadb.port, user=USER, password=PASSWORD, database=DATABASE)
        _, spans = traced(reporter, lambda: conn.cursor().execute("SELECT 1"))
        conn.close()
        assert [s.op for s in spans] == ["/test"]
    finally:
        assert plugin.install()
    assert isinstance(vars(owners[0][0])["execute"], wrapt.FunctionWrapper)
