"""sw_pulsar against tests/plugins/standins/pulsar.py, a broker stand-in speaking Pulsar's binary protocol on
127.0.0.1 (Pulsar itself does not install here): the real pulsar-client talks to it over TCP.

The service test runs a producer (apps/pulsar_producer_app.py, called with sw6 by a traced caller) and a consumer
(apps/pulsar_consumer_app.py) in two processes and checks expected/pulsar.json: one trace from the caller through
the producer's exit spans to the consumer's entry spans (receive, listener, batch_receive, and a message the
listener forwards), with the failing sends and receive. The in-process tests check what the file cannot: the
header in the message on the wire, the caller's dict, the exceptions the application gets, timeouts, our own
failures, uninstall."""

from __future__ import annotations

import asyncio
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
from tests.plugins.standins.pulsar import PulsarStandin
from tests.protocol.procs import wait_for

pytest.importorskip("pulsar")  # every test here drives pulsar

HERE = Path(__file__).parent
PRODUCER = HERE / "apps" / "pulsar_producer_app.py"
CONSUMER = HERE / "apps" / "pulsar_consumer_app.py"


@pytest.fixture(scope="module")
def broker() -> Iterator[PulsarStandin]:
    yield from serve(PulsarStandin, "pulsar")


# -- two services, their caller and the collector -----------------------------------------------------------------

def test_a_producer_and_a_consumer_process_form_one_trace(broker: PulsarStandin) -> None:
    broker.silent.add("sw-silent")
    with Services() as services:
        consumer = services.python(CONSUMER, broker.url, name="plugin-pulsar-consumer", ready="ready", timeout=60)
        assert "refused AlreadyClosed\n" in consumer.stdout, consumer.stdout
        front = port_of(services.python(PRODUCER, broker.url, name="plugin-pulsar-producer"))
        answer = services.call_front(front, "/publish")
        assert answer == {"async": "Ok", "props_untouched": True, "closed": "AlreadyClosed", "silent": "Timeout"}, \
            answer

        wait_printed(consumer, [f"consumed {line}\n" for line in (
            "sw-receive to the receive consumer", "sw-listener to the listener consumer",
            "sw-batch to the batch consumer", "sw-batch forwarded to the listener consumer")])
        segments = services.check("pulsar.json", segments=7, front=front, broker=broker.port)
        one_trace(segments, apart="Pulsar/Topic/sw-gone/Consumer")
        assert broker.unknown == []


# -- in this process ----------------------------------------------------------------------------------------------

@pytest.fixture
def client(broker: PulsarStandin, reporter: MemoryReporter) -> Iterator[Any]:
    import pulsar

    made = pulsar.Client(broker.url, operation_timeout_seconds=10)  # after the agent: its URL is recorded
    yield made
    made.close()


@pytest.fixture
def topic() -> str:
    return f"sw-test-{uuid.uuid4().hex[:8]}"


def _tags(span: Any) -> dict[str, str]:
    return {t.key: t.val for t in span.tags}


def test_the_header_goes_into_a_copy_of_the_properties(client: Any, topic: str, broker: PulsarStandin,
                                                      reporter: MemoryReporter) -> None:
    producer = client.create_producer(f"persistent://public/default/{topic}")
    props = {"app": "x"}
    _, spans = traced(reporter, lambda: (producer.send(b"one", props), producer.send(b"two")))
    assert props == {"app": "x"}
    assert [(s.op, s.peer, s.component.value, s.layer.name) for s in spans[:2]] == [
        (f"Pulsar/Topic/{topic}/Producer", broker.url, 73, "MQ")] * 2
    assert _tags(spans[0]) == {"mq.broker": broker.url, "mq.topic": topic}
    one, two = broker.messages(topic)
    assert one.payload == b"one" and one.properties["app"] == "x" and set(one.properties) == {"app", "sw6"}
    assert one.properties["sw6"].startswith("1-") and set(two.properties) == {"sw6"}
    assert one.properties["sw6"] != two.properties["sw6"]  # each send is its own exit span


