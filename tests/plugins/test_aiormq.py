"""sw_aiormq against a real RabbitMQ broker on 127.0.0.1 (started here on free ports by tests/plugins/rabbitmq.py from
Debian's rabbitmq-server, which tools/rabbitmq-server.sh installs when missing). Without it the tests skip, or
fail when CI or SW_REQUIRE_RABBITMQ is set.

The service test runs a producer (apps/aiormq_producer_app.py, called with sw6 by a traced caller) and a consumer
(apps/aiormq_consumer_app.py) in two processes and checks expected/aiormq.json: one trace from the caller through
the producer's exit spans to the consumer's entry spans. The in-process tests check what the file cannot: the
header in the message, the caller's properties, errors and the application's exceptions, our own failures,
uninstall."""

from __future__ import annotations

import asyncio
import gc
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from skywalking.reporter.memory import MemoryReporter
from skywalking.trace.context import get_context
from tests.plugins.harness import Services, one_trace, port_of, serve, wait_printed
from tests.plugins.rabbitmq import RabbitMQServer, rabbitmq_server_script

pytest.importorskip("aiormq")  # every test here drives aiormq

HERE = Path(__file__).parent
PRODUCER = HERE / "apps" / "aiormq_producer_app.py"
CONSUMER = HERE / "apps" / "aiormq_consumer_app.py"


@pytest.fixture(scope="module")
def broker() -> Iterator[RabbitMQServer]:
    yield from serve(lambda: RabbitMQServer(rabbitmq_server_script()), "aiormq")


# -- two services, their caller and the collector -----------------------------------------------------------------

def test_a_producer_and_a_consumer_process_form_one_trace(broker: RabbitMQServer) -> None:
    with Services() as services:
        consumer = services.python(CONSUMER, broker.port, name="plugin-aiormq-consumer", ready="ready", timeout=60)
        assert "refused ChannelNotFoundEntity\n" in consumer.stdout, consumer.stdout
        front = port_of(services.python(PRODUCER, broker.port, name="plugin-aiormq-producer"))
        answer = services.call_front(front, "/publish")
        assert answer == {"message_id_kept": True, "props_untouched": True,
                          "unknown_exchange": "ChannelNotFoundEntity"}, answer

        wait_printed(consumer, [f"consumed {line}\n" for line in (
            "sw-aio-async to the async consumer", "sw-aio-sync to the sync consumer",
            "sw-aio-get forwarded to the async consumer")])
        segments = services.check("aiormq.json", segments=6, front=front, amqp=broker.port)
        one_trace(segments, apart="RabbitMQ/Topic//Queue/sw-missing/Consumer")


# -- in this process ----------------------------------------------------------------------------------------------

Channel = Any


@pytest.fixture
def on_channel(broker: RabbitMQServer, reporter: MemoryReporter) -> Callable[..., Any]:
    """``on_channel(fn)``: ``await fn(channel, queue)`` in a new event loop, with a fresh auto-delete queue; its
    result."""
    import aiormq

    def run(fn: Callable[[Channel, str], Awaitable[Any]]) -> Any:
        async def main() -> Any:
            connection = await aiormq.connect(f"amqp://guest:guest@127.0.0.1:{broker.port}/")
            try:
                channel = await connection.channel()
                queue = f"sw-test-{uuid.uuid4().hex[:8]}"
                await channel.queue_declare(queue, auto_delete=True)
                return await fn(channel, queue)
            finally:
                await connection.close()

        return asyncio.run(main())

    return run


async def _traced(fn: Callable[[], Awaitable[Any]]) -> Any:
    with get_context().new_local_span("/test"):
        return await fn()


async def _get(channel: Channel, queue: str) -> Any:
    for _ in range(100):
        message = await channel.basic_get(queue, no_ack=True)
        if message.delivery_tag is not None:
            return message
        await asyncio.sleep(0.05)
    raise AssertionError(f"no message in {queue}")


