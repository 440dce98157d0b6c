"""``aiormq`` (RabbitMQ for asyncio, aiormq 6.4+; aio-pika runs on it).

Producer: an exit span ``RabbitMQ/Topic/<exchange>/Queue/<routing key>/Producer`` around ``Channel.basic_publish``
(the whole call: on a channel with publisher confirms, the default, the wait for the broker's confirm too). The
headers of ``agent_propagation`` (``sw6`` by default) are added to the message's ``properties.headers`` on a copy:
the caller's ``Basic.Properties`` object is left as it was, except for the ``message_id`` aiormq itself gives a
message that has none (set on the caller's object once the call returns, as aiormq sets it).

Consumer: an entry span ``RabbitMQ/Topic/<exchange>/Queue/<routing key>/Consumer`` per delivered message,
continuing the header it carries, in a segment of its own: around each ``basic_consume`` callback (awaited when
it is a coroutine function or returns an awaitable), and around the ``basic_get`` call that returned a message.
A ``basic_get`` the broker refuses (unknown queue, closed channel) gets an error entry span
``RabbitMQ/Topic//Queue/<queue>/Consumer``.

Layer MQ, components RabbitmqProducer (52) / RabbitmqConsumer (53), peer = ``host:port`` of the connection's URL;
tags ``mq.broker`` (``host:port``), ``mq.topic`` (the exchange), ``mq.queue`` (producer: the routing key; consumer:
the queue consumed from, the routing key when unknown). A call that raises marks its span as an error and the
exception reaches the application unchanged."""

from __future__ import annotations

import copy
import importlib
from typing import Any

from skywalking.loggings import logger
from skywalking.plugins import Plugin, _amqp
from skywalking.plugins._callback import traced_async_callback
from skywalking.plugins._peer import host_port
from skywalking.trace.context import inside_exit_span
from skywalking.trace.span import Span


def _argument(args: tuple[Any, ...], kwargs: dict[str, Any], at: int, name: str, default: Any = None) -> Any:
    return args[at] if len(args) > at else kwargs.get(name, default)


def _broker(channel: Any) -> str | None:
    """``host:port`` of the URL of the connection of ``channel``."""
    url = getattr(getattr(channel, "connection", None), "url", None)
    host = getattr(url, "host", None)
    return host_port(str(host), getattr(url, "port", None)) if host else None


# -- producer -------------------------------------------------------------------------------------------------------

def _with_headers(properties: Any, headers: dict[str, str]) -> Any:
    """A copy of ``properties`` (aiormq's default ones when None) whose headers include ``headers``."""
    if properties is None:
        return importlib.import_module("pamqp.commands").Basic.Properties(delivery_mode=1, headers=dict(headers))
    properties = copy.copy(properties)  # the caller may reuse its object for other messages
    properties.headers = {**(properties.headers or {}), **headers}
    return properties


async def _basic_publish(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    span = None
    if not inside_exit_span():
        try:
            span = _amqp.producer_span(_broker(instance), kwargs.get("exchange", ""), kwargs.get("routing_key", ""))
        except Exception:  # never into the application: publish untraced
            logger.debug("sw_aiormq: no span for a publish", exc_info=True)
    if span is None:
        return await wrapped(*args, **kwargs)
    given = sent = kwargs.get("properties")
    try:
        try:
            headers = {item.key: item.val for item in span.inject()}
            if headers:
                sent = _with_headers(given, headers)
                kwargs = {**kwargs, "properties": sent}
        except Exception:  # publish without the header rather than not at all
            logger.debug("sw_aiormq: no header for a publish", exc_info=True)
        return await wrapped(*args, **kwargs)
    except Exception:
        span.raised()
        raise
    finally:
        span.stop()
        if given is not None and sent is not given:
            _keep_message_id(given, sent)


def _keep_message_id(given: Any, sent: Any) -> None:
    """The id aiormq gave the message, on the caller's properties as without the plugin."""
    try:
        if not given.message_id and sent.message_id:
            given.message_id = sent.message_id
    except Exception:
        logger.debug("sw_aiormq: message_id not copied back", exc_info=True)


# -- consumer -------------------------------------------------------------------------------------------------------

def _consumer_span(message: Any, queue: Any) -> Span | None:
    try:
        properties = getattr(getattr(message, "header", None), "properties", None)
        return _amqp.consumer_span(_broker(message.channel), message.exchange, message.routing_key, queue,
                                   getattr(properties, "headers", None))
    except Exception:
        logger.debug("sw_aiormq: no span for a delivery", exc_info=True)
        return None


def _traced_callback(callback: Any, queue: Any) -> Any:
    """An async ``callback(message)`` run (and awaited) inside the entry span of its message."""
    def span_for(message: Any) -> Span | None:
        return _consumer_span(message, queue) if plugin.installed else None

    return traced_async_callback(callback, span_for, "_sw_aiormq")


def _basic_consume(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        queue = _argument(args, kwargs, 0, "queue", "")
        if len(args) > 1:
            args = (args[0], _traced_callback(args[1], queue), *args[2:])
        elif "consumer_callback" in kwargs:
            kwargs = {**kwargs, "consumer_callback": _traced_callback(kwargs["consumer_callback"], queue)}
    except Exception:
        logger.debug("sw_aiormq: consumer callback not traced", exc_info=True)
    return wrapped(*args, **kwargs)


async def _basic_get(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    queue = _argument(args, kwargs, 0, "queue", "")
    start = _amqp.now_ms()
    try:
        message = await wrapped(*args, **kwargs)
    except Exception:
        try:
            _amqp.refused_span(_broker(instance), queue, start)
        except Exception:
            logger.debug("sw_aiormq: no span for a failed basic_get", exc_info=True)
        raise
    if getattr(getattr(message, "delivery", None), "delivery_tag", None) is not None:  # GetOk, not GetEmpty
        span = _consumer_span(message, queue)
        if span is not None:
            span.start_time = start
            span.stop()
    return message


class AiormqPlugin(Plugin):
    name = "sw_aiormq"
    instruments = ("aiormq>=6.4",)
    modules = ("aiormq",)
    note = "RabbitMQ through aiormq: `Channel.basic_publish`, `basic_consume` callbacks, `basic_get`"

    def _install(self) -> None:
        self.wrap("aiormq.channel", "Channel.basic_publish", _basic_publish)
        self.wrap("aiormq.channel", "Channel.basic_consume", _basic_consume)
        self.wrap("aiormq.channel", "Channel.basic_get", _basic_get)


plugin = AiormqPlugin()