def test_each_client_gives_its_own_url_and_a_failover_client_its_primary(client: Any, topic: str,
                                                                          broker: PulsarStandin,
                                                                          reporter: MemoryReporter) -> None:
    import pulsar

    other = PulsarStandin()  # a second broker: each producer reports the URL of its own client
    clients = [pulsar.Client(service_url=other.url)]
    if hasattr(pulsar, "AutoClusterFailover"):  # newer releases
        failover = pulsar.AutoClusterFailover(pulsar.ServiceInfo(broker.url), [pulsar.ServiceInfo(other.url)])
        clients.append(pulsar.Client(failover))
    try:
        producers = [made.create_producer(topic) for made in (client, *clients)]
        _, spans = traced(reporter, lambda: [producer.send(b"x") for producer in producers])
        assert [s.peer for s in spans[:-1]] == [broker.url, other.url, broker.url][:len(producers)]
    finally:
        for made in clients:
            made.close()
        other.stop()


def test_send_async_is_traced_until_queued_with_the_header(client: Any, topic: str, broker: PulsarStandin,
                                                          reporter: MemoryReporter) -> None:
    producer = client.create_producer(topic)
    done = threading.Event()
    results: list[str] = []

    def on_sent(result: Any, message_id: Any) -> None:
        results.append(result.name)
        done.set()

    props = {"k": "v"}
    _, spans = traced(reporter, lambda: producer.send_async(b"async", on_sent, props))
    assert done.wait(10) and results == ["Ok"] and props == {"k": "v"}
    assert [s.op for s in spans] == [f"Pulsar/Topic/{topic}/Producer", "/test"] and not spans[0].error_occurred
    (stored,) = broker.messages(topic)
    assert set(stored.properties) == {"k", "sw6"}


def test_sw8_when_configured(broker: PulsarStandin, start_agent: Any, topic: str) -> None:
    import pulsar

    reporter = start_agent(agent_protocol_version="v8")
    client = pulsar.Client(broker.url)
    try:
        consumer = client.subscribe(topic, "sub")
        producer = client.create_producer(topic)
        traced(reporter, lambda: producer.send(b"v8"))
        message = consumer.receive(5000)
        assert "sw8" in message.properties() and "sw6" not in message.properties(), message.properties()
        assert reporter.wait_for(2)
        entry = reporter.segments[-1].spans[0]
        assert entry.op == f"Pulsar/Topic/{topic}/Consumer" and len(entry.refs) == 1
        assert str(reporter.segments[-1].related_traces[0]) == str(reporter.segments[0].related_traces[0])
    finally:
        client.close()


def test_receive_continues_the_trace_in_a_segment_of_its_own(client: Any, topic: str, broker: PulsarStandin,
                                                            reporter: MemoryReporter) -> None:
    """receive() inside a traced request: the message's entry span continues the producer's trace in a segment of
    its own; the request's segment keeps its trace and its active span."""
    consumer = client.subscribe(topic, "sub")
    producer = client.create_producer(topic)
    traced(reporter, lambda: producer.send(b"m"))
    producer_segment = reporter.segments[-1]
    reporter.clear()
    with get_context().new_entry_span("/request", inbound_carrier({}.get)) as request:
        message = consumer.receive(5000)
        assert get_context().active_span is request
    assert message.data() == b"m"
    assert reporter.wait_for(2)
    by_op = {seg.spans[-1].op: seg for seg in reporter.segments}
    received = by_op[f"Pulsar/Topic/{topic}/Consumer"]
    entry = received.spans[0]
    assert str(received.related_traces[0]) == str(producer_segment.related_traces[0])
    assert entry.refs[0].segment_id == producer_segment.segment_id
    assert entry.refs[0].span_id == producer_segment.spans[0].sid
    assert (entry.peer, entry.component.value, _tags(entry)) == (broker.url, 74, {"mq.broker": broker.url,
                                                                                   "mq.topic": topic})
    assert [s.op for s in by_op["/request"].spans] == ["/request"]


def test_batch_receive_makes_a_span_per_message(client: Any, topic: str, reporter: MemoryReporter) -> None:
    import pulsar

    consumer = client.subscribe(topic, "sub", batch_receive_policy=pulsar.ConsumerBatchReceivePolicy(2, -1, 2000))
    producer = client.create_producer(topic)
    traced(reporter, lambda: (producer.send(b"1"), producer.send(b"2")))
    header_segment = reporter.segments[-1]
    reporter.clear()
    messages = consumer.batch_receive()
    assert [m.data() for m in messages] == [b"1", b"2"]
    assert reporter.wait_for(2)
    assert [[s.op for s in seg.spans] for seg in reporter.segments] == [[f"Pulsar/Topic/{topic}/Consumer"]] * 2
    assert [seg.spans[0].refs[0].span_id for seg in reporter.segments] == [s.sid for s in header_segment.spans[:2]]


