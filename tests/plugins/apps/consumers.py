"""The main loop of the consumer services: consumers on threads of their own, ``ready`` once all are registered."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from skywalking import agent


def run_forever() -> None:
    """Print ``ready`` (what the tests wait for) and keep the process alive until it is ended; the agent stops on
    the way out."""
    print("ready", flush=True)
    try:
        while True:
            time.sleep(1)
    finally:
        agent.stop()


def run_consumers(*consumers: Callable[[threading.Event], None], timeout: float = 30.0) -> None:
    """Start each consumer on a daemon thread with an event it sets once it is registered with the broker, then
    ``run_forever`` when all are (exit when one is not within ``timeout`` seconds)."""
    events = []
    for consumer in consumers:
        registered = threading.Event()
        threading.Thread(target=consumer, args=(registered,), daemon=True).start()
        events.append(registered)
    for registered in events:
        if not registered.wait(timeout):
            raise SystemExit("a consumer did not start")
    run_forever()
