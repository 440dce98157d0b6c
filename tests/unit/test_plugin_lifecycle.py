"""Every shipped plugin, found through ``skywalking.plugins.discover()`` (a new plugin is covered without an edit
here): install, install again (patched once, not twice), uninstall (the exact original objects are back where
they were patched), install and uninstall once more; and where a call through the library can be made offline
(local servers on 127.0.0.1), the call records nothing before install, something once installed, the same
after the second install, and nothing after uninstall. Plugins whose library is not importable are skipped."""

from __future__ import annotations

import asyncio
import http.server
import importlib
import logging
import os
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import wrapt

from skywalking import plugins
from skywalking.plugins import Plugin
from skywalking.reporter.memory import MemoryReporter

MISSING = object()


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    """An http.server on 127.0.0.1 (traced only while sw_http_server is the plugin under test)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/lifecycle"
    server.shutdown()
    server.server_close()


@dataclass
class Ctx:
    reporter: MemoryReporter
    url: str

    def spans(self, call: Callable[[], Any], expect: bool) -> int:
        """Spans recorded by ``call()`` (in every segment it caused, also on server threads)."""
        before = self.reporter.count
        call()
        if expect:
            self.reporter.wait_for(before + 1, 5)
            last = -1
            while last != self.reporter.count:  # settled: no more segments arriving
                last = self.reporter.count
                time.sleep(0.15)
        else:
            time.sleep(0.3)
        return sum(len(seg.spans) for seg in list(self.reporter.segments)[before:])


# -- calls through each library, offline; the number of effects (spans, or records carrying the trace id) ------

def _urllib_request(ctx: Ctx, expect: bool) -> int:
    import urllib.request

    def call() -> None:
        with urllib.request.urlopen(ctx.url, timeout=5) as resp:
            assert resp.read() == b"ok"

    return ctx.spans(call, expect)


def _requests(ctx: Ctx, expect: bool) -> int:
    import requests

    return ctx.spans(lambda: requests.get(ctx.url, timeout=5).raise_for_status(), expect)


def _urllib3(ctx: Ctx, expect: bool) -> int:
    import urllib3

    return ctx.spans(lambda: urllib3.PoolManager().request("GET", ctx.url, timeout=5), expect)


def _httpx(ctx: Ctx, expect: bool) -> int:
    import httpx

    return ctx.spans(lambda: httpx.get(ctx.url, timeout=5).raise_for_status(), expect)


def _aiohttp(ctx: Ctx, expect: bool) -> int:
    import aiohttp

    async def fetch() -> None:
        async with aiohttp.ClientSession() as session, session.get(ctx.url) as resp:
            assert await resp.text() == "ok"

    return ctx.spans(lambda: asyncio.run(fetch()), expect)


def _flask(ctx: Ctx, expect: bool) -> int:
    import flask

    app = flask.Flask("lifecycle")
    app.add_url_rule("/lifecycle", "lifecycle", lambda: "ok")
    return ctx.spans(lambda: app.test_client().get("/lifecycle"), expect)


def _starlette(ctx: Ctx, expect: bool) -> int:
    """One HTTP request straight into the ASGI application (no server, no test client)."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    app = Starlette(routes=[Route("/lifecycle", lambda request: PlainTextResponse("ok"))])
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": "/lifecycle", "raw_path": b"/lifecycle", "query_string": b"", "root_path": "", "headers": [],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    def call() -> None:
        asyncio.run(app(scope, receive, send))
        assert sent[0]["status"] == 200

    return ctx.spans(call, expect)


