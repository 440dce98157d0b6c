"""The producer service of the sw_kafka test, traced by the agent (configured by SW_* variables).

``kafka_producer_app.py <bootstrap> <dead port>``: an ``http.server`` handler whose ``GET /produce`` sends, with a
``KafkaProducer`` (kafka-python) to the broker at <bootstrap>, ``first`` to topic ``sw-kafka`` with a headers list it
checks afterwards, and ``second`` without headers (waiting for each acknowledgement); then it sends to a producer
whose broker (127.0.0.1:<dead port>) is down, which raises ``KafkaTimeoutError``. Answers JSON, including whether
the headers list was left untouched. Prints ``ready port=<port>`` once listening on 127.0.0.1.
"""

from __future__ import annotations

import sys
from typing import Any

from skywalking import agent
from tests.plugins.apps.front import serve_json

agent.start()

from kafka import KafkaProducer  # noqa: E402  (after the agent: patched on import)
from kafka.errors import KafkaTimeoutError  # noqa: E402

BOOTSTRAP, DEAD_PORT = sys.argv[1], int(sys.argv[2])
TOPIC = "sw-kafka"
producer = KafkaProducer(bootstrap_servers=BOOTSTRAP)


def produce() -> dict[str, Any]:
    out: dict[str, Any] = {}
    headers = [("app", b"producer")]
    producer.send(TOPIC, b"first", headers=headers).get(10)
    producer.send(TOPIC, value=b"second").get(10)
    out["headers_untouched"] = headers == [("app", b"producer")]

    # api_version given: the constructor does not probe the (dead) broker
    dead = KafkaProducer(bootstrap_servers=f"127.0.0.1:{DEAD_PORT}", api_version=(2, 5, 0), max_block_ms=500)
    try:
        dead.send(TOPIC, b"lost")
    except KafkaTimeoutError as e:
        out["dead_broker"] = type(e).__name__
    finally:
        dead.close(timeout=1)
    return out


def main() -> None:
    serve_json(lambda path: produce())


if __name__ == "__main__":
    main()
