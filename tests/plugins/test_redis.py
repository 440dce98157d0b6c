"""sw_redis against a real redis-server on 127.0.0.1 (tests/plugins/redis.py starts it on a free port, with a unix
socket; the binary comes from tools/redis-server.sh, which installs Debian's package when there is none). Without a
binary the tests skip, or fail when CI or SW_REQUIRE_REDIS is set.

The service test runs apps/redis_app.py called with sw6 by a traced caller and checks expected/redis.json; the
in-process tests check what the file cannot: span timing, exit-span nesting, errors, our own failures, uninstall."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skywalking.reporter.memory import MemoryReporter
from skywalking.trace.context import get_context
from tests.plugins.harness import Services, port_of, serve, traced
from tests.plugins.redis import RedisServer, redis_server_binary

HERE = Path(__file__).parent
APP = HERE / "apps" / "redis_app.py"


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    yield from serve(lambda: RedisServer(redis_server_binary()), "redis")


# -- the service, its caller and the collector ------------------------------------------------------------------

def test_commands_pipelines_and_async_calls_are_exit_spans(redis_server: RedisServer) -> None:
    with Services() as services:
        front = port_of(services.python(APP, redis_server.port, redis_server.socket, name="plugin-redis"))
        answer = services.call_front(front, "/redis")
        assert answer["sync"]["get"] == "hello" and answer["sync"]["ping"] is True, answer
        assert "not an integer" in answer["sync"]["incr_error"] and "WRONGTYPE" in answer["async"]["hget_error"]
        services.check("redis.json", segments=2, front=front, redis=redis_server.port, socket=redis_server.socket)


# -- in this process ----------------------------------------------------------------------------------------------

@pytest.fixture
def client(redis_server: RedisServer, reporter: MemoryReporter) -> Iterator[Any]:
    import redis

    r = redis.Redis(host="127.0.0.1", port=redis_server.port, db=2)
    yield r
    r.close()


def test_span_lasts_until_the_reply(client: Any, reporter: MemoryReporter, redis_server: RedisServer) -> None:
    import redis.asyncio

    async def blpop() -> Any:
        r = redis.asyncio.Redis(host="127.0.0.1", port=redis_server.port, db=2)
        try:
            return await r.blpop(["sw:empty"], timeout=0.3)
        finally:
            await r.connection_pool.disconnect()

    def both() -> tuple[Any, Any]:
        return client.blpop(["sw:empty"], timeout=0.3), asyncio.run(blpop())

    result, spans = traced(reporter, both)
    assert result == (None, None)
    assert [s.op for s in spans] == ["Redis/BLPOP", "Redis/BLPOP", "/test"]
    for span in spans[:2]:  # the server answers after 0.3 s: a send-only span would last ~0 ms
        assert span.end_time - span.start_time >= 250, span


def test_nothing_inside_an_exit_span(client: Any, reporter: MemoryReporter) -> None:
    def call() -> Any:
        with get_context().new_exit_span(op="cache-layer", peer="somewhere"):
            client.set("sw:inner", "1")
            with client.pipeline() as pipe:
                return pipe.get("sw:inner").execute()

    result, spans = traced(reporter, call)
    assert result == [b"1"]
    assert [s.op for s in spans] == ["cache-layer", "/test"]


def test_error_marks_the_span_and_is_reraised_untouched(client: Any, reporter: MemoryReporter) -> None:
    import redis

    raised: list[BaseException] = []

    def call() -> None:
        client.set("sw:text", "abc")
        try:
            client.incr("sw:text")
        except redis.ResponseError as e:
            raised.append(e)

    _, spans = traced(reporter, call)
    assert len(raised) == 1 and type(raised[0]) is redis.ResponseError
    incr = spans[1]
    assert incr.op == "Redis/INCRBY" and incr.error_occurred
    assert "ResponseError" in incr.logs[0].items[0].val
    assert not spans[0].error_occurred


def test_a_failure_of_the_plugin_runs_the_command_untraced(client: Any, reporter: MemoryReporter,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from skywalking.plugins import sw_redis

    def broken(*args: Any) -> Any:
        raise RuntimeError("plugin bug")

    monkeypatch.setattr(sw_redis, "_span", broken)
    client.set("sw:ok", "1")
    result, spans = traced(reporter, lambda: (client.get("sw:ok"), client.pipeline().get("sw:ok").execute()))
    assert result == (b"1", [b"1"])
    assert [s.op for s in spans] == ["/test"]


def test_peer_and_tags_of_unusual_clients(reporter: MemoryReporter) -> None:
    from types import SimpleNamespace

    from skywalking.plugins.sw_redis import _op_tag, _span

    def client(**kwargs: Any) -> Any:
        return SimpleNamespace(connection_pool=SimpleNamespace(connection_kwargs=kwargs))

    assert _span(client(host="::1", port=7000), "Redis/GET").peer == "[::1]:7000"
    assert _span(client(host="cache", db=3), "Redis/GET").peer == "cache:6379"
    assert _span(client(path="/run/redis.sock"), "Redis/GET").peer == "/run/redis.sock"
    assert _span(SimpleNamespace(), "Redis/GET").peer is None  # e.g. a sentinel pool without a host
    assert _op_tag(["GET", "HGETALL"]) == "read" and _op_tag(["GET", "LPOP"]) == "write"
    assert _op_tag(["GET", "PING"]) is None and _op_tag(["SETEX"]) == "write" and _op_tag(["INCR"]) == "write"


def test_uninstall_restores_the_originals(redis_server: RedisServer, reporter: MemoryReporter) -> None:
    import redis.asyncio.client
    import redis.client
    import wrapt

    from skywalking.plugins.sw_redis import plugin

    targets = [redis.client.Redis.__dict__["execute_command"], redis.client.Pipeline.__dict__["execute"],
               redis.client.Pipeline.__dict__["immediate_execute_command"],
               redis.asyncio.client.Redis.__dict__["execute_command"],
               redis.asyncio.client.Pipeline.__dict__["execute"],
               redis.asyncio.client.Pipeline.__dict__["immediate_execute_command"]]
    assert plugin.installed and all(isinstance(t, wrapt.FunctionWrapper) for t in targets)
    plugin.uninstall()
    try:
        restored = [redis.client.Redis.__dict__["execute_command"], redis.client.Pipeline.__dict__["execute"],
                    redis.client.Pipeline.__dict__["immediate_execute_command"],
                    redis.asyncio.client.Redis.__dict__["execute_command"],
                    redis.asyncio.client.Pipeline.__dict__["execute"],
                    redis.asyncio.client.Pipeline.__dict__["immediate_execute_command"]]
        assert restored == [t.__wrapped__ for t in targets]
        r = redis.Redis(host="127.0.0.1", port=redis_server.port, db=2)
        _, spans = traced(reporter, lambda: r.ping())
        r.close()
        assert [s.op for s in spans] == ["/test"]
    finally:
        assert plugin.install()
    assert isinstance(redis.client.Redis.__dict__["execute_command"], wrapt.FunctionWrapper)