def _redis(ctx: Ctx, expect: bool) -> int:
    """A refused connection (no server needed): the command's exit span records the error."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    def call() -> None:
        with pytest.raises(redis.ConnectionError):
            redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)).get("k")

    return ctx.spans(call, expect)


def _grpc(ctx: Ctx, expect: bool) -> int:
    """A server and a channel made after (un)install: the server's entry span and the client's exit span."""
    from concurrent import futures

    import grpc

    def call() -> None:
        echo = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
        server = grpc.server(futures.ThreadPoolExecutor(2),
                             handlers=[grpc.method_handlers_generic_handler("lifecycle.Echo", {"Say": echo})])
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                assert channel.unary_unary("/lifecycle.Echo/Say")(b"hi", timeout=5) == b"hi"
        finally:
            server.stop(0)

    return ctx.spans(call, expect)


def _logging(ctx: Ctx, expect: bool) -> int:
    record = logging.getLogger("sw.lifecycle").makeRecord("sw.lifecycle", logging.INFO, __file__, 1, "m", (), None)
    return int(hasattr(record, "tid"))


def _loguru(ctx: Ctx, expect: bool) -> int:
    from loguru import logger

    records: list[dict[str, Any]] = []
    sink = logger.add(lambda message: records.append(message.record), format="{message}")
    try:
        logger.info("lifecycle")
    finally:
        logger.remove(sink)
    return int("tid" in records[0]["extra"])


def _confluent_kafka(ctx: Ctx, expect: bool) -> int:
    """A produce while no broker listens (librdkafka only queues the message, purged afterwards): the exit span."""
    import confluent_kafka

    producer = confluent_kafka.Producer({"bootstrap.servers": "127.0.0.1:9", "log_level": 0})
    try:
        return ctx.spans(lambda: producer.produce("sw-lifecycle", b"lifecycle"), expect)
    finally:
        producer.purge()
        producer.flush(0)


def _pulsar(ctx: Ctx, expect: bool) -> int:
    """A send through the Pulsar stand-in on 127.0.0.1 (tests/plugins/standins/pulsar.py): the exit span."""
    import pulsar

    from tests.plugins.standins.pulsar import PulsarStandin

    broker = PulsarStandin()
    client = pulsar.Client(broker.url, operation_timeout_seconds=10)
    try:
        producer = client.create_producer("sw-lifecycle")
        return ctx.spans(lambda: producer.send(b"lifecycle"), expect)
    finally:
        client.close()
        broker.stop()


def _pymysql(ctx: Ctx, expect: bool) -> int:
    """A connection that never connected (no server needed): the statement's exit span records the error."""
    import pymysql

    def call() -> None:
        conn = pymysql.connect(host="127.0.0.1", port=1, defer_connect=True)
        with pytest.raises(pymysql.err.InterfaceError):
            conn.cursor().execute("SELECT 1")

    return ctx.spans(call, expect)


def _pika(ctx: Ctx, expect: bool) -> int:
    """A channel that was never opened (no broker needed): the publish's exit span records the error."""
    from types import SimpleNamespace

    import pika.channel
    import pika.exceptions

    connection = SimpleNamespace(callbacks=None, params=SimpleNamespace(host="127.0.0.1", port=5672))

    def call() -> None:
        channel = pika.channel.Channel(connection, 1, lambda *_: None)
        with pytest.raises(pika.exceptions.ChannelWrongStateError):
            channel.basic_publish("", "lifecycle", b"x")

    return ctx.spans(call, expect)


def _celery(ctx: Ctx, expect: bool) -> int:
    """kombu's in-memory transport (no broker needed): a sent task and a task run in this process."""
    from celery import Celery

    app = Celery("lifecycle", broker="memory://")

    @app.task(name="lifecycle.add")
    def add(x: int, y: int) -> int:
        return x + y

    def call() -> None:
        app.send_task("lifecycle.add", args=(1, 2))
        assert add.apply(args=(1, 2)).get() == 3

    try:
        return ctx.spans(call, expect)
    finally:
        app.close()


def _pymongo(ctx: Ctx, expect: bool) -> int:
    """The MongoDB protocol stand-in (tests/plugins/standins/mongo.py) in a thread: a client made while the plugin
    is installed carries its command listener; one ``ping``."""
    import pymongo

    from tests.plugins.standins.mongo import MongoStandIn

    with MongoStandIn() as server:
        def call() -> None:
            client = pymongo.MongoClient("127.0.0.1", server.port, serverSelectionTimeoutMS=5000)
            try:
                assert client.admin.command("ping")["ok"] == 1
            finally:
                client.close()

        return ctx.spans(call, expect)


def _wsgi_call(app: Any) -> None:
    """One GET /lifecycle straight into a WSGI application (no server)."""
    from tests.plugins.wsgi import direct

    status, body = direct(app, "/lifecycle")
    assert status.startswith("200") and body == b"ok"


def _bottle(ctx: Ctx, expect: bool) -> int:
    import bottle

    app = bottle.Bottle()
    app.route("/lifecycle", callback=lambda: "ok")
    return ctx.spans(lambda: _wsgi_call(app), expect)


def _pyramid(ctx: Ctx, expect: bool) -> int:
    from pyramid.config import Configurator
    from pyramid.response import Response

    with Configurator() as config:
        config.add_route("lifecycle", "/lifecycle")
        config.add_view(lambda request: Response("ok"), route_name="lifecycle")
        app = config.make_wsgi_app()
    return ctx.spans(lambda: _wsgi_call(app), expect)


