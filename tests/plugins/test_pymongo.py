"""sw_pymongo against the MongoDB protocol stand-in (tests/plugins/standins/mongo.py: OP_MSG and OP_QUERY over TCP
on 127.0.0.1, documents in memory); no MongoDB server installs here.

The service test runs apps/pymongo_app.py (stand-in in its own process) called with sw6 by a traced caller and
checks expected/pymongo.json; the in-process tests (stand-in in a thread) check what the file cannot: span timing,
handshake/hello/auth commands left out, parameters off / on / cut, errors and the exceptions pymongo raises, the
caller's own listeners and exit spans, our own failures, the async client, uninstall."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from skywalking import config
from skywalking.reporter.memory import MemoryReporter
from skywalking.trace.context import get_context
from tests.plugins.harness import Services, port_of, serve, traced

pytest.importorskip("pymongo")  # every test here drives pymongo

if TYPE_CHECKING:
    from tests.plugins.standins.mongo import MongoStandIn  # imports bson, which comes with pymongo

HERE = Path(__file__).parent
APP = HERE / "apps" / "pymongo_app.py"


@pytest.fixture(scope="module")
def standin() -> Iterator[MongoStandIn]:
    pytest.importorskip("pymongo")
    from tests.plugins.standins.mongo import MongoStandIn

    yield from serve(lambda: MongoStandIn().start())


# -- the service, its caller and the collector ------------------------------------------------------------------

def test_commands_cursors_and_writes_are_exit_spans() -> None:
    pytest.importorskip("pymongo")
    with Services() as services:
        mongo = port_of(services.python("-m", "tests.plugins.standins.mongo", "--port", 0))
        front = port_of(services.python(APP, mongo, name="plugin-pymongo", SW_PLUGIN_PYMONGO_TRACE_PARAMETERS="true",
                                        SW_PLUGIN_PYMONGO_PARAMETERS_MAX_LENGTH="80"))
        answer = services.call_front(front, "/mongo")
        assert answer == {"inserted": [1, 2, 3, 4, 5], "found": [1, 2, 3, 4, 5], "updated": 1, "updated_many": 2,
                          "deleted": 1, "aggregated": [4, 5], "bulk": [1, 1, 1],
                          "unknown": ["OperationFailure", 59], "duplicate": ["DuplicateKeyError", 11000],
                          "found_one": {"_id": 1, "n": 1, "tag": "one"}}, answer
        services.check("pymongo.json", segments=2, front=front, mongo=mongo)


# -- in this process ----------------------------------------------------------------------------------------------

@pytest.fixture
def client(standin: MongoStandIn, reporter: MemoryReporter) -> Iterator[Any]:
    """A client made while the plugin is installed (the agent started by ``reporter``)."""
    import pymongo

    c = pymongo.MongoClient("127.0.0.1", standin.port, serverSelectionTimeoutMS=5000)
    yield c
    c.close()


def _tags(span: Any) -> dict[str, str]:
    return {t.key: t.val for t in span.tags}


def _fill(collection: Any, count: int) -> None:
    collection.drop()
    collection.insert_many([{"_id": i, "n": i} for i in range(count)])


def test_a_cursor_gets_a_span_per_get_more(client: Any, standin: MongoStandIn, reporter: MemoryReporter) -> None:
    items = client.sw_cursor.items
    _fill(items, 7)
    rows, spans = traced(reporter, lambda: [d["n"] for d in items.find({}, batch_size=3)])
    assert rows == list(range(7))
    assert [s.op for s in spans] == ["MongoDB/FindOperation", "MongoDB/GetMoreOperation",
                                     "MongoDB/GetMoreOperation", "/test"]
    for span in spans[:3]:
        assert span.peer == standin.address and span.component.value == 9 and span.layer.name == "Database"
        assert span.kind.name == "Exit" and span.pid == spans[-1].sid and not span.error_occurred
    assert [_tags(s) for s in spans[:3]] == [
        {"db.type": "MongoDB", "db.instance": "sw_cursor", "db.statement": "find"},
        {"db.type": "MongoDB", "db.instance": "sw_cursor", "db.statement": "getMore"},
        {"db.type": "MongoDB", "db.instance": "sw_cursor", "db.statement": "getMore"}]
    # an abandoned cursor: killCursors, sent in the caller's thread by close()
    cursor = items.find({}, batch_size=2)
    _, spans = traced(reporter, lambda: (next(cursor), cursor.close()))
    assert [s.op for s in spans] == ["MongoDB/FindOperation", "MongoDB/KillCursorsOperation", "/test"]


def test_span_lasts_until_the_reply(client: Any, reporter: MemoryReporter) -> None:
    _, spans = traced(reporter, lambda: client.admin.command("sleep", 1, millis=300))
    assert [s.op for s in spans] == ["MongoDB/SleepOperation", "/test"]
    assert spans[0].end_time - spans[0].start_time >= 250, spans[0]  # a send-only span would last ~0 ms


def test_no_span_for_handshakes_hello_auth_or_cleanup_outside_a_trace(standin: MongoStandIn,
                                                                      reporter: MemoryReporter) -> None:
    import pymongo

    before = len(standin.commands())

    def calls() -> None:
        c = pymongo.MongoClient("127.0.0.1", standin.port, serverSelectionTimeoutMS=5000)
        c.admin.command("hello")
        c.admin.command("isMaster")
        c.admin.command("ismaster")
        try:
            c.admin.command("saslStart", 1, mechanism="PLAIN", payload=b"")
        except pymongo.errors.OperationFailure:
            pass
        c.admin.command("ping")
        c.sw_quiet.items.insert_many([{"n": i} for i in range(3)])
        cursors.append(c.sw_quiet.items.find(batch_size=1))
        next(cursors[-1])
        clients.append(c)

    cursors: list[Any] = []
    clients: list[Any] = []
    _, spans = traced(reporter, calls)
    assert [s.op for s in spans] == ["MongoDB/PingOperation", "MongoDB/InsertOperation", "MongoDB/FindOperation",
                                     "/test"]
    cursors[0].close()  # outside any trace: pymongo's clean-up gets no span and no segment of its own
    clients[0].close()  # endSessions
    received = standin.commands()[before:]
    for name in ("hello", "isMaster", "ismaster", "saslStart", "killCursors", "endSessions"):
        assert name in received, received  # they did reach the server
    # three sent by hand, and the handshakes of the monitor's and the pool's connections
    assert sum(received.count(name) for name in ("hello", "isMaster", "ismaster")) >= 5, received
    assert len(reporter.segments) == 1


def test_parameters_on_and_cut(client: Any, reporter: MemoryReporter) -> None:
    from bson.objectid import ObjectId

    items = client.sw_params.items
    items.drop()
    config.plugin_pymongo_trace_parameters = True
    config.plugin_pymongo_parameters_max_length = 200
    oid = ObjectId("65a000000000000000000001")

    def calls() -> None:
        items.insert_one({"_id": oid, "name": "a"})
        items.find_one({"name": {"$in": ["a", "b"]}})
        items.update_one({"_id": oid}, {"$set": {"name": "b"}})
        items.delete_many({"name": "b"})
        list(items.aggregate([{"$match": {"name": "z"}}]))

    _, spans = traced(reporter, calls)
    statements = [_tags(s)["db.statement"] for s in spans[:-1]]
    assert statements[0] == ('insert {"insert": "items", "ordered": true, '
                             '"documents": [{"_id": {"$oid": "65a000000000000000000001"}, "name": "a"}]}')
    assert statements[1] == ('find {"find": "items", "filter": {"name": {"$in": ["a", "b"]}}, "limit": 1, '
                             '"singleBatch": true}')
    assert statements[2].startswith('update {"update": "items", "ordered": true') and \
        '"q": {"_id": {"$oid": "65a000000000000000000001"}}, "u": {"$set": {"name": "b"}}' in statements[2]
    assert statements[3].startswith('delete {"delete": "items"') and '"q": {"name": "b"}, "limit": 0' in statements[3]
    assert statements[4] == 'aggregate {"aggregate": "items", "pipeline": [{"$match": {"name": "z"}}], "cursor": {}}'
    assert all("lsid" not in s and "$db" not in s for s in statements)

    config.plugin_pymongo_parameters_max_length = 30  # cut: the command name stays whole
    big = [{"_id": i, "text": "x" * 1000} for i in range(100)]
    _, spans = traced(reporter, lambda: items.insert_many(big))
    assert _tags(spans[0])["db.statement"] == 'insert {"insert": "items", "ordered":...'

    config.plugin_pymongo_trace_parameters = False
    _, spans = traced(reporter, lambda: items.find_one({"secret": "s3cr3t"}))
    assert _tags(spans[0])["db.statement"] == "find"


def test_errors_mark_the_span_and_pymongos_exception_is_untouched(client: Any, reporter: MemoryReporter) -> None:
    from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

    items = client.sw_errors.items
    _fill(items, 2)
    raised: list[BaseException] = []

    def calls() -> None:
        for call in (lambda: client.sw_errors.command("noSuchCommand"), lambda: items.insert_one({"_id": 1}),
                     lambda: items.insert_many([{"_id": 5}, {"_id": 0}]),
                     lambda: list(items.aggregate([{"$nope": {}}]))):
            try:
                call()
            except OperationFailure as e:
                raised.append(e)
        items.find_one({"_id": 1})  # fine again

    _, spans = traced(reporter, calls)
    assert [type(e) for e in raised] == [OperationFailure, DuplicateKeyError, BulkWriteError, OperationFailure]
    assert raised[0].code == 59 and raised[1].code == 11000 and raised[3].code == 40324
    assert [s.op for s in spans] == ["MongoDB/NoSuchCommandOperation", "MongoDB/InsertOperation",
                                     "MongoDB/InsertOperation", "MongoDB/AggregateOperation",
                                     "MongoDB/FindOperation", "/test"]
    assert [s.error_occurred for s in spans] == [True, True, True, True, False, False]
    failed = spans[0].logs[0].items[0]
    assert failed.key == "Traceback" and "OperationFailure" in failed.val and "no such command" in failed.val
    written = {item.key: item.val for item in spans[1].logs[0].items}
    assert written["error.kind"] == "WriteError" and written["message"].startswith("11000: E11000 duplicate key")
    assert "E11000" in {item.key: item.val for item in spans[2].logs[0].items}["message"]


def test_a_broken_connection_is_an_error_span(reporter: MemoryReporter) -> None:
    pymongo = pytest.importorskip("pymongo")
    from pymongo.errors import AutoReconnect

    from tests.plugins.standins.mongo import MongoStandIn

    with MongoStandIn() as server:
        c = pymongo.MongoClient("127.0.0.1", server.port, serverSelectionTimeoutMS=2000, retryReads=False,
                                retryWrites=False)
        try:
            c.admin.command("ping")
            raised: list[BaseException] = []

            def call() -> None:
                server._server.drop_connections()  # the next command finds its connection closed
                try:
                    c.admin.command("ping")
                except AutoReconnect as e:
                    raised.append(e)

            _, spans = traced(reporter, call)
        finally:
            c.close()
    assert len(raised) == 1 and isinstance(raised[0], AutoReconnect)
    assert [s.op for s in spans] == ["MongoDB/PingOperation", "/test"] and spans[0].error_occurred
    # the exception pymongo was handling when it reported the failure (an OSError before pymongo 4.9 wraps it)
    assert "connection closed" in spans[0].logs[0].items[0].val


def test_the_callers_listeners_and_exit_spans_are_kept(standin: MongoStandIn, reporter: MemoryReporter) -> None:
    import pymongo
    from pymongo import monitoring

    seen: list[str] = []

    class Mine(monitoring.CommandListener):
        def started(self, event: Any) -> None:
            seen.append(event.command_name)

        def succeeded(self, event: Any) -> None:
            pass

        def failed(self, event: Any) -> None:
            pass

    mine = Mine()
    c = pymongo.MongoClient("127.0.0.1", standin.port, event_listeners=(mine,))
    try:
        listeners = c.options.event_listeners
        assert listeners[0] is mine and len(listeners) == 2  # theirs first, ours added

        def calls() -> None:
            c.admin.command("ping")
            with get_context().new_exit_span(op="odm-layer", peer="somewhere"):
                c.admin.command("ping")  # inside another exit span: that span stands for the call

        _, spans = traced(reporter, calls)
    finally:
        c.close()
    assert seen[:2] == ["ping", "ping"]
    assert [s.op for s in spans] == ["MongoDB/PingOperation", "odm-layer", "/test"]


def test_a_failure_of_the_plugin_runs_the_command_untraced(client: Any, reporter: MemoryReporter,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from skywalking.plugins import sw_pymongo

    def broken(*args: Any) -> Any:
        raise RuntimeError("plugin bug")

    items = client.sw_broken.items
    items.drop()
    with monkeypatch.context() as patched:
        patched.setattr(sw_pymongo, "_op", broken)  # no span can be made
        result, spans = traced(reporter, lambda: (items.insert_one({"_id": 1}).inserted_id,
                                                   items.find_one({"_id": 1})))
    assert result == (1, {"_id": 1}) and [s.op for s in spans] == ["/test"]
    monkeypatch.setattr(sw_pymongo, "_write_error", broken)  # the reply cannot be read: the span still ends
    result, spans = traced(reporter, lambda: items.find_one({"_id": 1}))
    assert result == {"_id": 1} and [s.op for s in spans] == ["MongoDB/FindOperation", "/test"]
    assert not spans[0].error_occurred and spans[0].end_time >= spans[0].start_time


def test_async_client(standin: MongoStandIn, reporter: MemoryReporter) -> None:
    pymongo = pytest.importorskip("pymongo")
    if not hasattr(pymongo, "AsyncMongoClient"):
        pytest.skip(f"no AsyncMongoClient in pymongo {pymongo.version}")
    from pymongo.errors import OperationFailure

    async def calls() -> list[Any]:
        c = pymongo.AsyncMongoClient("127.0.0.1", standin.port)
        try:
            items = c.sw_async.items
            await items.drop()
            await items.insert_many([{"_id": i} for i in range(5)])
            found = [d["_id"] async for d in items.find({}, batch_size=2)]
            try:
                await c.sw_async.command("noSuchCommand")
            except OperationFailure:
                found.append("failed")
            return found
        finally:
            await c.close()

    result, spans = traced(reporter, lambda: asyncio.run(calls()))
    assert result == [0, 1, 2, 3, 4, "failed"]
    assert [s.op for s in spans] == ["MongoDB/DropOperation", "MongoDB/InsertOperation", "MongoDB/FindOperation",
                                     "MongoDB/GetMoreOperation", "MongoDB/GetMoreOperation",
                                     "MongoDB/NoSuchCommandOperation", "MongoDB/EndSessionsOperation", "/test"]
    assert [s.error_occurred for s in spans[:-1]] == [False] * 5 + [True, False]
    assert all(s.peer == standin.address and s.pid == spans[-1].sid for s in spans[:-1])


def test_uninstall_restores_the_client_and_silences_existing_ones(client: Any, standin: MongoStandIn,
                                                                  reporter: MemoryReporter) -> None:
    import pymongo
    import wrapt

    from skywalking.plugins.sw_pymongo import plugin

    init = pymongo.MongoClient.__dict__["__init__"]
    assert plugin.installed and isinstance(init, wrapt.FunctionWrapper)
    plugin.uninstall()
    try:
        assert pymongo.MongoClient.__dict__["__init__"] is init.__wrapped__
        fresh = pymongo.MongoClient("127.0.0.1", standin.port)
        assert len(fresh.options.event_listeners) == 0
        _, spans = traced(reporter, lambda: (fresh.admin.command("ping"), client.admin.command("ping")))
        fresh.close()
        assert [s.op for s in spans] == ["/test"]  # the client made before: its listener does nothing now
    finally:
        assert plugin.install()
    assert isinstance(pymongo.MongoClient.__dict__["__init__"], wrapt.FunctionWrapper)
    _, spans = traced(reporter, lambda: client.admin.command("ping"))
    assert [s.op for s in spans] == ["MongoDB/PingOperation", "/test"]


def test_peers_and_a_command_that_never_reported_its_end(reporter: MemoryReporter) -> None:
    """Older pymongo reports no failure when a ``BaseException`` (``KeyboardInterrupt``, a gevent timeout) stops a
    command: the next command in that context ends the forgotten span, so the caller is not left inside it."""
    pytest.importorskip("pymongo")
    from types import SimpleNamespace

    from skywalking.plugins import sw_pymongo

    assert sw_pymongo._peer(("::1", 27017)) == "[::1]:27017"
    assert sw_pymongo._peer(("/tmp/mongodb-27017.sock", None)) == "/tmp/mongodb-27017.sock"
    assert sw_pymongo._peer(None) is None

    listener = sw_pymongo._listener

    def event(name: str) -> Any:
        return SimpleNamespace(command_name=name, database_name="db", command={name: 1},
                               connection_id=("127.0.0.1", 27017), reply={"ok": 1}, failure={"ok": 0})

    def calls() -> None:
        listener.started(event("find"))  # ... and interrupted
        listener.started(event("ping"))
        listener.succeeded(event("ping"))
        listener.succeeded(event("ping"))  # nothing open any more: ignored

    _, spans = traced(reporter, calls)
    assert [(s.op, s.error_occurred) for s in spans] == [
        ("MongoDB/FindOperation", True), ("MongoDB/PingOperation", False), ("/test", False)]
    assert spans[0].end_time <= spans[1].start_time and spans[1].pid == spans[2].sid
