"""sw_rabbitmq against a real RabbitMQ broker on 127.0.0.1 (started here on free ports by tests/plugins/rabbitmq.py from
Debian's rabbitmq-server, which tools/rabbitmq-server.sh installs when missing). Without it the tests skip, or
fail when CI or SW_REQUIRE_RABBITMQ is set.

The service test runs a producer (apps/pika_producer_app.py, called with sw6 by a traced caller) and a consumer
(apps/pika_consumer_app.py) in two processes and checks expected/rabbitmq.json: one trace from the caller through the
producer's exit spans to the consumer's entry spans. The in-process tests check what the file cannot: the
header in the message, the caller's properties, errors, our own failures, the generator's span, uninstall."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skywalking.reporter.memory import MemoryReporter
from skywalking.trace.carrier import inbound_carrier
from skywalking.trace.context import get_context
from tests.plugins.harness import Services, one_trace, port_of, serve, traced, wait_printed
from tests.plugins.rabbitmq import RabbitMQServer, rabbitmq_server_script
from tests.protocol.procs import wait_for

HERE = Path(__file__).parent
PRODUCER = HERE / "apps" / "pika_producer_app.py"
CONSUMER = HERE / "apps" / "pika_consumer_app.py"


@pytest.fixture(scope="module")
def broker() -> Iterator[RabbitMQServer]:
    yield from serve(lambda: RabbitMQServer(rabbitmq_server_script()), "pika")


# -- two services, their caller and the collector -----------------------------------------------------------------

def test_a_producer_and_a_consumer_process_form_one_trace(broker: RabbitMQServer) -> None:
    with Services() as services:
        consumer = services.python(CONSUMER, broker.port, name="plugin-rabbitmq-consumer", ready="ready", timeout=60)
        assert any(line.startswith("refused 404") for line in consumer.stdout), consumer.stdout
        front = port_of(services.python(PRODUCER, broker.port, name="plugin-rabbitmq-producer"))
        answer = services.call_front(front, "/publish")
        assert answer == {"props_untouched": True, "unknown_exchange": ["ChannelClosedByBroker", 404],
                          "closed_channel": "ChannelWrongStateError"}, answer

        wait_printed(consumer, [f"consumed {line}\n" for line in (
            "sw-callback to the callback consumer", "sw-generator to the generator consumer",
            "sw-async to the async consumer", "sw-get forwarded to the callback consumer")])
        segments = services.check("rabbitmq.json", segments=7, front=front, amqp=broker.port)
        one_trace(segments, apart="RabbitMQ/Topic//Queue/sw-missing/Consumer")


# -- in this process ----------------------------------------------------------------------------------------------

@pytest.fixture
def channel(broker: RabbitMQServer, reporter: MemoryReporter) -> Iterator[Any]:
    import pika

    connection = pika.BlockingConnection(pika.ConnectionParameters(host="127.0.0.1", port=broker.port))
    yield connection.channel()
    if connection.is_open:
        connection.close()


def _get(channel: Any, queue: str) -> tuple[Any, Any, Any]:
    return wait_for(lambda: (lambda got: got if got[0] is not None else None)(channel.basic_get(queue, True)),
                    what=f"a message in {queue}")


def test_the_header_goes_into_a_copy_of_the_properties(channel: Any, queue: str, reporter: MemoryReporter,
                                                      broker: RabbitMQServer) -> None:
    import pika

    props = pika.BasicProperties(headers={"app": "x"}, content_type="text/plain")
    _, spans = traced(reporter, lambda: channel.basic_publish("", queue, b"one", props))
    assert props.headers == {"app": "x"}
    exit_span = spans[0]
    assert exit_span.op == f"RabbitMQ/Topic//Queue/{queue}/Producer" and exit_span.peer == f"127.0.0.1:{broker.port}"
    assert {t.key: t.val for t in exit_span.tags} == {"mq.broker": f"127.0.0.1:{broker.port}", "mq.topic": "",
                                                       "mq.queue": queue}
    method, received, body = _get(channel, queue)
    assert body == b"one" and received.content_type == "text/plain" and received.headers["app"] == "x"
    assert received.headers["sw6"].startswith("1-"), received.headers

    reporter.segments.clear()
    traced(reporter, lambda: channel.basic_publish("", queue, b"two"))  # no properties: some are made
    method, received, body = _get(channel, queue)
    assert body == b"two" and set(received.headers) == {"sw6"}


def test_sw8_when_configured(broker: RabbitMQServer, start_agent: Any) -> None:
    import pika

    reporter = start_agent(agent_protocol_version="v8")
    connection = pika.BlockingConnection(pika.ConnectionParameters(host="127.0.0.1", port=broker.port))
    try:
        channel = connection.channel()
        name = channel.queue_declare("", exclusive=True).method.queue
        traced(reporter, lambda: channel.basic_publish("", name, b"v8"))
        method, received, body = _get(channel, name)
        assert "sw8" in received.headers and "sw6" not in received.headers, received.headers
        # the consumer's entry span continues it
        assert method is not None and reporter.wait_for(2)
        entry = reporter.segments[-1].spans[0]
        assert entry.op == f"RabbitMQ/Topic//Queue/{name}/Consumer" and len(entry.refs) == 1
        assert str(reporter.segments[-1].related_traces[0]) == str(reporter.segments[0].related_traces[0])
    finally:
        connection.close()


def test_a_refused_publish_and_get_are_errors_and_reraised_untouched(broker: RabbitMQServer,
                                                                   reporter: MemoryReporter) -> None:
    import pika
    import pika.exceptions

    connection = pika.BlockingConnection(pika.ConnectionParameters(host="127.0.0.1", port=broker.port))
    raised: list[BaseException] = []
    try:
        def calls() -> None:
            confirming = connection.channel()
            confirming.confirm_delivery()
            try:
                confirming.basic_publish("sw.nowhere", "key", b"x")
            except pika.exceptions.ChannelClosedByBroker as e:
                raised.append(e)
            getter = connection.channel()
            try:
                getter.basic_get("sw-missing-queue")
            except pika.exceptions.ChannelClosedByBroker as e:
                raised.append(e)
            try:
                getter.basic_publish("", "q", b"x")
            except pika.exceptions.ChannelWrongStateError as e:
                raised.append(e)

        _, spans = traced(reporter, calls)
    finally:
        connection.close()
    assert [type(e).__name__ for e in raised] == ["ChannelClosedByBroker", "ChannelClosedByBroker",
                                                  "ChannelWrongStateError"]
    assert [e.reply_code for e in raised[:2]] == [404, 404]  # type: ignore[attr-defined]
    assert [(s.op, s.error_occurred) for s in spans] == [
        ("RabbitMQ/Topic/sw.nowhere/Queue/key/Producer", True),
        ("RabbitMQ/Topic//Queue/q/Producer", True),
        ("/test", False)]
    # a receive is its own segment (consumer entry spans never nest in the code that receives)
    (refused,) = [seg.spans for seg in reporter.segments if seg.spans[-1].op.endswith("/Consumer")]
    assert [(s.op, s.error_occurred) for s in refused] == [("RabbitMQ/Topic//Queue/sw-missing-queue/Consumer", True)]
    assert "ChannelClosedByBroker" in spans[0].logs[0].items[0].val
    assert "ChannelWrongStateError" in spans[1].logs[0].items[0].val


def test_a_failing_callback_is_an_error_span_and_its_exception_unchanged(channel: Any, queue: str,
                                                                        reporter: MemoryReporter) -> None:
    class Boom(Exception):
        pass

    def on_message(ch: Any, method: Any, properties: Any, body: bytes) -> None:
        raise Boom(body)

    channel.basic_publish("", queue, b"bad")  # a root exit span of its own: the message carries a header
    channel.basic_consume(queue, on_message, auto_ack=True)
    with pytest.raises(Boom) as info:
        for _ in range(50):
            channel.connection.process_data_events(time_limit=0.1)
    assert info.value.args == (b"bad",)
    (entry,) = reporter.segments[-1].spans
    assert entry.op == f"RabbitMQ/Topic//Queue/{queue}/Consumer" and entry.error_occurred and len(entry.refs) == 1
    assert "Boom" in entry.logs[0].items[0].val


def test_the_generator_span_lasts_until_the_next_message_is_asked_for(channel: Any, queue: str,
                                                                    reporter: MemoryReporter) -> None:
    traced(reporter, lambda: [channel.basic_publish("", queue, body) for body in (b"1", b"2")])
    reporter.segments.clear()
    messages = channel.consume(queue, auto_ack=True)
    bodies = []
    for _, _, body in messages:
        with get_context().new_local_span("/work"):
            bodies.append(body)
        if len(bodies) == 2:
            break
    assert len(reporter.segments) == 1  # segments are reported as they end: the second one is still open
    messages.close()  # ends it
    channel.cancel()
    assert len(reporter.segments) == 2
    assert bodies == [b"1", b"2"]
    for segment in reporter.segments:
        assert [s.op for s in segment.spans] == ["/work", f"RabbitMQ/Topic//Queue/{queue}/Consumer"]
        assert len(segment.spans[1].refs) == 1


def test_a_message_received_inside_a_request_is_its_own_segment(channel: Any, queue: str,
                                                                 reporter: MemoryReporter) -> None:
    """basic_get in a traced request: the message's entry span continues the producer's trace in a segment of its
    own; the request's segment keeps the trace it continued (review finding: it used to be re-filed)."""
    traced(reporter, lambda: channel.basic_publish("", queue, b"m"))
    producer_trace = str(reporter.segments[-1].related_traces[0])
    reporter.segments.clear()
    with get_context().new_entry_span("/request", inbound_carrier({}.get)) as request:
        request_trace = str(get_context().segment.related_traces[0])
        _get(channel, queue)
        assert get_context().active_span is request
    assert reporter.wait_for(2)
    by_op = {seg.spans[-1].op: seg for seg in reporter.segments}
    message = by_op[f"RabbitMQ/Topic//Queue/{queue}/Consumer"]
    assert str(message.related_traces[0]) == producer_trace and len(message.spans[-1].refs) == 1
    assert str(by_op["/request"].related_traces[0]) == request_trace != producer_trace
    assert [s.op for s in by_op["/request"].spans] == ["/request"]


