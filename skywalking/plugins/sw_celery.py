"""``celery`` (Celery 5.2+).

Producer: an exit span ``celery/<task name>`` around ``Celery.send_task`` (which ``Task.apply_async``, ``delay``,
``retry`` and canvas calls go through); a ``before_task_publish`` receiver adds the headers of
``agent_propagation`` (``sw6`` by default) to the task message's headers while that span is active. Peer and
``mq.broker`` = ``host:port`` of the first ``broker_url``; ``mq.queue`` = the ``queue`` option when given;
``celery.parameters`` = the arguments, cut to ``plugin_celery_parameters_length``.

Worker: an entry span ``celery/<task name>`` per task run, from ``task_prerun`` to ``task_postrun``,
continuing the header the message carries; a failed run (state ``FAILURE``) is an error with the exception.
A retry (``self.retry()``) publishes the next attempt inside the current run's span, so every attempt joins
the trace, each with its own entry span; a countdown or eta only delays the next run. Layer MQ, component
Celery (7011). The prefork pool's processes are forked from the worker's main process: each starts the agent
under an identity of its own (``<instance name>-child(<pid>)``, as a gunicorn worker does) on Celery's
``worker_process_init`` signal, with no option needed; ``-P solo``/``threads`` run tasks in the main process."""

from __future__ import annotations

import importlib
import threading
from typing import Any
from urllib.parse import urlsplit

from skywalking import Component, Kind, Layer, config
from skywalking.loggings import logger
from skywalking.plugins import Plugin
from skywalking.plugins._peer import host_port
from skywalking.trace.carrier import inbound_carrier
from skywalking.trace.context import get_context, inside_exit_span
from skywalking.trace.span import Span
from skywalking.trace.tags import TagCeleryParameters, TagMqBroker, TagMqQueue

_PORTS = {"amqp": 5672, "pyamqp": 5672, "amqps": 5671, "librabbitmq": 5672, "redis": 6379, "rediss": 6379}
_running: dict[tuple[int, str], Span] = {}  # (thread, task id) -> the entry span of a task being run
_DISPATCH_UID = "skywalking.sw_celery"


def _broker(app: Any) -> str | None:
    """``host:port`` of ``app``'s (first) broker URL."""
    url = getattr(getattr(app, "conf", None), "broker_url", None)
    if isinstance(url, (list, tuple)):
        url = url[0] if url else None
    if not isinstance(url, str) or not url:
        return None
    parts = urlsplit(url.split(";")[0].strip())
    if not parts.hostname:
        return None
    return host_port(parts.hostname, parts.port or _PORTS.get(parts.scheme.split("+")[0]))


def _parameters(args: Any, kwargs: Any) -> str:
    text = f"args={tuple(args or ())!r}, kwargs={dict(kwargs or {})!r}"
    return text[:config.plugin_celery_parameters_length]


def _send_task(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    if inside_exit_span():  # that span stands for the call; _before_publish adds its header
        return wrapped(*args, **kwargs)
    try:
        name = args[0] if args else kwargs.get("name")
        broker = _broker(instance)
        span = get_context().new_exit_span(op=f"celery/{name}", peer=broker, component=Component.Celery)
        span.layer = Layer.MQ
        if broker:
            span.tag(TagMqBroker(broker))
        queue = kwargs.get("queue")
        if isinstance(queue, str):
            span.tag(TagMqQueue(queue))
        span.tag(TagCeleryParameters(_parameters(args[1] if len(args) > 1 else kwargs.get("args"),
                                                 args[2] if len(args) > 2 else kwargs.get("kwargs"))))
    except Exception:  # never into the application: send untraced
        logger.debug("sw_celery: no span for send_task", exc_info=True)
        return wrapped(*args, **kwargs)
    with span:
        return wrapped(*args, **kwargs)


def _before_publish(sender: Any = None, headers: Any = None, **_: Any) -> None:
    """Add the header of the active exit span (``send_task``'s, or the user's own around it) to the message."""
    try:
        span = get_context().active_span
        if span is None or headers is None or span.kind is not Kind.Exit:
            return
        for item in span.inject():
            headers[item.key] = item.val
    except Exception:
        logger.debug("sw_celery: no header for a task message", exc_info=True)


def _lookup(request: Any) -> Any:
    own = getattr(request, "headers", None) or {}

    def lookup(key: str) -> str | None:
        value = getattr(request, key, None) if key.isidentifier() else None
        if value is None:
            value = request.__dict__.get(key) if hasattr(request, "__dict__") else None
        if value is None and isinstance(own, dict):
            value = own.get(key)
        return value if isinstance(value, str) else None

    return lookup


def _prerun(sender: Any = None, task_id: Any = None, task: Any = None, args: Any = None, kwargs: Any = None,
            **_: Any) -> None:
    if not plugin.installed or task is None:
        return
    try:
        request = getattr(task, "request", None)
        span = get_context().new_entry_span(f"celery/{task.name}", inbound_carrier(_lookup(request)))
        span.component = Component.Celery
        span.layer = Layer.MQ
        broker = _broker(getattr(task, "app", None))
        if broker:
            span.tag(TagMqBroker(broker))
        queue = (getattr(request, "delivery_info", None) or {}).get("routing_key")
        if queue:
            span.tag(TagMqQueue(str(queue)))
        span.tag(TagCeleryParameters(_parameters(args, kwargs)))
        span.start()
        _running[(threading.get_ident(), str(task_id))] = span
    except Exception:
        logger.debug("sw_celery: no span for a task run", exc_info=True)


def _postrun(sender: Any = None, task_id: Any = None, retval: Any = None, state: Any = None, **_: Any) -> None:
    span = _running.pop((threading.get_ident(), str(task_id)), None)
    if span is None:
        return
    try:
        if state == "FAILURE":
            if isinstance(retval, BaseException):
                span.log(retval)
            span.error_occurred = True
    finally:
        span.stop()


def _pool_process_init(**_: Any) -> None:
    """A prefork pool process, just forked: the agent that ran in the worker's main process starts here."""
    from skywalking.agent import agent

    agent.start_in_forked_child()


class CeleryPlugin(Plugin):
    name = "sw_celery"
    instruments = ("celery>=5.2",)
    modules = ("celery",)
    note = ("Celery: `send_task` (so `apply_async`, `delay`, `retry`) and task runs in the worker "
            "(`task_prerun` / `task_postrun`)")

    def _install(self) -> None:
        signals = importlib.import_module("celery.signals")  # celery has no type information
        self.wrap("celery.app.base", "Celery.send_task", _send_task)
        signals.before_task_publish.connect(_before_publish, weak=False, dispatch_uid=_DISPATCH_UID)
        signals.task_prerun.connect(_prerun, weak=False, dispatch_uid=_DISPATCH_UID)
        signals.task_postrun.connect(_postrun, weak=False, dispatch_uid=_DISPATCH_UID)
        signals.worker_process_init.connect(_pool_process_init, weak=False, dispatch_uid=_DISPATCH_UID)

    def _uninstall(self) -> None:
        signals = importlib.import_module("celery.signals")
        signals.before_task_publish.disconnect(_before_publish, dispatch_uid=_DISPATCH_UID)
        signals.task_prerun.disconnect(_prerun, dispatch_uid=_DISPATCH_UID)
        signals.task_postrun.disconnect(_postrun, dispatch_uid=_DISPATCH_UID)
        signals.worker_process_init.disconnect(_pool_process_init, dispatch_uid=_DISPATCH_UID)
        self._restore()


plugin = CeleryPlugin()
