"""The consumer service of the sw_confluent_kafka test, traced by the agent (configured by SW_* variables).

``confluent_consumer_app.py <bootstrap servers>``: first subscribes a ``Consumer`` (group ``sw-missing-group``) to
the topic ``sw-missing``, which does not exist, and polls until the error event for it arrives (printing
``refused <error name>``); then consumes, each in a thread of its own, with subscriptions (the topics exist):

* ``sw-poll`` with ``Consumer.poll`` (group ``sw-poll-group``);
* ``sw-batch`` with ``Consumer.consume(2, ...)`` (group ``sw-batch-group``): both messages in one batch;
* ``sw-deser`` with a ``DeserializingConsumer`` (string values, group ``sw-deser-group``).

Prints ``consumed <topic> <value>`` per message and ``ready`` once every consumer has subscribed.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from skywalking import agent

agent.start()

import confluent_kafka  # noqa: E402  (after the agent: patched on import)
from confluent_kafka.serialization import StringDeserializer  # noqa: E402

from tests.plugins.apps.consumers import run_consumers  # noqa: E402

SERVERS = sys.argv[1]
_print = threading.Lock()


def config(group: str, **extra: Any) -> dict[str, Any]:
    # a short session timeout: the broker (Tansu) answers the first group join after about half of it
    return {"bootstrap.servers": SERVERS, "group.id": group, "auto.offset.reset": "earliest",
            "session.timeout.ms": 2000, "heartbeat.interval.ms": 500, **extra}


def report(topic: str, value: Any) -> None:
    with _print:  # one line per message, whichever thread prints it
        text = value.decode() if isinstance(value, bytes) else value
        print(f"consumed {topic} {text}", flush=True)


def missing() -> None:
    consumer = confluent_kafka.Consumer(config("sw-missing-group"))
    consumer.subscribe(["sw-missing"])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is not None:
                print(f"refused {message.error().name()}", flush=True)
                return
        raise SystemExit("no error for the missing topic")
    finally:
        consumer.close()


def poll_consumer(registered: threading.Event) -> None:
    consumer = confluent_kafka.Consumer(config("sw-poll-group"))
    consumer.subscribe(["sw-poll"])
    registered.set()
    while True:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            report("sw-poll", message.value())


def batch_consumer(registered: threading.Event) -> None:
    consumer = confluent_kafka.Consumer(config("sw-batch-group"))
    consumer.subscribe(["sw-batch"])
    registered.set()
    while True:
        for message in consumer.consume(2, 5):
            if message.error() is None:
                report("sw-batch", message.value())


def deserializing_consumer(registered: threading.Event) -> None:
    consumer = confluent_kafka.DeserializingConsumer(config("sw-deser-group", **{
        "value.deserializer": StringDeserializer()}))
    consumer.subscribe(["sw-deser"])
    registered.set()
    while True:
        message = consumer.poll(0.5)
        if message is not None:
            report("sw-deser", message.value())


def main() -> None:
    missing()
    run_consumers(poll_consumer, batch_consumer, deserializing_consumer)


if __name__ == "__main__":
    main()