def _falcon(ctx: Ctx, expect: bool) -> int:
    import falcon

    class Resource:
        def on_get(self, req: Any, resp: Any) -> None:
            resp.text = "ok"

    app = falcon.App()
    app.add_route("/lifecycle", Resource())
    return ctx.spans(lambda: _wsgi_call(app), expect)


def _tornado(ctx: Ctx, expect: bool) -> int:
    """One request to a Tornado server on 127.0.0.1 (its own event loop, in a thread)."""
    import tornado.web
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets

    class Ok(tornado.web.RequestHandler):
        def get(self) -> None:
            self.write("ok")

    sockets = bind_sockets(0, "127.0.0.1")
    started, state = threading.Event(), {}

    async def serve() -> None:
        server = HTTPServer(tornado.web.Application([(r"/lifecycle", Ok)]))
        server.add_sockets(sockets)
        state["loop"], state["stop"] = asyncio.get_running_loop(), asyncio.Event()
        started.set()
        await state["stop"].wait()
        server.stop()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(5)
    url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}/lifecycle"

    def call() -> None:
        with urllib.request.urlopen(url, timeout=5) as resp:
            assert resp.read() == b"ok"

    try:
        return ctx.spans(call, expect)
    finally:
        state["loop"].call_soon_threadsafe(state["stop"].set)
        thread.join(5)


def _sanic(ctx: Ctx, expect: bool) -> int:
    """One HTTP request through a Sanic application's ASGI interface (lifespan started, no server); an application
    made now, so that it gets the plugin's signal handlers while the plugin is installed."""
    import uuid

    from sanic import Sanic
    from sanic.response import text

    app = Sanic("lifecycle" + uuid.uuid4().hex[:8])
    app.config.TOUCHUP = False  # Sanic rewrites its own methods once per process: a second app could not start
    app.add_route(lambda request: text("ok"), "/lifecycle")

    async def run() -> None:
        life_in: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        life_out: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await life_in.put({"type": "lifespan.startup"})
        lifespan = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, life_in.get,
                                           life_out.put))
        assert (await life_out.get())["type"] == "lifespan.startup.complete"
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app({"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                   "scheme": "http", "path": "/lifecycle", "raw_path": b"/lifecycle", "query_string": b"",
                   "root_path": "", "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 1),
                   "server": ("127.0.0.1", 80)}, receive, send)
        assert sent[0]["status"] == 200
        await life_in.put({"type": "lifespan.shutdown"})
        await life_out.get()
        await lifespan

    return ctx.spans(lambda: asyncio.run(run()), expect)


def _websockets(ctx: Ctx, expect: bool) -> int:
    """A websockets server and a client on 127.0.0.1 (the asyncio API where the release has it, else the legacy
    one): the client's handshake exit span and the server's connection entry span."""
    try:
        from websockets.asyncio.client import connect
        from websockets.asyncio.server import serve
    except ImportError:  # before 13
        from websockets.legacy.client import connect  # type: ignore[assignment]
        from websockets.legacy.server import serve  # type: ignore[assignment]

    async def echo(ws: Any) -> None:
        await ws.send(await ws.recv())

    async def run() -> None:
        server = await serve(echo, "127.0.0.1", 0)
        port = next(iter(server.sockets)).getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/lifecycle") as ws:
            await ws.send("ok")
            assert await ws.recv() == "ok"
        server.close()
        await server.wait_closed()

    return ctx.spans(lambda: asyncio.run(run()), expect)


