"""The producer service of the sw_aiokafka test, traced by the agent (configured by SW_* variables).

``kafka_aio_producer_app.py <bootstrap>``: an ``http.server`` handler whose ``GET /produce`` runs, on a new event
loop, an ``AIOKafkaProducer`` (``max_request_size`` 1024) to the broker at <bootstrap> that sends to topic
``sw-aiokafka``: ``first`` with ``send_and_wait`` and a headers list it checks afterwards, ``second`` with ``send``
(then awaits the delivery), and a record of 2000 bytes with ``send_and_wait``, which raises
``MessageSizeTooLargeError``. Answers JSON, including whether the headers list was left untouched. Prints
``ready port=<port>`` once listening on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from skywalking import agent
from tests.plugins.apps.front import serve_json

agent.start()

from aiokafka import AIOKafkaProducer  # noqa: E402  (after the agent: patched on import)
from aiokafka.errors import MessageSizeTooLargeError  # noqa: E402

BOOTSTRAP = sys.argv[1]
TOPIC = "sw-aiokafka"


async def produce() -> dict[str, Any]:
    out: dict[str, Any] = {}
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, max_request_size=1024)
    await producer.start()
    try:
        headers = [("app", b"producer")]
        await producer.send_and_wait(TOPIC, b"first", headers=headers)
        await (await producer.send(TOPIC, value=b"second"))
        out["headers_untouched"] = headers == [("app", b"producer")]
        try:
            await producer.send_and_wait(TOPIC, b"x" * 2000)
        except MessageSizeTooLargeError as e:
            out["too_large"] = type(e).__name__
    finally:
        await producer.stop()
    return out


def main() -> None:
    serve_json(lambda path: asyncio.run(produce()))


if __name__ == "__main__":
    main()