def test_cancel_ends_the_span_of_a_kept_consume_generator(channel: Any, queue: str,
                                                         reporter: MemoryReporter) -> None:
    """A consume() generator kept after the loop (not advanced, not closed): cancel() ends the span of the message
    it handed out, and nothing stays active on the thread (review finding)."""
    traced(reporter, lambda: channel.basic_publish("", queue, b"1"))
    reporter.segments.clear()
    messages = channel.consume(queue, auto_ack=True)
    assert next(messages)[2] == b"1"
    assert get_context().active_span is not None  # the application works on the message inside its span
    channel.cancel()
    assert get_context().active_span is None
    assert reporter.wait_for(1) and [s.op for s in reporter.segments[-1].spans] == [
        f"RabbitMQ/Topic//Queue/{queue}/Consumer"]
    messages.close()
    assert len(reporter.segments) == 1  # not ended twice


def test_select_connection_publish_and_callback(broker: RabbitMQServer, reporter: MemoryReporter) -> None:
    import pika

    name = f"sw-async-{uuid.uuid4().hex[:8]}"
    done = threading.Event()
    seen: list[bytes] = []

    def on_message(channel: Any, method: Any, properties: Any, body: bytes) -> None:
        seen.append(body)
        channel.connection.close()

    def on_consuming(channel: Any) -> None:
        with get_context().new_local_span("/async-producer"):
            channel.basic_publish("", name, b"async", pika.BasicProperties(headers={"k": "v"}))

    def on_declared(channel: Any) -> None:
        channel.basic_consume(name, on_message, auto_ack=True, callback=lambda _: on_consuming(channel))

    def on_channel(channel: Any) -> None:
        channel.queue_declare(name, auto_delete=True, callback=lambda _: on_declared(channel))

    connection = pika.SelectConnection(pika.ConnectionParameters(host="127.0.0.1", port=broker.port),
                                       on_open_callback=lambda conn: conn.channel(on_open_callback=on_channel),
                                       on_close_callback=lambda *_: (done.set(), connection.ioloop.stop()))
    thread = threading.Thread(target=connection.ioloop.start, daemon=True)
    thread.start()
    assert done.wait(30) and seen == [b"async"]
    thread.join(10)
    assert reporter.wait_for(2)
    producer = next(s for s in reporter.segments if s.spans[-1].op == "/async-producer")
    consumer = next(s for s in reporter.segments if s is not producer)
    assert [s.op for s in producer.spans] == [f"RabbitMQ/Topic//Queue/{name}/Producer", "/async-producer"]
    assert [s.op for s in consumer.spans] == [f"RabbitMQ/Topic//Queue/{name}/Consumer"]
    ref = consumer.spans[0].refs[0]
    assert ref.segment_id == producer.segment_id and ref.span_id == producer.spans[0].sid
    assert consumer.spans[0].component.value == 53 and producer.spans[0].component.value == 52


