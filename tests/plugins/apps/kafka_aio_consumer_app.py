"""The consumer service of the sw_aiokafka test, traced by the agent (configured by SW_* variables).

``kafka_aio_consumer_app.py <bootstrap>``: an ``AIOKafkaConsumer`` with group id ``sw-group``, assigned partition 0
of topic ``sw-aiokafka`` (read from the earliest offset) and read by async iteration (one ``getone`` per record).
Prints ``ready`` once assigned and ``consumed <body>`` per record. (Manual assignment: Tansu's group join works
only with aiokafka 0.10+; the subscribed case is an in-process test.)
"""

from __future__ import annotations

import asyncio
import sys

from skywalking import agent

agent.start()

from aiokafka import AIOKafkaConsumer  # noqa: E402  (after the agent: patched on import)
from aiokafka.structs import TopicPartition  # noqa: E402


async def consume() -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=sys.argv[1], group_id="sw-group", auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition("sw-aiokafka", 0)])
        print("ready", flush=True)
        async for record in consumer:
            print(f"consumed {record.value.decode()}", flush=True)
    finally:
        await consumer.stop()


def main() -> None:
    try:
        asyncio.run(consume())
    finally:
        agent.stop()


if __name__ == "__main__":
    main()