def test_the_header_goes_into_a_copy_of_the_properties(on_channel: Any, reporter: MemoryReporter,
                                                      broker: RabbitMQServer) -> None:
    import aiormq

    props = aiormq.spec.Basic.Properties(headers={"app": "x"}, content_type="text/plain")

    async def calls(channel: Channel, queue: str) -> list[Any]:
        await _traced(lambda: channel.basic_publish(b"one", routing_key=queue, properties=props))
        first = await _get(channel, queue)
        await _traced(lambda: channel.basic_publish(b"two", routing_key=queue))  # no properties: some are made
        return [first, await _get(channel, queue)]

    first, second = on_channel(calls)
    assert props.headers == {"app": "x"}
    assert props.message_id and first.header.properties.message_id == props.message_id  # as aiormq sets it
    assert first.body == b"one" and first.header.properties.content_type == "text/plain"
    headers = first.header.properties.headers
    assert headers["app"] == "x" and headers["sw6"].startswith("1-"), headers
    assert second.body == b"two" and set(second.header.properties.headers) == {"sw6"}
    assert second.header.properties.delivery_mode == 1  # aiormq's default properties

    producer = next(seg for seg in reporter.segments if seg.spans[-1].op == "/test")
    exit_span = producer.spans[0]
    assert exit_span.op.startswith("RabbitMQ/Topic//Queue/sw-test-") and exit_span.op.endswith("/Producer")
    assert exit_span.peer == f"127.0.0.1:{broker.port}" and exit_span.component.value == 52
    assert {t.key: t.val for t in exit_span.tags} == {"mq.broker": f"127.0.0.1:{broker.port}", "mq.topic": "",
                                                       "mq.queue": exit_span.op.split("/")[4]}
    # each basic_get that returned a message: an entry span continuing the publish, in a segment of its own
    gets = [seg for seg in reporter.segments if seg.spans[-1].op.endswith("/Consumer")]
    assert len(gets) == 2 and all(len(seg.spans) == 1 and len(seg.spans[0].refs) == 1 for seg in gets)
    assert gets[0].spans[0].refs[0].segment_id == producer.segment_id
    assert gets[0].spans[0].component.value == 53


def test_sw8_when_configured(broker: RabbitMQServer, start_agent: Any) -> None:
    import aiormq

    reporter = start_agent(agent_protocol_version="v8")

    async def main() -> Any:
        connection = await aiormq.connect(f"amqp://guest:guest@127.0.0.1:{broker.port}/")
        try:
            channel = await connection.channel()
            name = (await channel.queue_declare("", exclusive=True)).queue
            await _traced(lambda: channel.basic_publish(b"v8", routing_key=name))
            return await _get(channel, name)
        finally:
            await connection.close()

    message = asyncio.run(main())
    assert "sw8" in message.header.properties.headers and "sw6" not in message.header.properties.headers
    assert reporter.wait_for(2)
    entry = reporter.segments[-1].spans[0]
    assert entry.op.endswith("/Consumer") and len(entry.refs) == 1
    assert str(reporter.segments[-1].related_traces[0]) == str(reporter.segments[0].related_traces[0])


def test_a_refused_publish_and_get_are_errors_and_reraised_untouched(on_channel: Any,
                                                                   reporter: MemoryReporter) -> None:
    import aiormq.exceptions

    async def calls(channel: Channel, queue: str) -> list[BaseException]:
        raised: list[BaseException] = []
        connection = channel.connection
        try:
            await channel.basic_publish(b"x", exchange="sw.nowhere", routing_key="key")
        except aiormq.exceptions.ChannelNotFoundEntity as e:
            raised.append(e)
        getter = await connection.channel()
        try:
            await getter.basic_get("sw-missing-queue")
        except aiormq.exceptions.ChannelNotFoundEntity as e:
            raised.append(e)
        return raised

    raised = on_channel(lambda channel, queue: _traced(lambda: calls(channel, queue)))
    assert [type(e).__name__ for e in raised] == ["ChannelNotFoundEntity", "ChannelNotFoundEntity"]
    assert "no exchange 'sw.nowhere'" in str(raised[0]) and "no queue 'sw-missing-queue'" in str(raised[1])
    (spans,) = [seg.spans for seg in reporter.segments if seg.spans[-1].op == "/test"]
    assert [(s.op, s.error_occurred) for s in spans] == [
        ("RabbitMQ/Topic/sw.nowhere/Queue/key/Producer", True), ("/test", False)]
    assert "ChannelNotFoundEntity" in spans[0].logs[0].items[0].val
    (refused,) = [seg.spans for seg in reporter.segments if seg.spans[-1].op.endswith("/Consumer")]
    assert [(s.op, s.error_occurred) for s in refused] == [("RabbitMQ/Topic//Queue/sw-missing-queue/Consumer", True)]
    assert not refused[0].refs


class Boom(Exception):
    pass


