"""The consumer service of the sw_rabbitmq test, traced by the agent (configured by SW_* variables).

``pika_consumer_app.py <amqp port>``: declares (and purges) the queues ``sw-callback``, ``sw-generator``,
``sw-async`` (bound to the direct exchange ``sw.direct`` with routing key ``async.key``) and ``sw-get``, tries a
``basic_get`` from the missing queue ``sw-missing`` (the broker refuses it), then consumes, each on a connection
and thread of its own:

* ``sw-callback`` with a ``BlockingChannel.basic_consume`` callback that forwards each message to ``sw-get``;
* ``sw-generator`` with the ``BlockingChannel.consume()`` generator, handling each message in a local span;
* ``sw-async`` with a ``SelectConnection`` channel's ``basic_consume`` callback, also in a local span;
* ``sw-get`` by polling ``BlockingChannel.basic_get``.

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

import pika  # noqa: E402  (after the agent: patched on import)
import pika.exceptions  # noqa: E402

from tests.plugins.apps.consumers import run_consumers  # noqa: E402

PARAMS = pika.ConnectionParameters(host="127.0.0.1", port=int(sys.argv[1]))
QUEUES = ("sw-callback", "sw-generator", "sw-async", "sw-get")


_print = threading.Lock()


def report(queue: str, body: bytes) -> None:
    with _print:  # one line per message, whichever thread prints it
        print(f"consumed {queue} {body.decode()}", flush=True)


def declare() -> None:
    connection = pika.BlockingConnection(PARAMS)
    channel = connection.channel()
    channel.exchange_declare("sw.direct", exchange_type="direct")
    for queue in QUEUES:
        channel.queue_declare(queue)
        channel.queue_purge(queue)
    channel.queue_bind("sw-async", "sw.direct", routing_key="async.key")
    try:
        channel.basic_get("sw-missing")
    except pika.exceptions.ChannelClosedByBroker as e:
        print(f"refused {e.reply_code}", flush=True)
    connection.close()


def callback_consumer(registered: threading.Event) -> None:
    connection = pika.BlockingConnection(PARAMS)
    channel = connection.channel()

    def on_message(ch: Any, method: Any, properties: Any, body: bytes) -> None:
        report("sw-callback", body)
        ch.basic_publish("", "sw-get", b"forwarded " + body)
        ch.basic_ack(method.delivery_tag)

    channel.basic_consume("sw-callback", on_message)
    registered.set()
    channel.start_consuming()


def generator_consumer(registered: threading.Event) -> None:
    connection = pika.BlockingConnection(PARAMS)
    channel = connection.channel()
    messages = channel.consume("sw-generator", auto_ack=True, inactivity_timeout=0.2)
    first = next(messages)  # registers the consumer; nothing has been published yet
    assert first == (None, None, None), first
    registered.set()
    for method, _, body in messages:
        if method is None:
            continue
        with get_context().new_local_span("/handle/generator"):
            report("sw-generator", body)


def get_consumer(registered: threading.Event) -> None:
    connection = pika.BlockingConnection(PARAMS)
    channel = connection.channel()
    registered.set()
    while True:
        method, _, body = channel.basic_get("sw-get", auto_ack=True)
        if method is None:
            time.sleep(0.1)
        else:
            report("sw-get", body)


def async_consumer(registered: threading.Event) -> None:
    def on_message(channel: Any, method: Any, properties: Any, body: bytes) -> None:
        with get_context().new_local_span("/handle/async"):
            report("sw-async", body)

    def on_channel(channel: Any) -> None:
        channel.basic_consume("sw-async", on_message, auto_ack=True, callback=lambda _: registered.set())

    connection = pika.SelectConnection(PARAMS, on_open_callback=lambda conn: conn.channel(on_open_callback=on_channel))
    connection.ioloop.start()


def main() -> None:
    declare()
    run_consumers(callback_consumer, generator_consumer, get_consumer, async_consumer)


if __name__ == "__main__":
    main()