def test_a_failure_of_the_plugin_publishes_and_consumes_untraced(channel: Any, queue: str, reporter: MemoryReporter,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from skywalking.plugins import sw_rabbitmq

    def broken(*args: Any) -> Any:
        raise RuntimeError("plugin bug")

    monkeypatch.setattr(sw_rabbitmq, "_broker", broken)
    _, spans = traced(reporter, lambda: channel.basic_publish("", queue, b"plain"))
    assert [s.op for s in spans] == ["/test"]
    reporter.segments.clear()
    method, properties, body = _get(channel, queue)
    assert body == b"plain" and not properties.headers
    assert not reporter.segments


def test_nothing_inside_an_exit_span(channel: Any, queue: str, reporter: MemoryReporter) -> None:
    def call() -> None:
        with get_context().new_exit_span(op="mq-layer", peer="somewhere"):
            channel.basic_publish("", queue, b"inner")

    _, spans = traced(reporter, call)
    assert [s.op for s in spans] == ["mq-layer", "/test"]


def test_uninstall_restores_the_originals(channel: Any, queue: str, reporter: MemoryReporter) -> None:
    import pika.adapters.blocking_connection as blocking
    import pika.channel
    import wrapt

    from skywalking.plugins.sw_rabbitmq import plugin

    names = [(pika.channel.Channel, "basic_publish"), (pika.channel.Channel, "basic_consume"),
             (blocking.BlockingChannel, "basic_publish"), (blocking.BlockingChannel, "basic_consume"),
             (blocking.BlockingChannel, "basic_get"), (blocking.BlockingChannel, "consume")]
    targets = [cls.__dict__[name] for cls, name in names]
    assert plugin.installed and all(isinstance(t, wrapt.FunctionWrapper) for t in targets)
    plugin.uninstall()
    try:
        assert [cls.__dict__[name] for cls, name in names] == [t.__wrapped__ for t in targets]
        _, spans = traced(reporter, lambda: channel.basic_publish("", queue, b"plain"))
        assert [s.op for s in spans] == ["/test"]
    finally:
        assert plugin.install()
    assert isinstance(blocking.BlockingChannel.__dict__["basic_get"], wrapt.FunctionWrapper)
