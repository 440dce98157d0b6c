"""The producer service of the sw_confluent_kafka test, traced by the agent (configured by SW_* variables).

``confluent_producer_app.py <bootstrap servers>``: an ``http.server`` handler whose ``GET /produce`` produces,
with one ``confluent_kafka.Producer`` (``message.max.bytes`` 2000): to topic ``sw-poll`` with a list of headers it
checks afterwards, to ``sw-batch`` twice (no headers; a dict of headers), then, through a
``SerializingProducer``, to ``sw-deser``; then a message too large for the producer (``KafkaException``
MSG_SIZE_TOO_LARGE from ``produce()`` itself). Flushes and answers JSON: whether the caller's headers list was
left untouched, the error, and how many messages were left undelivered. Prints ``ready port=<port>`` once
listening on 127.0.0.1.
"""

from __future__ import annotations

import sys
from typing import Any

from skywalking import agent
from tests.plugins.apps.front import serve_json

agent.start()

import confluent_kafka  # noqa: E402  (after the agent: patched on import)
from confluent_kafka.serialization import StringSerializer  # noqa: E402

SERVERS = sys.argv[1]


def produce() -> dict[str, Any]:
    out: dict[str, Any] = {}
    producer = confluent_kafka.Producer({"bootstrap.servers": SERVERS, "message.max.bytes": 2000})
    serializing = confluent_kafka.SerializingProducer({"bootstrap.servers": SERVERS,
                                                       "value.serializer": StringSerializer()})
    headers = [("app", b"producer")]
    producer.produce("sw-poll", b"to the poll consumer", headers=headers)
    out["headers_untouched"] = headers == [("app", b"producer")]
    producer.produce("sw-batch", b"batch one")
    producer.produce("sw-batch", value=b"batch two", headers={"app": "dict"})
    serializing.produce("sw-deser", value="to the deserializing consumer")
    try:
        producer.produce("sw-poll", b"x" * 5000)
    except confluent_kafka.KafkaException as e:
        out["too_large"] = [type(e).__name__, e.args[0].name()]
    out["undelivered"] = producer.flush(15) + serializing.flush(15)
    return out


def main() -> None:
    serve_json(lambda path: produce())


if __name__ == "__main__":
    main()
