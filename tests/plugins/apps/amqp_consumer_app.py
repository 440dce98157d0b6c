"""The consumer service of the sw_amqp test, traced by the agent (configured by SW_* variables).

``amqp_consumer_app.py <amqp port>``: declares (and purges) the queues ``sw-amqp-callback``, ``sw-amqp-direct``
(bound to the direct exchange ``sw.amqp.direct`` with routing key ``direct.key``) and ``sw-amqp-get``, tries a
``basic_get`` from the missing queue ``sw-missing`` (the broker refuses it), then consumes, each on a connection and
thread of its own:

* ``sw-amqp-callback`` and ``sw-amqp-direct`` with ``basic_consume`` callbacks (``drain_events`` loop): the first
  forwards each message to ``sw-amqp-get``, the second handles it in a local span;
* ``sw-amqp-get`` by polling ``basic_get``.

Prints ``consumed <queue> <body>`` per message and ``ready`` once every consumer is registered.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from skywalking import agent
from skywalking.trace.context import get_context

agent.start()

import amqp  # noqa: E402  (after the agent: patched on import)
import amqp.exceptions  # noqa: E402

from tests.plugins.apps.consumers import run_consumers  # noqa: E402

HOST = f"127.0.0.1:{int(sys.argv[1])}"
QUEUES = ("sw-amqp-callback", "sw-amqp-direct", "sw-amqp-get")

_print = threading.Lock()


def report(queue: str, body: bytes) -> None:
    with _print:  # one line per message, whichever thread prints it
        print(f"consumed {queue} {body.decode()}", flush=True)


def declare() -> None:
    with amqp.Connection(HOST) as connection:
        channel = connection.channel()
        channel.exchange_declare("sw.amqp.direct", "direct", auto_delete=False)
        for queue in QUEUES:
            channel.queue_declare(queue, auto_delete=False)
            channel.queue_purge(queue)
        channel.queue_bind("sw-amqp-direct", "sw.amqp.direct", routing_key="direct.key")
        try:
            connection.channel().basic_get("sw-missing")
        except amqp.exceptions.NotFound as e:
            print(f"refused {e.reply_code}", flush=True)


def callback_consumer(registered: threading.Event) -> None:
    connection = amqp.Connection(HOST)
    connection.connect()
    channel = connection.channel()

    def forward(message: Any) -> None:
        report("sw-amqp-callback", message.body)
        channel.basic_publish(amqp.Message(b"forwarded " + message.body), "", "sw-amqp-get")
        channel.basic_ack(message.delivery_tag)

    def handle(message: Any) -> None:
        with get_context().new_local_span("/handle/direct"):
            report("sw-amqp-direct", message.body)

    channel.basic_consume("sw-amqp-callback", callback=forward)
    channel.basic_consume(queue="sw-amqp-direct", no_ack=True, callback=handle)
    registered.set()
    while True:
        try:
            connection.drain_events(timeout=1)
        except TimeoutError:
            pass


def get_consumer(registered: threading.Event) -> None:
    connection = amqp.Connection(HOST)
    connection.connect()
    channel = connection.channel()
    registered.set()
    while True:
        message = channel.basic_get("sw-amqp-get", no_ack=True)
        if message is None:
            time.sleep(0.1)
        else:
            report("sw-amqp-get", message.body)


def main() -> None:
    declare()
    run_consumers(callback_consumer, get_consumer)


if __name__ == "__main__":
    main()
