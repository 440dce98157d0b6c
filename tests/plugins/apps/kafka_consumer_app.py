"""The consumer service of the sw_kafka test, traced by the agent (configured by SW_* variables).

``kafka_consumer_app.py <bootstrap>``: a ``KafkaConsumer`` (kafka-python) with group id ``sw-group``, assigned
partition 0 of topic ``sw-kafka`` (read from the earliest offset, one record per poll so that every record gets a
span of its own). Prints ``ready`` once assigned and ``consumed <body>`` per record. (Manual assignment: Tansu's
group join works only with kafka-python 2.2+; the subscribed case is an in-process test.)
"""

from __future__ import annotations

import sys

from skywalking import agent

agent.start()

from kafka import KafkaConsumer, TopicPartition  # noqa: E402  (after the agent: patched on import)


def main() -> None:
    consumer = KafkaConsumer(bootstrap_servers=sys.argv[1], group_id="sw-group", auto_offset_reset="earliest",
                             max_poll_records=1)
    consumer.assign([TopicPartition("sw-kafka", 0)])
    print("ready", flush=True)
    try:
        while True:
            for batch in consumer.poll(200).values():
                for record in batch:
                    print(f"consumed {record.value.decode()}", flush=True)
    finally:
        consumer.close()
        agent.stop()


if __name__ == "__main__":
    main()
