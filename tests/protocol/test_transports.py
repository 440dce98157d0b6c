"""``agent_protocol=http`` and ``kafka`` under v8: segments, logs (and over Kafka, meters) reach the backend with
instance properties and keep-alives; under v6 they fall back to gRPC saying why."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.protocol.procs import Collector, free_port, wait_for
from tests.protocol.test_telemetry import run


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    col = Collector()
    yield col
    col.stop()


def test_http_delivers_segments_logs_properties_and_keep_alives_to_the_rest_receivers(collector: Collector) -> None:
    result, stderr = run(collector, "logs", SW_AGENT_NAME="over-http", SW_AGENT_PROTOCOL="http",
                         SW_AGENT_COLLECTOR_BACKEND_SERVICES=collector.http, SW_AGENT_METER_REPORTER_ACTIVE="true",
                         SW_AGENT_COLLECTOR_HEARTBEAT_PERIOD="1")
    trace = collector.trace(result["traceId"], 1)
    assert trace["segments"][0]["segmentId"] == result["segmentId"]
    logs = wait_for(lambda: collector.api("/api/logs?service=over-http") or None, what="logs over HTTP")
    assert len(logs) == 3 and {d["traceContext"]["traceId"] for d in logs if "traceContext" in d} == \
        {result["traceId"]}
    rest = collector.api("/api/stats")["restRequests"]
    assert rest["/v3/segments"] >= 1 and rest["/v3/logs"] >= 1 and rest["/v3/management/keepAlive"] >= 1
    instances = collector.api("/api/inventory")["v3Instances"]
    mine = [i for i in instances if i["service"] == "over-http"]
    assert mine and mine[0]["properties"]["language"] == "python"
    assert result["stats"]["log"]["delivered"] == 3
    assert "not reported over agent_protocol=http" in stderr and "agent_meter_reporter_active" in stderr
    assert "meter" not in result["stats"]  # the OAP has no REST meter receiver


def test_http_to_an_unreachable_backend_counts_what_it_drops(collector: Collector) -> None:
    # nothing listens there: each batch is retried until the stop, then counted
    result, stderr = run(collector, "logs", SW_AGENT_NAME="http-down", SW_AGENT_PROTOCOL="http",
                         SW_AGENT_COLLECTOR_BACKEND_SERVICES=f"127.0.0.1:{free_port()}",
                         SW_AGENT_METER_REPORTER_ACTIVE="false")
    books = result["stats"]["log"]
    assert books["created"] == 3 and books["delivered"] == 0 and books["dropped_total"] == 3
    assert "log(s) not sent before stop" in stderr


def test_http_to_a_backend_that_never_answers_counts_the_batch_in_flight_at_stop(collector: Collector) -> None:
    import socket
    import threading

    silent = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    threading.Thread(target=lambda: [held.append(silent.accept()[0]) for _ in range(8)], daemon=True).start()
    try:
        result, stderr = run(collector, "logs", SW_AGENT_NAME="http-silent", SW_AGENT_PROTOCOL="http",
                             SW_AGENT_COLLECTOR_BACKEND_SERVICES=f"127.0.0.1:{silent.getsockname()[1]}",
                             SW_AGENT_METER_REPORTER_ACTIVE="false")
    finally:
        for conn in held:
            conn.close()
        silent.close()
    books = result["stats"]["log"]
    assert books["created"] == 3 and books["delivered"] == 0 and books["dropped_total"] == 3
    assert books["dropped"]["not sent before stop: the backend did not answer"] >= 1
    assert "not sent before stop: the backend had not answered" in stderr


def test_under_v6_http_falls_back_to_grpc_saying_why(collector: Collector) -> None:
    result, stderr = run(collector, "logs", "v6", SW_AGENT_NAME="http-v6", SW_AGENT_PROTOCOL="http",
                         SW_AGENT_REGISTER_WAIT="10")
    assert "OAP 6.6.0 receives only gRPC" in stderr
    assert collector.trace(result["traceId"], 1)["segments"][0]["service"] == "http-v6"


def test_kafka_produces_segments_logs_meters_and_management_to_the_oap_topics(collector: Collector) -> None:
    pytest.importorskip("kafka")
    from kafka import KafkaConsumer, TopicPartition

    from skywalking.protocol_v8.gen.language_agent.Meter_pb2 import MeterDataCollection
    from skywalking.protocol_v8.gen.language_agent.Tracing_pb2 import SegmentObject
    from skywalking.protocol_v8.gen.logging.Logging_pb2 import LogData
    from skywalking.protocol_v8.gen.management.Management_pb2 import InstancePingPkg, InstanceProperties
    from tests.plugins.kafka import KafkaBroker, kafka_broker_binary

    with KafkaBroker(kafka_broker_binary()) as broker:
        result, stderr = run(collector, "logs", SW_AGENT_NAME="over-kafka", SW_AGENT_PROTOCOL="kafka",
                             SW_KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap, SW_KAFKA_NAMESPACE="prod",
                             SW_KAFKA_REPORTER_CONFIG_ACKS="1", SW_AGENT_METER_REPORTER_PERIOD="1")
        assert "is not a company-skywalking option" not in stderr  # SW_KAFKA_REPORTER_CONFIG_* are producer args
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, consumer_timeout_ms=3000,
                                 auto_offset_reset="earliest", enable_auto_commit=False)
        topics = ("prod-skywalking-segments", "prod-skywalking-logs", "prod-skywalking-meters",
                  "prod-skywalking-managements")
        consumer.assign([TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or {0}])
        got: dict[str, list[tuple[bytes | None, bytes]]] = {t: [] for t in topics}
        for record in consumer:
            got[record.topic].append((record.key, record.value))
        consumer.close()
    (key, value), = got["prod-skywalking-segments"]
    segment = SegmentObject.FromString(value)
    assert key == result["segmentId"].encode() and segment.traceId == result["traceId"]
    assert segment.service == "over-kafka" and segment.spans[0].operationName == "/orders/{id}"
    logs = [LogData.FromString(v) for _, v in got["prod-skywalking-logs"]]
    assert len(logs) == 3 == result["stats"]["log"]["delivered"]
    assert {log.traceContext.traceId for log in logs if log.traceContext.traceId} == {result["traceId"]}
    meters = [m for _, v in got["prod-skywalking-meters"] for m in MeterDataCollection.FromString(v).meterData]
    assert {m.singleValue.name for m in meters} >= {"instance_pvm_thread_active_count"}
    assert {k for k, _ in got["prod-skywalking-meters"]} == {b"logs-1"}
    management = dict(got["prod-skywalking-managements"])
    assert InstanceProperties.FromString(management[b"register-logs-1"]).service == "over-kafka"
    assert InstancePingPkg.FromString(management[b"logs-1"]).serviceInstance == "logs-1"
