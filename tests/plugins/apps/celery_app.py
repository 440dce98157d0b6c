"""The Celery application of the sw_celery test: broker ``amqp://guest:guest@127.0.0.1:<SW_TEST_AMQP_PORT>//``,
no result backend. Tasks: ``sw.add`` (returns the sum), ``sw.flaky`` (asks for one retry with a countdown, then
succeeds), ``sw.fail`` (raises ``ValueError``). The worker prints ``worker ready`` once it consumes and
``ran <task> <result>`` after each run (to stdout)."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, signals

app = Celery("sw", broker=f"amqp://guest:guest@127.0.0.1:{os.environ.get('SW_TEST_AMQP_PORT', '5672')}//")
app.conf.update(task_default_queue="sw-celery", worker_hijack_root_logger=False, worker_redirect_stdouts=False,
                worker_prefetch_multiplier=1, task_publish_retry=False)


@app.task(name="sw.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="sw.flaky", bind=True, max_retries=2)
def flaky(self: Any, value: str) -> str:
    if self.request.retries == 0:
        raise self.retry(countdown=0.5)
    return f"{value} after {self.request.retries} retry"


@app.task(name="sw.fail")
def fail(reason: str) -> None:
    raise ValueError(reason)


@signals.worker_ready.connect
def _ready(**_: Any) -> None:
    print("worker ready", flush=True)


@signals.task_postrun.connect
def _ran(task: Any = None, retval: Any = None, state: Any = None, **_: Any) -> None:
    print(f"ran {task.name} {state} {retval!r}", flush=True)