@pytest.mark.parametrize("kind", ["coroutine", "function"])
def test_consume_callbacks_are_entry_spans_and_their_exceptions_unchanged(
        on_channel: Any, reporter: MemoryReporter, caplog: pytest.LogCaptureFixture, kind: str) -> None:
    thrown: list[BaseException] = []

    def handle(message: Any) -> None:
        with get_context().new_local_span("/work"):
            pass
        if message.body == b"bad":
            thrown.append(Boom(message.body))
            raise thrown[-1]

    async def coroutine_callback(message: Any) -> None:
        await asyncio.sleep(0)
        handle(message)

    callback = coroutine_callback if kind == "coroutine" else handle

    async def calls(channel: Channel, queue: str) -> None:
        await channel.basic_consume(queue, callback, no_ack=True)
        await _traced(lambda: channel.basic_publish(b"good", routing_key=queue))
        await _traced(lambda: channel.basic_publish(b"bad", routing_key=queue))
        for _ in range(100):
            if len(thrown) == 1 and len(reporter.segments) >= 4:
                break
            await asyncio.sleep(0.05)

    with caplog.at_level(logging.ERROR):
        on_channel(calls)
        gc.collect()  # aiormq < 7 leaves the failed task to asyncio, which reports it when the task is freed
    # the consumer task failed with the application's own exception (aiormq or asyncio logs it)
    failed = [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], Boom)]
    assert len(failed) == 1 and failed[0].exc_info[1] is thrown[0], failed  # type: ignore[index]
    entries = [seg for seg in reporter.segments if seg.spans[-1].op.endswith("/Consumer")]
    assert [[s.op for s in seg.spans] for seg in entries] == [["/work", entries[0].spans[-1].op]] * 2
    assert [seg.spans[-1].error_occurred for seg in entries] == [False, True]
    assert "Boom" in entries[1].spans[-1].logs[0].items[0].val
    producers = {seg.segment_id for seg in reporter.segments if seg.spans[-1].op == "/test"}
    assert {seg.spans[-1].refs[0].segment_id for seg in entries} == producers


def test_a_consumer_made_inside_a_request_gets_segments_of_its_own(on_channel: Any,
                                                                   reporter: MemoryReporter) -> None:
    """The connection's tasks inherit the context of the code that made it; a delivered message still starts a
    segment of its own, continuing its producer's trace, not the request's."""
    got = asyncio.Event

    async def calls(channel: Channel, queue: str) -> None:
        done = got()

        async def on_message(message: Any) -> None:
            done.set()

        with get_context().new_entry_span("/request"):
            await channel.basic_consume(queue, on_message, no_ack=True)
        await _traced(lambda: channel.basic_publish(b"m", routing_key=queue))
        await asyncio.wait_for(done.wait(), 10)
        await asyncio.sleep(0.1)

    on_channel(calls)
    by_op = {seg.spans[-1].op: seg for seg in reporter.segments}
    message = next(seg for op, seg in by_op.items() if op.endswith("/Consumer"))
    assert [s.op for s in by_op["/request"].spans] == ["/request"]
    assert str(message.related_traces[0]) == str(by_op["/test"].related_traces[0])
    assert str(message.related_traces[0]) != str(by_op["/request"].related_traces[0])


def test_a_failure_of_the_plugin_publishes_and_consumes_untraced(on_channel: Any, reporter: MemoryReporter,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from skywalking.plugins import sw_aiormq

    def broken(*args: Any) -> Any:
        raise RuntimeError("plugin bug")

    monkeypatch.setattr(sw_aiormq, "_broker", broken)

    async def calls(channel: Channel, queue: str) -> Any:
        await _traced(lambda: channel.basic_publish(b"plain", routing_key=queue))
        return await _get(channel, queue)

    message = on_channel(calls)
    assert message.body == b"plain" and not message.header.properties.headers
    assert [[s.op for s in seg.spans] for seg in reporter.segments] == [["/test"]]


def test_nothing_inside_an_exit_span(on_channel: Any, reporter: MemoryReporter) -> None:
    async def calls(channel: Channel, queue: str) -> Any:
        with get_context().new_local_span("/test"):
            with get_context().new_exit_span(op="mq-layer", peer="somewhere"):
                await channel.basic_publish(b"inner", routing_key=queue)
        return await _get(channel, queue)

    message = on_channel(calls)
    assert message.body == b"inner"
    assert [[s.op for s in seg.spans] for seg in reporter.segments if seg.spans[-1].op == "/test"] == [
        ["mq-layer", "/test"]]


def test_uninstall_restores_the_originals(on_channel: Any, reporter: MemoryReporter) -> None:
    import aiormq.channel
    import wrapt

    from skywalking.plugins.sw_aiormq import plugin

    names = ("basic_publish", "basic_consume", "basic_get")
    targets = [aiormq.channel.Channel.__dict__[name] for name in names]
    assert plugin.installed and all(isinstance(t, wrapt.FunctionWrapper) for t in targets)
    plugin.uninstall()
    try:
        assert [aiormq.channel.Channel.__dict__[name] for name in names] == [t.__wrapped__ for t in targets]

        async def calls(channel: Channel, queue: str) -> Any:
            await _traced(lambda: channel.basic_publish(b"plain", routing_key=queue))
            return await _get(channel, queue)

        message = on_channel(calls)
        assert not message.header.properties.headers
        assert [[s.op for s in seg.spans] for seg in reporter.segments] == [["/test"]]
    finally:
        assert plugin.install()
    assert isinstance(aiormq.channel.Channel.__dict__["basic_get"], wrapt.FunctionWrapper)
