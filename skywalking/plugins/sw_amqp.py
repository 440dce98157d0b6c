"""``amqp`` (py-amqp 5.0+, the RabbitMQ client kombu uses).

Producer: an exit span ``RabbitMQ/Topic/<exchange>/Queue/<routing key>/Producer`` around ``Channel.basic_publish``;
on a channel in confirm mode (``Connection(confirm_publish=True)``) the span also covers the wait for the broker's
confirm (a channel made before the plugin was installed: only the publish itself), and a ``_basic_publish`` call
is traced too; a publish is never traced twice. The headers of ``agent_propagation`` (``sw6`` by default) are added
to the message's ``application_headers`` on a copy of the ``Message``: the caller's message and its properties are
left as they were.

Consumer: an entry span ``RabbitMQ/Topic/<exchange>/Queue/<routing key>/Consumer`` per delivered message,
continuing the header it carries, in a segment of its own: around each ``basic_consume`` callback, and around the
``basic_get`` call that returned a message. A ``basic_get`` the broker refuses (unknown queue, closed channel) gets
an error entry span ``RabbitMQ/Topic//Queue/<queue>/Consumer``. A Celery task message (``task`` and ``id``
headers) gets no consumer span while ``sw_celery`` is installed: the task run's span continues its header (as on the
producer side, where a publish inside ``send_task``'s exit span adds no span of its own).

Layer MQ, components RabbitmqProducer (52) / RabbitmqConsumer (53), peer = the connection's ``host:port`` (port
5672 when its ``host`` names none); tags ``mq.broker`` (``host:port``), ``mq.topic`` (the exchange), ``mq.queue``
(producer: the routing key; consumer: the queue consumed from, the routing key when unknown). A call that raises
marks its span as an error and the exception reaches the application unchanged."""

from __future__ import annotations

import copy
import sys
from typing import Any

from skywalking.loggings import logger
from skywalking.plugins import Plugin, _amqp
from skywalking.plugins._callback import traced_callback
from skywalking.plugins._peer import host_port
from skywalking.trace.context import inside_exit_span
from skywalking.trace.span import Span

_DEFAULT_PORT = 5672
_CALLBACK_AT = 6  # basic_consume(queue, consumer_tag, no_local, no_ack, exclusive, nowait, callback, ...)


def _argument(args: tuple[Any, ...], kwargs: dict[str, Any], at: int, name: str, default: Any = None) -> Any:
    return args[at] if len(args) > at else kwargs.get(name, default)


def _broker(channel: Any) -> str | None:
    """``host:port`` of the connection of ``channel`` (py-amqp keeps ``"host[:port]"`` in ``Connection.host``)."""
    host = getattr(getattr(channel, "connection", None), "host", None)
    if not host:
        return None
    host, port = str(host), _DEFAULT_PORT
    if host.startswith("["):  # [v6 address] or [v6 address]:port
        end = host.find("]")
        if host[end + 1:end + 2] == ":":
            port = int(host[end + 2:])
        host = host[1:end]
    elif host.count(":") == 1:
        host, number = host.split(":")
        port = int(number)
    return host_port(host, port)


# -- producer -------------------------------------------------------------------------------------------------------

def _with_headers(message: Any, headers: dict[str, str]) -> Any:
    """A copy of ``message`` whose ``application_headers`` include ``headers`` (``message`` is left untouched)."""
    properties = getattr(message, "properties", None)
    if not isinstance(properties, dict):
        return message  # not a Message: passed on as it is
    message = copy.copy(message)
    message.properties = {**properties,
                          "application_headers": {**(properties.get("application_headers") or {}), **headers}}
    return message


