"""sw_amqp (py-amqp) against a real RabbitMQ broker on 127.0.0.1 (started here on free ports by
tests/plugins/rabbitmq.py from Debian's rabbitmq-server, which tools/rabbitmq-server.sh installs when missing).
Without it the tests skip, or fail when CI or SW_REQUIRE_RABBITMQ is set.

The service test runs a producer (apps/amqp_producer_app.py, called with sw6 by a traced caller) and a consumer
(apps/amqp_consumer_app.py) in two processes and checks expected/amqp.json: one trace from the caller through the
producer's exit spans to the consumer's entry spans. The in-process tests check what the file cannot: the header in
the message, the caller's message, confirm mode, errors and the application's exceptions, our own failures,
uninstall."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from skywalking.reporter.memory import MemoryReporter
from skywalking.trace.carrier import inbound_carrier
from skywalking.trace.context import get_context
from tests.plugins.harness import Services, one_trace, port_of, serve, traced, wait_printed
from tests.plugins.rabbitmq import RabbitMQServer, rabbitmq_server_script
from tests.protocol.procs import wait_for

pytest.importorskip("amqp")  # every test here drives amqp

HERE = Path(__file__).parent
PRODUCER = HERE / "apps" / "amqp_producer_app.py"
CONSUMER = HERE / "apps" / "amqp_consumer_app.py"


@pytest.fixture(scope="module")
def broker() -> Iterator[RabbitMQServer]:
    yield from serve(lambda: RabbitMQServer(rabbitmq_server_script()), "amqp")


# -- two services, their caller and the collector -----------------------------------------------------------------

def test_a_producer_and_a_consumer_process_form_one_trace(broker: RabbitMQServer) -> None:
    with Services() as services:
        consumer = services.python(CONSUMER, broker.port, name="plugin-amqp-consumer", ready="ready", timeout=60)
        assert "refused 404\n" in consumer.stdout, consumer.stdout
        front = port_of(services.python(PRODUCER, broker.port, name="plugin-amqp-producer"))
        answer = services.call_front(front, "/publish")
        assert answer == {"message_untouched": True, "unknown_exchange": ["NotFound", 404]}, answer

        wait_printed(consumer, [f"consumed {line}\n" for line in (
            "sw-amqp-callback to the callback consumer", "sw-amqp-direct to the direct consumer",
            "sw-amqp-get confirmed", "sw-amqp-get forwarded to the callback consumer")])
        segments = services.check("amqp.json", segments=7, front=front, amqp=broker.port)
        one_trace(segments, apart="RabbitMQ/Topic//Queue/sw-missing/Consumer")


# -- in this process ----------------------------------------------------------------------------------------------

def _connect(broker: RabbitMQServer, **options: Any) -> Any:
    import amqp

    connection = amqp.Connection(f"127.0.0.1:{broker.port}", **options)
    connection.connect()
    return connection


@pytest.fixture
def connection(broker: RabbitMQServer, reporter: MemoryReporter) -> Iterator[Any]:
    connection = _connect(broker)
    try:
        yield connection
    finally:
        connection.collect()  # closes the socket without a handshake: the channel may be closed by the broker


@pytest.fixture
def channel(connection: Any) -> Any:
    return connection.channel()


def _get(channel: Any, queue: str) -> Any:
    return wait_for(lambda: channel.basic_get(queue, no_ack=True), what=f"a message in {queue}")


def test_the_header_goes_into_a_copy_of_the_message(channel: Any, queue: str, reporter: MemoryReporter,
                                                    broker: RabbitMQServer) -> None:
    import amqp

    message = amqp.Message(b"one", content_type="text/plain", application_headers={"app": "x"})
    _, spans = traced(reporter, lambda: channel.basic_publish(message, "", queue))
    assert message.properties == {"content_type": "text/plain", "application_headers": {"app": "x"}}
    exit_span = spans[0]
    assert exit_span.op == f"RabbitMQ/Topic//Queue/{queue}/Producer" and exit_span.peer == f"127.0.0.1:{broker.port}"
    assert exit_span.component.value == 52 and exit_span.layer.name == "MQ"
    assert {t.key: t.val for t in exit_span.tags} == {"mq.broker": f"127.0.0.1:{broker.port}", "mq.topic": "",
                                                       "mq.queue": queue}
    received = _get(channel, queue)
    assert received.body == b"one" and received.content_type == "text/plain" and received.headers["app"] == "x"
    assert received.headers["sw6"].startswith("1-"), received.headers
    # the basic_get that returned it: an entry span continuing the publish, in a segment of its own
    entry = reporter.segments[-1].spans[0]
    assert entry.op == f"RabbitMQ/Topic//Queue/{queue}/Consumer" and entry.component.value == 53
    assert entry.refs[0].segment_id == reporter.segments[0].segment_id

    reporter.segments.clear()
    traced(reporter, lambda: channel.basic_publish(msg=amqp.Message(b"two"), routing_key=queue))  # keywords
    received = _get(channel, queue)
    assert received.body == b"two" and set(received.headers) == {"sw6"}


def test_sw8_when_configured(broker: RabbitMQServer, start_agent: Any) -> None:
    import amqp

    reporter = start_agent(agent_protocol_version="v8")
    connection = _connect(broker)
    try:
        channel = connection.channel()
        name = channel.queue_declare("", exclusive=True).queue
        traced(reporter, lambda: channel.basic_publish(amqp.Message(b"v8"), "", name))
        received = _get(channel, name)
        assert "sw8" in received.headers and "sw6" not in received.headers, received.headers
        assert reporter.wait_for(2)
        entry = reporter.segments[-1].spans[0]
        assert entry.op == f"RabbitMQ/Topic//Queue/{name}/Consumer" and len(entry.refs) == 1
        assert str(reporter.segments[-1].related_traces[0]) == str(reporter.segments[0].related_traces[0])
    finally:
        connection.close()


def test_confirm_mode_refusals_are_errors_and_reraised_untouched(broker: RabbitMQServer,
                                                                reporter: MemoryReporter) -> None:
    import amqp
    import amqp.exceptions

    confirming = _connect(broker, confirm_publish=True)
    raised: list[BaseException] = []
    try:
        def calls() -> None:
            channel = confirming.channel()
            channel.basic_publish(amqp.Message(b"ok"), "", "sw-no-such-queue")  # confirmed, routed nowhere
            try:
                channel.basic_publish(amqp.Message(b"x"), exchange="sw.nowhere", routing_key="key")
            except amqp.exceptions.NotFound as e:
                raised.append(e)
            try:
                confirming.channel().basic_get("sw-missing-queue")
            except amqp.exceptions.NotFound as e:
                raised.append(e)

        _, spans = traced(reporter, calls)
    finally:
        confirming.collect()
    assert [(type(e).__name__, e.reply_code) for e in raised] == [("NotFound", 404), ("NotFound", 404)]  # type: ignore[attr-defined]
    assert [(s.op, s.error_occurred) for s in spans] == [
        ("RabbitMQ/Topic//Queue/sw-no-such-queue/Producer", False),  # one span per publish, not two
        ("RabbitMQ/Topic/sw.nowhere/Queue/key/Producer", True),
        ("/test", False)]
    assert "NotFound" in spans[1].logs[0].items[0].val
    (refused,) = [seg.spans for seg in reporter.segments if seg.spans[-1].op.endswith("/Consumer")]
    assert [(s.op, s.error_occurred, list(s.refs)) for s in refused] == [
        ("RabbitMQ/Topic//Queue/sw-missing-queue/Consumer", True, [])]


def test_a_confirm_channel_made_before_install_is_traced_once(broker: RabbitMQServer, queue: str, channel: Any,
                                                              reporter: MemoryReporter) -> None:
    import amqp

    from skywalking.plugins.sw_amqp import plugin

    plugin.uninstall()
    try:
        confirming = _connect(broker, confirm_publish=True)
        early = confirming.channel()  # binds the original basic_publish_confirm
    finally:
        assert plugin.install()
    try:
        _, spans = traced(reporter, lambda: early.basic_publish(amqp.Message(b"early"), "", queue))
    finally:
        confirming.close()
    assert [s.op for s in spans] == [f"RabbitMQ/Topic//Queue/{queue}/Producer", "/test"]
    assert "sw6" in _get(channel, queue).headers


def test_a_failing_callback_is_an_error_span_and_its_exception_unchanged(connection: Any, channel: Any, queue: str,
                                                                        reporter: MemoryReporter) -> None:
    import amqp

    class Boom(Exception):
        pass

    thrown: list[BaseException] = []

    def on_message(message: Any) -> None:
        with get_context().new_local_span("/work"):
            pass
        if message.body == b"bad":
            thrown.append(Boom(message.body))
            raise thrown[-1]

    channel.basic_consume(queue, callback=on_message, no_ack=True)
    traced(reporter, lambda: channel.basic_publish(amqp.Message(b"good"), "", queue))
    traced(reporter, lambda: channel.basic_publish(amqp.Message(b"bad"), "", queue))
    with pytest.raises(Boom) as info:
        for _ in range(50):
            try:
                connection.drain_events(timeout=0.2)
            except TimeoutError:
                pass
    assert info.value is thrown[0]
    entries = [seg.spans for seg in reporter.segments if seg.spans[-1].op.endswith("/Consumer")]
    assert [[s.op for s in spans] for spans in entries] == [["/work", f"RabbitMQ/Topic//Queue/{queue}/Consumer"]] * 2
    assert [(spans[-1].error_occurred, len(spans[-1].refs)) for spans in entries] == [(False, 1), (True, 1)]
    assert "Boom" in entries[1][-1].logs[0].items[0].val


def test_a_message_received_inside_a_request_is_its_own_segment(channel: Any, queue: str,
                                                                 reporter: MemoryReporter) -> None:
    import amqp

    traced(reporter, lambda: channel.basic_publish(amqp.Message(b"m"), "", queue))
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


@pytest.mark.parametrize("celery_traced", [False, True])
def test_a_celery_task_message_is_left_to_sw_celery(channel: Any, queue: str, reporter: MemoryReporter,
                                                     monkeypatch: pytest.MonkeyPatch, celery_traced: bool) -> None:
    """Kombu delivers Celery's task messages through py-amqp: while sw_celery is installed, its span of the task run
    continues the header and the delivery adds none (the expected data of tests/plugins/test_celery.py, run where
    kombu brings py-amqp along, checks the real thing)."""
    import amqp

    state = SimpleNamespace(plugin=SimpleNamespace(installed=celery_traced))  # what the agent loaded
    monkeypatch.setitem(sys.modules, "skywalking.plugins.sw_celery", state)
    task = amqp.Message(b"[]", application_headers={"lang": "py", "task": "sw.add", "id": "1"})
    traced(reporter, lambda: channel.basic_publish(task, "", queue))
    traced(reporter, lambda: channel.basic_publish(amqp.Message(b"plain"), "", queue))
    reporter.segments.clear()
    assert _get(channel, queue).headers["task"] == "sw.add"
    assert _get(channel, queue).body == b"plain"
    assert [seg.spans[0].op for seg in reporter.segments] == [f"RabbitMQ/Topic//Queue/{queue}/Consumer"] * (
        1 if celery_traced else 2)


def test_a_failure_of_the_plugin_publishes_and_consumes_untraced(channel: Any, queue: str, reporter: MemoryReporter,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import amqp

    from skywalking.plugins import sw_amqp

    def broken(*args: Any) -> Any:
        raise RuntimeError("plugin bug")

    monkeypatch.setattr(sw_amqp, "_broker", broken)
    _, spans = traced(reporter, lambda: channel.basic_publish(amqp.Message(b"plain"), "", queue))
    assert [s.op for s in spans] == ["/test"]
    reporter.segments.clear()
    received = _get(channel, queue)
    assert received.body == b"plain" and not received.headers
    assert not reporter.segments


def test_nothing_inside_an_exit_span(channel: Any, queue: str, reporter: MemoryReporter) -> None:
    import amqp

    def call() -> None:
        with get_context().new_exit_span(op="mq-layer", peer="somewhere"):
            channel.basic_publish(amqp.Message(b"inner"), "", queue)

    _, spans = traced(reporter, call)
    assert [s.op for s in spans] == ["mq-layer", "/test"]
    assert not _get(channel, queue).headers


def test_uninstall_restores_the_originals(broker: RabbitMQServer, channel: Any, queue: str,
                                          reporter: MemoryReporter) -> None:
    import amqp
    import amqp.channel
    import wrapt

    from skywalking.plugins.sw_amqp import plugin

    names = ("basic_publish", "_basic_publish", "basic_publish_confirm", "basic_consume", "basic_get")
    targets = [amqp.channel.Channel.__dict__[name] for name in names]
    assert plugin.installed and all(isinstance(t, wrapt.FunctionWrapper) for t in targets)
    confirming = _connect(broker, confirm_publish=True)
    bound_while_installed = confirming.channel()
    plugin.uninstall()
    try:
        assert [amqp.channel.Channel.__dict__[name] for name in names] == [t.__wrapped__ for t in targets]
        _, spans = traced(reporter, lambda: channel.basic_publish(amqp.Message(b"plain"), "", queue))
        assert [s.op for s in spans] == ["/test"]
        _, spans = traced(reporter, lambda: bound_while_installed.basic_publish(amqp.Message(b"bound"), "", queue))
        assert [s.op for s in spans] == ["/test"]
        assert [m.headers for m in (_get(channel, queue), _get(channel, queue))] == [None, None]
    finally:
        confirming.close()
        assert plugin.install()
    assert isinstance(amqp.channel.Channel.__dict__["basic_get"], wrapt.FunctionWrapper)
