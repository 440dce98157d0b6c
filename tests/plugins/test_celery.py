"""sw_celery against a real RabbitMQ broker on 127.0.0.1 (tests/plugins/rabbitmq.py; skips, or fails under CI /
SW_REQUIRE_RABBITMQ, without one) and a real worker, ``sw-python run celery -A tests.plugins.apps.celery_app
worker`` (solo pool).

The service test sends tasks from apps/celery_producer_app.py, called with sw6 by a traced caller, and checks
expected/celery.json: the caller, the producer's exit spans and the worker's entry spans form one trace, a retry
(with a countdown) included; a failing task and a broker that is down are errors. The in-process tests check the
header in the message and uninstall."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skywalking.reporter.memory import MemoryReporter
from skywalking.trace.context import get_context
from tests.plugins.harness import Services, one_trace, port_of, serve, wait_printed
from tests.plugins.rabbitmq import RabbitMQServer, rabbitmq_server_script
from tests.protocol.procs import free_port

HERE = Path(__file__).parent
PRODUCER = HERE / "apps" / "celery_producer_app.py"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def broker() -> Iterator[RabbitMQServer]:
    yield from serve(lambda: RabbitMQServer(rabbitmq_server_script()), "celery")


@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_tasks_and_their_worker_runs_form_one_trace(broker: RabbitMQServer, pool: str) -> None:
    with Services() as services:
        settings = {"SW_TEST_AMQP_PORT": str(broker.port), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        worker = services.start([str(BIN / "sw-python"), "run", "celery", "-A", "tests.plugins.apps.celery_app",
                                 "worker", "-P", pool, "-c", "1", "--without-mingle", "--without-gossip",
                                 "--without-heartbeat", "-l", "warning"],
                                "plugin-celery-worker", ready="worker ready", timeout=90, **settings)
        closed = free_port()
        front = port_of(services.python(PRODUCER, broker.port, closed, name="plugin-celery-producer", **settings))
        answer = services.call_front(front, "/tasks")
        assert answer["down"] == "OperationalError" and {"add", "flaky", "fail"} <= set(answer), answer

        wait_printed(worker, ["ran sw.add SUCCESS 5\n", "ran sw.flaky RETRY",
                              "ran sw.flaky SUCCESS 'x after 1 retry'\n", "ran sw.fail FAILURE ValueError('boom')\n"])
        segments = services.check("celery.json", segments=6, front=front, amqp=broker.port, closed=closed)
        one_trace(segments)
        # the OAP names an instance <service>-pid:<pid>@<host>: solo runs tasks in the worker's main process, the
        # prefork pool in a forked process that reports as an instance of its own (no option needed)
        pids = {re.sub(r".*-pid:(\d+)@.*", r"\1", s["serviceInstance"]) for s in segments
                if s["service"] == "plugin-celery-worker"}
        assert (pids == {str(worker.popen.pid)}) == (pool == "solo") and len(pids) == 1, (pool, pids)
        assert not [line for line in worker.stderr if "fork()" in line or "fork_posix" in line], worker.stderr  # gRPC


@pytest.fixture
def celery_app(broker: RabbitMQServer) -> Iterator[Any]:
    from celery import Celery

    app = Celery("sw-in-process", broker=f"amqp://guest:guest@127.0.0.1:{broker.port}//")
    app.conf.update(task_default_queue="sw-in-process", task_publish_retry=False)
    yield app
    app.close()


def _message(app: Any, queue: str) -> Any:
    with app.connection_for_read() as connection:
        simple = connection.SimpleQueue(queue)
        try:
            message = simple.get(timeout=10)
            message.ack()
            return message
        finally:
            simple.close()


def test_the_header_is_in_the_task_message(celery_app: Any, reporter: MemoryReporter, broker: RabbitMQServer) -> None:
    with get_context().new_local_span("/test"):
        celery_app.send_task("sw.anything", args=(1,), kwargs={"k": "v"})
    exit_span = reporter.segments[-1].spans[0]
    assert exit_span.op == "celery/sw.anything" and exit_span.peer == f"127.0.0.1:{broker.port}"
    tags = {t.key: t.val for t in exit_span.tags}
    assert tags == {"mq.broker": f"127.0.0.1:{broker.port}", "celery.parameters": "args=(1,), kwargs={'k': 'v'}"}
    message = _message(celery_app, "sw-in-process")
    assert message.headers["task"] == "sw.anything" and message.headers["sw6"].startswith("1-"), message.headers


def test_uninstall_restores_the_originals(celery_app: Any, reporter: MemoryReporter) -> None:
    import celery.app.base
    import wrapt

    from skywalking.plugins import sw_amqp
    from skywalking.plugins.sw_celery import plugin

    assert plugin.installed and isinstance(celery.app.base.Celery.__dict__["send_task"], wrapt.FunctionWrapper)
    amqp_enabled = sw_amqp.plugin.enabled  # without sw_celery, sw_amqp (py-amqp, under kombu) traces the publish
    plugin.uninstall()
    sw_amqp.plugin.uninstall()
    try:
        assert not isinstance(celery.app.base.Celery.__dict__["send_task"], wrapt.FunctionWrapper)
        with get_context().new_local_span("/test"):
            celery_app.send_task("sw.anything")
        assert [s.op for s in reporter.segments[-1].spans] == ["/test"]
        assert "sw6" not in _message(celery_app, "sw-in-process").headers
    finally:
        assert plugin.install()
        assert sw_amqp.plugin.install() or not amqp_enabled
    assert isinstance(celery.app.base.Celery.__dict__["send_task"], wrapt.FunctionWrapper)