def test_a_receive_timeout_makes_no_span_and_raises_untouched(client: Any, topic: str,
                                                              reporter: MemoryReporter) -> None:
    import pulsar

    consumer = client.subscribe(topic, "sub")
    with pytest.raises(pulsar.Timeout):
        consumer.receive(100)
    assert not reporter.wait_for(1, timeout=0.5)


def test_failing_sends_and_receives_are_errors_and_raised_untouched(client: Any, topic: str, broker: PulsarStandin,
                                                                    reporter: MemoryReporter) -> None:
    import pulsar

    closed = client.create_producer(topic)
    closed.close()
    broker.silent.add(f"{topic}-silent")
    silent = client.create_producer(f"{topic}-silent", send_timeout_millis=1000)
    raised: list[BaseException] = []

    def calls() -> None:
        for producer in (closed, silent):
            try:
                producer.send(b"x")
            except pulsar.PulsarException as e:
                raised.append(e)

    _, spans = traced(reporter, calls)
    assert [type(e) for e in raised] == [pulsar.AlreadyClosed, pulsar.Timeout]
    assert [(s.op, s.error_occurred) for s in spans] == [(f"Pulsar/Topic/{topic}/Producer", True),
                                                          (f"Pulsar/Topic/{topic}-silent/Producer", True),
                                                          ("/test", False)]
    assert "AlreadyClosed" in spans[0].logs[0].items[0].val and "Timeout" in spans[1].logs[0].items[0].val

    reporter.clear()
    consumer = client.subscribe(topic, "sub")
    consumer.close()
    with pytest.raises(pulsar.AlreadyClosed):
        consumer.receive(100)
    assert reporter.wait_for(1)
    (refused,) = reporter.segments[-1].spans
    assert (refused.op, refused.error_occurred, list(refused.refs), refused.component.value) == (
        f"Pulsar/Topic/{topic}/Consumer", True, [], 74)
    assert "AlreadyClosed" in refused.logs[0].items[0].val

    reporter.clear()
    listening = client.subscribe(f"{topic}-listened", "sub", message_listener=lambda consumer, message: None)
    with pytest.raises(pulsar.InvalidConfiguration):
        listening.receive(100)  # a consumer with a listener receives nothing by hand
    assert reporter.wait_for(1)
    assert [(s.op, s.error_occurred) for s in reporter.segments[-1].spans] == [
        (f"Pulsar/Topic/{topic}-listened/Consumer", True)]


def test_a_listener_runs_inside_the_entry_span_and_its_failure_is_an_error(client: Any, topic: str,
                                                                          reporter: MemoryReporter) -> None:
    class Boom(Exception):
        pass

    seen: list[Any] = []
    handled = threading.Event()

    def listener(consumer: Any, message: Any) -> None:
        seen.append(get_context().active_span)
        with get_context().new_local_span("/work"):
            pass
        handled.set()
        if message.data() == b"bad":
            raise Boom("listener failed")

    client.subscribe(topic, "sub", message_listener=listener)
    producer = client.create_producer(topic)
    traced(reporter, lambda: producer.send(b"bad"))
    producer_segment = reporter.segments[-1]
    assert handled.wait(10)
    wait_for(lambda: len(reporter.segments) == 2, what="the listener's segment")
    listened = reporter.segments[-1]
    assert [s.op for s in listened.spans] == ["/work", f"Pulsar/Topic/{topic}/Consumer"]
    entry = listened.spans[-1]
    assert seen == [entry] and entry.error_occurred and "Boom: listener failed" in entry.logs[0].items[0].val
    assert entry.refs[0].segment_id == producer_segment.segment_id


