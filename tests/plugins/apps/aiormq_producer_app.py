"""The producer service of the sw_aiormq test, traced by the agent (configured by SW_* variables).

``aiormq_producer_app.py <amqp port>``: an ``http.server`` handler whose ``GET /publish`` runs an asyncio loop that
publishes over one aiormq connection to the broker on 127.0.0.1:<port> (channel with publisher confirms, aiormq's
default): to queue ``sw-aio-async`` (default exchange) with a ``Basic.Properties`` object it reuses for the next
message, to exchange ``sw.aio.direct`` with routing key ``sync.key`` (the same properties), then to the unknown
exchange ``sw.nowhere`` (the broker closes the channel: ``ChannelNotFoundEntity``). Answers JSON, including whether
the reused properties' headers were left untouched and whether they got aiormq's ``message_id``.
Prints ``ready port=<port>`` once listening on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from skywalking import agent
from tests.plugins.apps.front import serve_json

agent.start()

import aiormq  # noqa: E402  (after the agent: patched on import)
import aiormq.exceptions  # noqa: E402

URL = f"amqp://guest:guest@127.0.0.1:{int(sys.argv[1])}/"


async def publish() -> dict[str, Any]:
    out: dict[str, Any] = {}
    connection = await aiormq.connect(URL)
    try:
        channel = await connection.channel()
        props = aiormq.spec.Basic.Properties(content_type="text/plain", headers={"app": "producer"})
        await channel.basic_publish(b"to the async consumer", routing_key="sw-aio-async", properties=props)
        out["message_id_kept"] = bool(props.message_id)
        props.message_id = None
        await channel.basic_publish(b"to the sync consumer", exchange="sw.aio.direct", routing_key="sync.key",
                                    properties=props)
        out["props_untouched"] = props.headers == {"app": "producer"}
        try:
            await channel.basic_publish(b"nowhere", exchange="sw.nowhere", routing_key="lost")
        except aiormq.exceptions.ChannelNotFoundEntity as e:
            out["unknown_exchange"] = type(e).__name__
    finally:
        await connection.close()
    return out


def main() -> None:
    serve_json(lambda path: asyncio.run(publish()))


if __name__ == "__main__":
    main()
