"""The producer service of the sw_rabbitmq test, traced by the agent (configured by SW_* variables).

``pika_producer_app.py <amqp port>``: an ``http.server`` handler whose ``GET /publish`` publishes, over one
``BlockingConnection`` to the broker on 127.0.0.1:<port>: to queue ``sw-callback`` (default exchange) with a
``BasicProperties`` object it reuses for the next message, to ``sw-generator`` without properties, to exchange
``sw.direct`` with routing key ``async.key`` (the same properties), then to the unknown exchange ``sw.nowhere`` on
a channel in confirm mode (the broker closes it: ``ChannelClosedByBroker``) and on a closed channel
(``ChannelWrongStateError``). Answers JSON, including whether the reused properties were left untouched.
Prints ``ready port=<port>`` once listening on 127.0.0.1.
"""

from __future__ import annotations

import sys
from typing import Any

from skywalking import agent
from tests.plugins.apps.front import serve_json

agent.start()

import pika  # noqa: E402  (after the agent: patched on import)
import pika.exceptions  # noqa: E402

PORT = int(sys.argv[1])


def publish() -> dict[str, Any]:
    out: dict[str, Any] = {}
    connection = pika.BlockingConnection(pika.ConnectionParameters(host="127.0.0.1", port=PORT))
    try:
        channel = connection.channel()
        props = pika.BasicProperties(content_type="text/plain", headers={"app": "producer"})
        channel.basic_publish("", "sw-callback", b"to the callback consumer", props)
        channel.basic_publish(exchange="", routing_key="sw-generator", body=b"to the generator consumer")
        channel.basic_publish("sw.direct", "async.key", b"to the async consumer", properties=props)
        out["props_untouched"] = props.headers == {"app": "producer"}

        confirming = connection.channel()
        confirming.confirm_delivery()
        try:
            confirming.basic_publish("sw.nowhere", "lost", b"nowhere")
        except pika.exceptions.ChannelClosedByBroker as e:
            out["unknown_exchange"] = [type(e).__name__, e.reply_code]

        closed = connection.channel()
        closed.close()
        try:
            closed.basic_publish("", "sw-callback", b"never sent")
        except pika.exceptions.ChannelWrongStateError as e:
            out["closed_channel"] = type(e).__name__
    finally:
        connection.close()
    return out


def main() -> None:
    serve_json(lambda path: publish())


if __name__ == "__main__":
    main()
