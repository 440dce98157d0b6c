"""The producer service of the sw_celery test, traced by the agent (configured by SW_* variables).

``celery_producer_app.py <amqp port> <closed port>``: an ``http.server`` handler whose ``GET /tasks`` sends, through
the Celery app of apps/celery_app.py (broker on 127.0.0.1:<amqp port>): ``sw.add`` with ``delay``, ``sw.flaky`` with
``apply_async`` and a countdown, ``sw.fail`` with ``send_task``, then ``sw.add`` through an app whose broker is down
(127.0.0.1:<closed port>: ``OperationalError``). Answers JSON. Prints ``ready port=<port>`` once listening.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from skywalking import agent
from tests.plugins.apps.front import serve_json

agent.start()

os.environ["SW_TEST_AMQP_PORT"] = sys.argv[1]

from celery import Celery  # noqa: E402  (after the agent: patched on import)
from kombu.exceptions import OperationalError  # noqa: E402

from tests.plugins.apps.celery_app import add, app, flaky  # noqa: E402

down = Celery("down", broker=f"amqp://guest:guest@127.0.0.1:{sys.argv[2]}//")
down.conf.update(task_publish_retry=False, broker_connection_timeout=2, broker_connection_retry=False)


def send() -> dict[str, Any]:
    out: dict[str, Any] = {"add": add.delay(2, 3).id, "flaky": flaky.apply_async(("x",), countdown=0.2).id,
                           "fail": app.send_task("sw.fail", args=("boom",)).id}
    try:
        down.send_task("sw.add", args=(1, 1))
    except OperationalError as e:
        out["down"] = type(e).__name__
    return out


def main() -> None:
    serve_json(lambda path: send())


if __name__ == "__main__":
    main()
