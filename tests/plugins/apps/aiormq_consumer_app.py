"""The consumer service of the sw_aiormq test, traced by the agent (configured by SW_* variables).

``aiormq_consumer_app.py <amqp port>``: declares (and purges) the queues ``sw-aio-async``, ``sw-aio-sync`` (bound to
the direct exchange ``sw.aio.direct`` with routing key ``sync.key``) and ``sw-aio-get``, tries a ``basic_get`` from
the missing queue ``sw-missing`` (the broker refuses it), then, on one connection and event loop, consumes:

* ``sw-aio-async`` with a coroutine callback that forwards each message to ``sw-aio-get``;
* ``sw-aio-sync`` with a plain function callback, handling each message in a local span;
* ``sw-aio-get`` by polling ``Channel.basic_get``.

Prints ``consumed <queue> <body>`` per message and ``ready`` once every consumer is registered.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from skywalking import agent
from skywalking.trace.context import get_context

agent.start()

import aiormq  # noqa: E402  (after the agent: patched on import)
import aiormq.exceptions  # noqa: E402

URL = f"amqp://guest:guest@127.0.0.1:{int(sys.argv[1])}/"
QUEUES = ("sw-aio-async", "sw-aio-sync", "sw-aio-get")


def report(queue: str, body: bytes) -> None:
    print(f"consumed {queue} {body.decode()}", flush=True)


async def declare(connection: Any) -> None:
    channel = await connection.channel()
    await channel.exchange_declare("sw.aio.direct", exchange_type="direct")
    for queue in QUEUES:
        await channel.queue_declare(queue)
        await channel.queue_purge(queue)
    await channel.queue_bind("sw-aio-sync", "sw.aio.direct", routing_key="sync.key")
    try:
        await channel.basic_get("sw-missing")
    except aiormq.exceptions.ChannelNotFoundEntity as e:
        print(f"refused {type(e).__name__}", flush=True)


async def poll(channel: Any) -> None:
    while True:
        message = await channel.basic_get("sw-aio-get", no_ack=True)
        if message.body:
            report("sw-aio-get", message.body)
        else:
            await asyncio.sleep(0.1)


async def main() -> None:
    connection = await aiormq.connect(URL)
    await declare(connection)
    channel = await connection.channel()

    async def on_async(message: Any) -> None:
        report("sw-aio-async", message.body)
        await message.channel.basic_publish(b"forwarded " + message.body, routing_key="sw-aio-get")

    def on_sync(message: Any) -> None:
        with get_context().new_local_span("/handle/sync"):
            report("sw-aio-sync", message.body)

    await channel.basic_consume("sw-aio-async", on_async, no_ack=True)
    await channel.basic_consume("sw-aio-sync", on_sync, no_ack=True)
    getter = await connection.channel()
    polling = asyncio.ensure_future(poll(getter))
    print("ready", flush=True)
    try:
        await polling
    finally:
        await connection.close()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    finally:
        agent.stop()
