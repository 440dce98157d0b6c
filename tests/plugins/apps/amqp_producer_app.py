"""The producer service of the sw_amqp test, traced by the agent (configured by SW_* variables).

``amqp_producer_app.py <amqp port>``: an ``http.server`` handler whose ``GET /publish`` publishes with py-amqp to the
broker on 127.0.0.1:<port>: over a plain connection, to queue ``sw-amqp-callback`` (default exchange) a ``Message``
it publishes again to exchange ``sw.amqp.direct`` with routing key ``direct.key`` (keyword arguments); then over a
connection with ``confirm_publish=True``, to queue ``sw-amqp-get`` and to the unknown exchange ``sw.nowhere`` (the
broker closes the channel: ``NotFound``). Answers JSON, including whether the reused message was left untouched.
Prints ``ready port=<port>`` once listening on 127.0.0.1.
"""

from __future__ import annotations

import sys
from typing import Any

from skywalking import agent
from tests.plugins.apps.front import serve_json

agent.start()

import amqp  # noqa: E402  (after the agent: patched on import)
import amqp.exceptions  # noqa: E402

HOST = f"127.0.0.1:{int(sys.argv[1])}"


def publish() -> dict[str, Any]:
    out: dict[str, Any] = {}
    with amqp.Connection(HOST) as connection:
        channel = connection.channel()
        message = amqp.Message(b"to the callback consumer", content_type="text/plain",
                               application_headers={"app": "producer"})
        channel.basic_publish(message, "", "sw-amqp-callback")
        message.body = b"to the direct consumer"
        channel.basic_publish(msg=message, exchange="sw.amqp.direct", routing_key="direct.key")
        out["message_untouched"] = message.properties == {"content_type": "text/plain",
                                                          "application_headers": {"app": "producer"}}
    with amqp.Connection(HOST, confirm_publish=True) as confirming:
        channel = confirming.channel()
        channel.basic_publish(amqp.Message(b"confirmed"), routing_key="sw-amqp-get")
        try:
            channel.basic_publish(amqp.Message(b"nowhere"), exchange="sw.nowhere", routing_key="lost")
        except amqp.exceptions.NotFound as e:
            out["unknown_exchange"] = [type(e).__name__, e.reply_code]
    return out


def main() -> None:
    serve_json(lambda path: publish())


if __name__ == "__main__":
    main()