EXERCISES: dict[str, Callable[[Ctx, bool], int]] = {
    "sw_urllib_request": _urllib_request, "sw_http_server": _urllib_request, "sw_requests": _requests,
    "sw_urllib3": _urllib3, "sw_httpx": _httpx, "sw_aiohttp": _aiohttp, "sw_flask": _flask,
    "sw_starlette": _starlette, "sw_redis": _redis, "sw_grpc": _grpc, "sw_logging": _logging, "sw_loguru": _loguru,
    "sw_pymysql": _pymysql, "sw_rabbitmq": _pika, "sw_celery": _celery, "sw_confluent_kafka": _confluent_kafka,
    "sw_pulsar": _pulsar, "sw_pymongo": _pymongo,
    "sw_bottle": _bottle, "sw_pyramid": _pyramid, "sw_falcon": _falcon,
    "sw_tornado": _tornado, "sw_sanic": _sanic, "sw_websockets": _websockets,
}
NO_CALL = {  # originals are still checked for these
    "sw_django": "a Django request needs configured settings (process-wide); tests/plugins runs real apps",
    "sw_ray": "a Ray call needs a Ray session; tests/ray runs real clusters",
    "sw_psycopg2": "a psycopg2 connection needs a server; tests/plugins/test_postgres.py runs a real PostgreSQL",
    "sw_psycopg": "a psycopg connection needs a server; tests/plugins/test_postgres.py runs a real PostgreSQL",
    "sw_asyncpg": "an asyncpg connection needs a server; tests/plugins/test_postgres.py runs a real PostgreSQL",
    "sw_mysqlclient": "a MySQLdb connection needs a server; tests/plugins/test_mysql.py runs a real MariaDB",
    "sw_neo4j": "a neo4j session needs a Bolt server; tests/plugins/test_neo4j.py runs the Bolt stand-in",
    "sw_happybase": "happybase needs a Thrift gateway; tests/plugins/test_happybase.py runs the HBase stand-in",
    "sw_elasticsearch": "a request needs a node; tests/plugins/test_elasticsearch.py runs the Elasticsearch stand-in",
    "sw_kafka": "a send needs a broker; tests/plugins/test_kafka.py runs a real Kafka-compatible broker",
    "sw_aiokafka": "a send needs a broker; tests/plugins/test_aiokafka.py runs a real Kafka-compatible broker",
    "sw_aiormq": "a channel needs a broker; tests/plugins/test_aiormq.py runs a real RabbitMQ",
    "sw_amqp": "a channel needs a broker; tests/plugins/test_amqp.py runs a real RabbitMQ",
}


def _confluent_kafka_classes() -> object:
    import confluent_kafka

    return confluent_kafka.Producer  # swapped for a traced subclass (Consumer too), not wrapped


def _loguru_patcher() -> object:
    from loguru import logger

    return logger._core.patcher  # type: ignore[attr-defined]


# state a plugin changes without ``wrap`` (restored by its own ``_uninstall``)
OTHER_STATE: dict[str, Callable[[], object]] = {
    "sw_logging": logging.getLogRecordFactory,
    "sw_loguru": _loguru_patcher,
    "sw_confluent_kafka": _confluent_kafka_classes,
}


# -- recording what a plugin patches -----------------------------------------------------------------------------

@dataclass
class Patch:
    parent: Any
    attribute: str
    before: Any  # vars(parent)[attribute] before the patch, MISSING if the attribute was inherited
    original: Any  # what wrapt resolved (the wrapped object)

    def current(self) -> Any:
        return vars(self.parent).get(self.attribute, MISSING)

    def where(self) -> str:
        return f"{getattr(self.parent, '__qualname__', self.parent)}.{self.attribute}"


class Spy:
    """Records every ``wrap`` (with the parent's own attribute before it) and every ``when_imported`` module of
    one plugin, by shadowing the two methods on the instance; ``close()`` removes the shadows."""

    def __init__(self, plugin: Plugin) -> None:
        self.plugin = plugin
        self.patches: list[Patch] = []
        self.late: list[str] = []
        wrap, when_imported = plugin.wrap, plugin.when_imported

        def spy_wrap(target: Any, name: str, wrapper: Any) -> None:
            module = importlib.import_module(target) if isinstance(target, str) else target
            parent, attribute, original = wrapt.resolve_path(module, name)
            patch = Patch(parent, attribute, vars(parent).get(attribute, MISSING), original)
            wrap(target, name, wrapper)
            self.patches.append(patch)

        def spy_when_imported(module: str, install: Callable[[], None]) -> None:
            self.late.append(module)
            when_imported(module, install)

        plugin.wrap = spy_wrap  # type: ignore[method-assign]
        plugin.when_imported = spy_when_imported  # type: ignore[method-assign]

    def import_late(self) -> None:
        """Import the optional parts the plugin waits for, so that they are patched (and checked) too."""
        for module in dict.fromkeys(self.late):
            try:
                importlib.import_module(module)
            except ImportError:
                pass

    def close(self) -> None:
        del self.plugin.wrap, self.plugin.when_imported


def assert_wrapped_once(patches: list[Patch]) -> None:
    assert len({(id(p.parent), p.attribute) for p in patches}) == len(patches), "the same attribute wrapped twice"
    for patch in patches:
        current = patch.current()
        assert isinstance(current, wrapt.FunctionWrapper), f"{patch.where()} is not wrapped"
        assert current.__wrapped__ is patch.original, f"{patch.where()} wraps something else"
        assert not isinstance(patch.original, wrapt.FunctionWrapper), f"{patch.where()} wrapped twice"


