"""The producer service of the sw_pulsar test, traced by the agent (configured by SW_* variables).

``pulsar_producer_app.py <service url>``: one ``pulsar.Client`` for the broker at <service url> (the test's
stand-in) and an ``http.server`` handler whose ``GET /publish``, on producers made at start:

* ``send``s to ``sw-receive`` with a ``properties`` dict it reuses for the next message;
* ``send_async``s to ``sw-listener`` (the same dict, by keyword) and waits for the callback;
* ``send``s to ``sw-batch`` without properties;
* ``send``s on a closed producer (``AlreadyClosed``);
* ``send``s to ``sw-silent``, which the broker never acknowledges (``Timeout`` after 1 s).

Answers JSON, including whether the reused dict was left untouched. Prints ``ready port=<port>`` once listening.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from skywalking import agent
from tests.plugins.apps.front import serve_json

agent.start()

import pulsar  # noqa: E402  (after the agent: patched on import)

CLIENT = pulsar.Client(sys.argv[1], operation_timeout_seconds=10)
RECEIVE = CLIENT.create_producer("sw-receive")
LISTENER = CLIENT.create_producer("persistent://public/default/sw-listener")
BATCH = CLIENT.create_producer("sw-batch")
CLOSED = CLIENT.create_producer("sw-closed")
CLOSED.close()
SILENT = CLIENT.create_producer("sw-silent", send_timeout_millis=1000)


def publish() -> dict[str, Any]:
    out: dict[str, Any] = {}
    props = {"app": "producer"}
    RECEIVE.send(b"to the receive consumer", props)
    acknowledged = threading.Event()

    def on_sent(result: Any, message_id: Any) -> None:
        out["async"] = result.name
        acknowledged.set()

    LISTENER.send_async(b"to the listener consumer", on_sent, properties=props)
    acknowledged.wait(10)
    BATCH.send(content=b"to the batch consumer")
    out["props_untouched"] = props == {"app": "producer"}
    try:
        CLOSED.send(b"never sent")
    except pulsar.PulsarException as e:
        out["closed"] = type(e).__name__
    try:
        SILENT.send(b"never acknowledged")
    except pulsar.PulsarException as e:
        out["silent"] = type(e).__name__
    return out


def main() -> None:
    serve_json(lambda path: publish())


if __name__ == "__main__":
    main()
