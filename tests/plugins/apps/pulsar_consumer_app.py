"""The consumer service of the sw_pulsar test, traced by the agent (configured by SW_* variables).

``pulsar_consumer_app.py <service url>``: one ``pulsar.Client`` for the broker at <service url> (the test's
stand-in). At start it calls ``receive`` on a closed consumer of ``sw-gone`` (``AlreadyClosed``: printed as
``refused AlreadyClosed``), then consumes:

* ``sw-receive`` with ``Consumer.receive(timeout_millis=200)`` in a loop (timeouts are the loop's idle turns);
* ``sw-listener`` with a ``message_listener`` that handles each message in a local span and forwards it to
  ``sw-batch``;
* ``sw-batch`` with ``Consumer.batch_receive`` in a loop.

Prints ``consumed <topic> <body>`` per message and ``ready`` once every consumer is subscribed.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from skywalking import agent
from skywalking.trace.context import get_context

agent.start()

import pulsar  # noqa: E402  (after the agent: patched on import)

from tests.plugins.apps.consumers import run_forever  # noqa: E402

CLIENT = pulsar.Client(sys.argv[1], operation_timeout_seconds=10)
_print = threading.Lock()


def report(topic: str, body: bytes) -> None:
    with _print:  # one line per message, whichever thread prints it
        print(f"consumed {topic} {body.decode()}", flush=True)


def refused() -> None:
    gone = CLIENT.subscribe("sw-gone", "sw-app")
    gone.close()
    try:
        gone.receive(100)
    except pulsar.PulsarException as e:
        print(f"refused {type(e).__name__}", flush=True)


def receive_loop(consumer: Any) -> None:
    while True:
        try:
            message = consumer.receive(timeout_millis=200)
        except pulsar.Timeout:
            continue
        report("sw-receive", message.data())
        consumer.acknowledge(message)


def batch_loop(consumer: Any) -> None:
    while True:
        for message in consumer.batch_receive():
            report("sw-batch", message.data())
            consumer.acknowledge(message)


def main() -> None:
    refused()
    forward = CLIENT.create_producer("sw-batch")

    def on_message(consumer: Any, message: Any) -> None:
        with get_context().new_local_span("/handle/listener"):
            report("sw-listener", message.data())
        forward.send(b"forwarded " + message.data())
        consumer.acknowledge(message)

    CLIENT.subscribe("sw-listener", "sw-app", message_listener=on_message)
    receiving = CLIENT.subscribe("sw-receive", "sw-app")
    batching = CLIENT.subscribe("sw-batch", "sw-app")
    for loop, consumer in ((receive_loop, receiving), (batch_loop, batching)):
        threading.Thread(target=loop, args=(consumer,), daemon=True).start()
    run_forever()


if __name__ == "__main__":
    main()
