"""A one-shot process of the sw_kafka test, traced by the agent (configured by SW_* variables).

``kafka_batch_app.py <bootstrap> <topic>``: inside a local span ``/batch``, sends ``1``, ``2`` and ``3`` to partition
0 of <topic> with a ``KafkaProducer`` (kafka-python), waiting for each acknowledgement; then reads them with a
``KafkaConsumer`` (group id ``sw-batch``, assigned partition 0, from the earliest offset) and prints ``batch <n>``
per non-empty poll; stops the agent (flushing its segments) and prints ``done``.
"""

from __future__ import annotations

import sys

from skywalking import agent
from skywalking.trace.context import get_context

agent.start()

from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402  (after the agent: patched on import)


def main() -> None:
    bootstrap, topic = sys.argv[1], sys.argv[2]
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    with get_context().new_local_span("/batch"):
        for body in (b"1", b"2", b"3"):
            producer.send(topic, body, partition=0).get(10)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id="sw-batch", auto_offset_reset="earliest")
    consumer.assign([TopicPartition(topic, 0)])
    received = 0
    while received < 3:
        for batch in consumer.poll(200).values():
            received += len(batch)
            print(f"batch {len(batch)}", flush=True)
    consumer.close()
    agent.stop()
    print("done", flush=True)


if __name__ == "__main__":
    main()