def _producer_span(channel: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Span | None:
    # not installed: a confirm-mode channel keeps the wrapped method it bound while the plugin was installed
    if not plugin.installed or inside_exit_span():  # the confirm wrapper's span, or a higher layer's (kombu users' own)
        return None
    try:
        return _amqp.producer_span(_broker(channel), _argument(args, kwargs, 1, "exchange", ""),
                                   _argument(args, kwargs, 2, "routing_key", ""))
    except Exception:  # never into the application: publish untraced
        logger.debug("sw_amqp: no span for a publish", exc_info=True)
        return None


def _basic_publish(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    span = _producer_span(instance, args, kwargs)
    if span is None:
        return wrapped(*args, **kwargs)
    try:
        try:
            headers = {item.key: item.val for item in span.inject()}
            if headers:
                if args:
                    args = (_with_headers(args[0], headers), *args[1:])
                elif "msg" in kwargs:
                    kwargs = {**kwargs, "msg": _with_headers(kwargs["msg"], headers)}
        except Exception:  # publish without the header rather than not at all
            logger.debug("sw_amqp: no header for a publish", exc_info=True)
        return wrapped(*args, **kwargs)
    except Exception:
        span.raised()
        raise
    finally:
        span.stop()


# -- consumer -------------------------------------------------------------------------------------------------------

def _celery_task(headers: Any) -> bool:
    """A Celery task message (protocol 2: ``task`` and ``id`` headers) while sw_celery traces the task runs: its
    span ``celery/<task>`` continues the message's header, so the delivery adds no span of its own."""
    if not headers or "task" not in headers or "id" not in headers:
        return False
    celery = sys.modules.get("skywalking.plugins.sw_celery")  # loaded by the agent when it installs plugins
    return bool(getattr(getattr(celery, "plugin", None), "installed", False))


def _consumer_span(message: Any, queue: Any) -> Span | None:
    try:
        info = getattr(message, "delivery_info", None) or {}
        headers = (getattr(message, "properties", None) or {}).get("application_headers")
        if _celery_task(headers):
            return None
        return _amqp.consumer_span(_broker(getattr(message, "channel", None)), info.get("exchange"),
                                   info.get("routing_key"), queue, headers)
    except Exception:
        logger.debug("sw_amqp: no span for a delivery", exc_info=True)
        return None


def _traced_callback(callback: Any, queue: Any) -> Any:
    """``callback(message)`` inside the entry span of its message."""
    def span_for(*args: Any, **_: Any) -> Span | None:
        return _consumer_span(args[0], queue) if plugin.installed and args else None

    return traced_callback(callback, span_for, "_sw_amqp")


def _basic_consume(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        queue = _argument(args, kwargs, 0, "queue", "")
        if len(args) > _CALLBACK_AT:
            args = (*args[:_CALLBACK_AT], _traced_callback(args[_CALLBACK_AT], queue), *args[_CALLBACK_AT + 1:])
        elif kwargs.get("callback") is not None:
            kwargs = {**kwargs, "callback": _traced_callback(kwargs["callback"], queue)}
    except Exception:
        logger.debug("sw_amqp: consumer callback not traced", exc_info=True)
    return wrapped(*args, **kwargs)


def _basic_get(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    queue = _argument(args, kwargs, 0, "queue", "")
    start = _amqp.now_ms()
    try:
        message = wrapped(*args, **kwargs)
    except Exception:
        try:
            _amqp.refused_span(_broker(instance), queue, start)
        except Exception:
            logger.debug("sw_amqp: no span for a failed basic_get", exc_info=True)
        raise
    if message is not None:
        span = _consumer_span(message, queue)
        if span is not None:
            span.start_time = start
            span.stop()
    return message


class AmqpPlugin(Plugin):
    name = "sw_amqp"
    instruments = ("amqp>=5.0",)
    modules = ("amqp",)
    note = ("RabbitMQ through py-amqp: `Channel.basic_publish` (confirm mode included), `basic_consume` callbacks, "
            "`basic_get`")

    def _install(self) -> None:
        for name in ("basic_publish", "_basic_publish", "basic_publish_confirm"):
            self.wrap("amqp.channel", f"Channel.{name}", _basic_publish)
        self.wrap("amqp.channel", "Channel.basic_consume", _basic_consume)
        self.wrap("amqp.channel", "Channel.basic_get", _basic_get)


plugin = AmqpPlugin()
