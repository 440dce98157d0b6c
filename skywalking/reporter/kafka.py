"""``agent_protocol=kafka`` (v8 only): segments, logs and meters produced to the OAP's Kafka fetcher topics with
kafka-python (the ``kafka`` extra), as upstream does:

| topic (``kafka_topic_*``, ``<kafka_namespace>-`` prefixed when set) | key | value |
|---|---|---|
| ``skywalking-segments`` | segment id | ``SegmentObject`` |
| ``skywalking-logs`` | segment id of the record's trace context, else none | ``LogData`` |
| ``skywalking-meters`` | instance name | ``MeterDataCollection`` (a batch) |
| ``skywalking-managements`` | ``register-<instance>`` / ``<instance>`` | ``InstanceProperties`` / ``InstancePingPkg`` |

A batch is produced and flushed within a deadline; a failure of any message is ``Retry`` for the batch (the broker
may then hold some messages twice; the OAP keeps one segment per id). No profiling over Kafka.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from skywalking import config
from skywalking.reporter.data import Retry

if TYPE_CHECKING:
    from skywalking.reporter.data import Feed

FLUSH_TIMEOUT = 30.0  # seconds, one batch


def topic(name: str) -> str:
    return f"{config.kafka_namespace}-{name}" if config.kafka_namespace else name


class KafkaTransport:
    name = "kafka"
    kinds = ("log", "meter")  # besides segments

    def __init__(self, management: Callable[[], tuple[Any, Any]], meter_batch: Callable[[list[Any]], Any]) -> None:
        """``management()``: the ``InstanceProperties`` and ``InstancePingPkg`` to send; ``meter_batch``: the
        ``MeterDataCollection`` of a list of ``MeterData``. Raises ImportError without kafka-python."""
        from kafka import KafkaProducer

        self.management = management
        self.meter_batch = meter_batch
        servers = [s.strip() for s in config.kafka_bootstrap_servers.split(",") if s.strip()]
        self.target = ",".join(servers)
        self.producer = KafkaProducer(bootstrap_servers=servers, **config.kafka_producer_config())
        self._beats = 0

    def _produce(self, records: list[tuple[str, bytes | None, bytes]]) -> None:
        from kafka.errors import KafkaError

        try:
            futures = [self.producer.send(t, key=key, value=value) for t, key, value in records]
            self.producer.flush(FLUSH_TIMEOUT)
            for future in futures:
                future.get(timeout=0)
        except KafkaError as exc:
            raise Retry(f"kafka {self.target}: {exc!r}") from None

    def send(self, feed: Feed, messages: list[Any]) -> None:
        if feed.kind == "segment":
            name = topic(config.kafka_topic_segment)
            records = [(name, m.traceSegmentId.encode(), m.SerializeToString()) for m in messages]
        elif feed.kind == "log":
            name = topic(config.kafka_topic_log)
            records = [(name, m.traceContext.traceSegmentId.encode() or None, m.SerializeToString())
                       for m in messages]
        else:
            instance = messages[0].serviceInstance.encode()
            records = [(topic(config.kafka_topic_meter), instance, self.meter_batch(messages).SerializeToString())]
        self._produce(records)

    def manage(self) -> float:
        properties, ping = self.management()
        name = topic(config.kafka_topic_management)
        records: list[tuple[str, bytes | None, bytes]] = []
        if self._beats % max(1, config.agent_collector_properties_report_period_factor) == 0:
            records.append((name, f"register-{properties.serviceInstance}".encode(), properties.SerializeToString()))
        records.append((name, ping.serviceInstance.encode(), ping.SerializeToString()))
        self._produce(records)
        self._beats += 1
        return float(config.HEARTBEAT_PERIOD)

    def close(self) -> None:
        self.producer.close(timeout=5)