def assert_restored(patches: list[Patch]) -> None:
    for patch in patches:
        assert patch.current() is patch.before, f"{patch.where()}: the original is not back after uninstall"


@pytest.fixture
def ctx(reporter: MemoryReporter, url: str) -> Iterator[Ctx]:
    """The agent on the in-memory reporter with every plugin uninstalled (agent.start() installs them all);
    afterwards each is put back as it was."""
    loaded = {name: plugin for name in plugins.discover() if (plugin := plugins.load(name)) is not None}
    enabled = {name for name, plugin in loaded.items() if plugin.enabled}
    for plugin in loaded.values():
        plugin.uninstall()
    yield Ctx(reporter, url)
    for name, plugin in loaded.items():
        plugin.uninstall()
        if name in enabled:
            plugin.install()


@pytest.mark.parametrize("name", plugins.discover())
def test_plugin_lifecycle(name: str, ctx: Ctx) -> None:
    plugin = plugins.load(name)
    assert plugin is not None, f"{name} does not load"
    # in the plugin's own matrix env (tox.ini sets SW_MATRIX_PLUGIN) a library that does not load is a failure
    skip = pytest.fail if os.environ.get("SW_MATRIX_PLUGIN") == name else pytest.skip
    ok, reason = plugin.check_versions()
    if not ok:
        skip(reason)
    for module in plugin.modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            skip(f"{module} is not importable: {exc}")
    exercise = EXERCISES.get(name)
    state = OTHER_STATE.get(name)
    state_before = state() if state else None
    spy = Spy(plugin)
    try:
        assert not plugin.installed
        if exercise:
            assert exercise(ctx, False) == 0, "something recorded before install"

        assert plugin.install() and plugin.installed
        spy.import_late()
        first = list(spy.patches)
        assert first or state, f"{name} patched nothing"
        assert_wrapped_once(first)
        if state:
            assert state() is not state_before, f"{name} changed nothing"
        effects = exercise(ctx, True) if exercise else 0
        if exercise:
            assert effects > 0, f"a call through the library recorded nothing with {name} installed"

        assert plugin.install()  # idempotent
        spy.import_late()
        assert spy.patches == first, "the second install patched again"
        assert_wrapped_once(first)
        if exercise:
            assert exercise(ctx, True) == effects, "the second install changed what a call records"

        plugin.uninstall()
        assert not plugin.installed and not plugin.enabled
        assert_restored(first)
        if state:
            assert state() is state_before, f"{name}: the state it changed is not restored"
        if exercise:
            assert exercise(ctx, False) == 0, f"a call recorded something after {name} was uninstalled"
        plugin.uninstall()  # idempotent
        assert_restored(first)

        assert plugin.install() and plugin.installed  # and back, the same patches
        spy.import_late()
        again = spy.patches[len(first):]
        assert [(id(p.parent), p.attribute) for p in again] == [(id(p.parent), p.attribute) for p in first]
        assert_wrapped_once(again)
        plugin.uninstall()
        assert_restored(first)
    finally:
        plugin.uninstall()
        spy.close()


def test_every_plugin_is_exercised_or_says_why_not() -> None:
    assert set(EXERCISES) | set(NO_CALL) == set(plugins.discover())


def test_an_inherited_method_is_unwrapped_from_the_subclass_not_shadowed(reporter: MemoryReporter) -> None:
    """Wrapping ``Child.greet`` (defined on ``Base``) puts the wrapper on ``Child``; uninstall must delete it there,
    not leave a copy of ``Base.greet`` in ``Child``'s own attributes."""
    module = type(sys)("sw_lifecycle_target")

    class Base:
        def greet(self) -> str:
            return "hi"

    class Child(Base):
        pass

    module.Child = Child  # type: ignore[attr-defined]

    class InheritPlugin(Plugin):
        name = "sw_lifecycle_inherit"

        def _install(self) -> None:
            self.wrap(module, "Child.greet", lambda wrapped, instance, args, kwargs: "traced " + wrapped())

    plugin = InheritPlugin()
    assert plugin.install()
    assert Child().greet() == "traced hi" and Base().greet() == "hi"
    plugin.uninstall()
    assert "greet" not in vars(Child) and Child().greet() == "hi"
    assert vars(Base)["greet"] is Base.greet