def test_the_asyncio_api(broker: PulsarStandin, topic: str, reporter: MemoryReporter) -> None:
    aio = pytest.importorskip("pulsar.asyncio")

    async def run() -> tuple[dict[str, str], Any, BaseException | None]:
        client = aio.Client(broker.url)
        raised = None
        try:
            consumer = await client.subscribe(topic, "sub")
            producer = await client.create_producer(topic)  # batching on: the header goes into the batch entry
            props = {"k": "v"}
            with get_context().new_local_span("/aio"):
                await producer.send(b"aio", props)
            message = await consumer.receive()
            closed = await client.create_producer(f"{topic}-closed")
            await closed.close()
            with get_context().new_local_span("/aio-closed"):
                try:
                    await closed.send(b"x")
                except aio.PulsarException as e:
                    raised = e
            return props, message, raised
        finally:
            await client.close()

    props, message, raised = asyncio.run(run())
    assert props == {"k": "v"} and message.data() == b"aio" and set(message.properties()) == {"k", "sw6"}
    assert type(raised).__name__ == "PulsarException" and raised.error().name == "AlreadyClosed"
    assert reporter.wait_for(3)
    by_op = {seg.spans[-1].op: seg for seg in reporter.segments}
    sent, received, failed = by_op["/aio"], by_op[f"Pulsar/Topic/{topic}/Consumer"], by_op["/aio-closed"]
    assert [(s.op, s.peer, s.error_occurred) for s in sent.spans] == [
        (f"Pulsar/Topic/{topic}/Producer", broker.url, False), ("/aio", None, False)]
    assert received.spans[0].refs[0].span_id == sent.spans[0].sid and received.spans[0].peer == broker.url
    assert [(s.op, s.error_occurred) for s in failed.spans] == [(f"Pulsar/Topic/{topic}-closed/Producer", True),
                                                                ("/aio-closed", False)]


def test_a_failure_of_the_plugin_sends_and_receives_untraced(client: Any, topic: str, broker: PulsarStandin,
                                                             reporter: MemoryReporter,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from skywalking.plugins import sw_pulsar

    def broken(*args: Any) -> Any:
        raise RuntimeError("plugin bug")

    consumer = client.subscribe(topic, "sub")
    producer = client.create_producer(topic)
    monkeypatch.setattr(sw_pulsar, "_tag", broken)
    _, spans = traced(reporter, lambda: producer.send(b"plain", {"a": "b"}))
    assert [s.op for s in spans] == ["/test"]
    reporter.clear()
    message = consumer.receive(5000)
    assert message.data() == b"plain" and message.properties() == {"a": "b"}
    assert broker.messages(topic)[0].properties == {"a": "b"}
    assert not reporter.wait_for(1, timeout=0.3)


def test_nothing_inside_an_exit_span(client: Any, topic: str, reporter: MemoryReporter) -> None:
    producer = client.create_producer(topic)

    def call() -> None:
        with get_context().new_exit_span(op="mq-layer", peer="somewhere"):
            producer.send(b"inner")

    _, spans = traced(reporter, call)
    assert [s.op for s in spans] == ["mq-layer", "/test"]


def test_uninstall_restores_the_originals(client: Any, topic: str, broker: PulsarStandin,
                                          reporter: MemoryReporter) -> None:
    import pulsar
    import wrapt

    from skywalking.plugins.sw_pulsar import plugin

    names = [(pulsar.Client, "__init__"), (pulsar.Client, "create_producer"), (pulsar.Client, "subscribe"),
             (pulsar.Producer, "send"), (pulsar.Producer, "send_async"), (pulsar.Consumer, "receive"),
             (pulsar.Consumer, "batch_receive")]
    targets = [cls.__dict__[name] for cls, name in names]
    assert plugin.installed and all(isinstance(t, wrapt.FunctionWrapper) for t in targets)
    producer = client.create_producer(topic)
    plugin.uninstall()
    try:
        assert [cls.__dict__[name] for cls, name in names] == [t.__wrapped__ for t in targets]
        _, spans = traced(reporter, lambda: producer.send(b"plain"))
        assert [s.op for s in spans] == ["/test"] and broker.messages(topic)[0].properties == {}
    finally:
        assert plugin.install()
    assert isinstance(pulsar.Producer.__dict__["send"], wrapt.FunctionWrapper)


def test_uninstall_restores_the_asyncio_originals(reporter: MemoryReporter) -> None:
    aio = pytest.importorskip("pulsar.asyncio")
    import wrapt

    from skywalking.plugins.sw_pulsar import plugin

    names = [(aio.Client, "__init__"), (aio.Client, "create_producer"), (aio.Producer, "send"),
             (aio.Consumer, "receive")]
    targets = [cls.__dict__[name] for cls, name in names]
    assert all(isinstance(t, wrapt.FunctionWrapper) for t in targets)
    plugin.uninstall()
    try:
        assert [cls.__dict__[name] for cls, name in names] == [t.__wrapped__ for t in targets]
    finally:
        assert plugin.install()
    assert isinstance(aio.Producer.__dict__["send"], wrapt.FunctionWrapper)
