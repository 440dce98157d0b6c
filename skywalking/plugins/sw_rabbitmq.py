"""``pika`` (RabbitMQ, pika 1.2+).

Producer: an exit span ``RabbitMQ/Topic/<exchange>/Queue/<routing key>/Producer`` around
``BlockingChannel.basic_publish`` (the whole call, publisher-confirm wait included) and around
``Channel.basic_publish`` (SelectConnection and the other asynchronous adapters; a blocking publish is not traced
twice). The headers of ``agent_propagation`` (``sw6`` by default) are added to the message's
``properties.headers`` on a copy: the caller's ``BasicProperties`` object is left as it was.

Consumer: an entry span ``RabbitMQ/Topic/<exchange>/Queue/<routing key>/Consumer`` per delivered message,
continuing the header it carries: around each ``BlockingChannel.basic_consume`` callback and each
``Channel.basic_consume`` callback (SelectConnection and the other asynchronous adapters); around the
``BlockingChannel.basic_get`` call that returned a message; for ``BlockingChannel.consume()``, from the moment the
generator hands a message over until the loop asks for the next one (or closes the generator), so that the
work done on the message is part of the trace. A ``basic_get`` or ``consume()`` the broker refuses (unknown
queue, closed channel) gets an error entry span ``RabbitMQ/Topic//Queue/<queue>/Consumer``.

Layer MQ, components RabbitmqProducer (52) / RabbitmqConsumer (53), peer = the connection's ``host:port``; tags
``mq.broker`` (``host:port``), ``mq.topic`` (the exchange), ``mq.queue`` (producer: the routing key; consumer: the
queue consumed from, the routing key when unknown). A call that raises marks its span as an error and the
exception reaches the application unchanged. Not traced: the asynchronous ``Channel.basic_get`` callback."""

from __future__ import annotations

import copy
import importlib
import weakref
from collections.abc import Generator, Iterator
from typing import Any

from skywalking.loggings import logger
from skywalking.plugins import Plugin, _amqp
from skywalking.plugins._callback import traced_callback
from skywalking.plugins._peer import host_port
from skywalking.trace.context import inside_exit_span
from skywalking.trace.span import Span

_PROPERTIES_AT = 3  # basic_publish(exchange, routing_key, body, properties, mandatory)


def _broker(channel: Any) -> str | None:
    """``host:port`` of the connection of ``channel`` (a ``BlockingChannel`` or an adapter's ``Channel``)."""
    impl = getattr(channel, "_impl", channel)
    params = getattr(getattr(impl, "connection", None), "params", None)
    host = getattr(params, "host", None)
    return host_port(str(host), getattr(params, "port", None)) if host else None


# -- producer -------------------------------------------------------------------------------------------------------

def _argument(args: tuple[Any, ...], kwargs: dict[str, Any], at: int, name: str) -> Any:
    return args[at] if len(args) > at else kwargs.get(name)


def _with_headers(args: tuple[Any, ...], kwargs: dict[str, Any],
                  headers: dict[str, str]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The call's arguments with ``headers`` added to a copy of its properties (made when there are none)."""
    properties = _argument(args, kwargs, _PROPERTIES_AT, "properties")
    if properties is None:
        properties = importlib.import_module("pika.spec").BasicProperties(headers=dict(headers))
    else:
        properties = copy.copy(properties)  # the caller may reuse its object for other messages
        properties.headers = {**(properties.headers or {}), **headers}
    if len(args) > _PROPERTIES_AT:
        return (*args[:_PROPERTIES_AT], properties, *args[_PROPERTIES_AT + 1:]), kwargs
    return args, {**kwargs, "properties": properties}


def _producer_span(channel: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Span | None:
    """The started exit span of a publish; None when it is not to be traced."""
    if inside_exit_span():
        return None
    try:
        return _amqp.producer_span(_broker(channel), _argument(args, kwargs, 0, "exchange"),
                                   _argument(args, kwargs, 1, "routing_key"))
    except Exception:  # never into the application: publish untraced
        logger.debug("sw_rabbitmq: no span for a publish", exc_info=True)
        return None


def _basic_publish(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    span = _producer_span(instance, args, kwargs)
    if span is None:
        return wrapped(*args, **kwargs)
    try:
        try:
            headers = {item.key: item.val for item in span.inject()}
            if headers:
                args, kwargs = _with_headers(args, kwargs, headers)
        except Exception:  # publish without the header rather than not at all
            logger.debug("sw_rabbitmq: no header for a publish", exc_info=True)
        return wrapped(*args, **kwargs)
    except Exception:
        span.raised()
        raise
    finally:
        span.stop()


# -- consumer -------------------------------------------------------------------------------------------------------

def _consumer_span(channel: Any, method: Any, properties: Any, queue: Any) -> Span | None:
    """The started entry span of one delivered message; None when it cannot be made."""
    try:
        return _amqp.consumer_span(_broker(channel), getattr(method, "exchange", ""),
                                   getattr(method, "routing_key", ""), queue, getattr(properties, "headers", None))
    except Exception:
        logger.debug("sw_rabbitmq: no span for a delivery", exc_info=True)
        return None


def _refused(channel: Any, queue: Any, start_ms: int) -> None:
    """An error entry span for a receive call that raised (called in its ``except`` block)."""
    try:
        _amqp.refused_span(_broker(channel), queue, start_ms)
    except Exception:
        logger.debug("sw_rabbitmq: no span for a failed receive", exc_info=True)


def _traced_callback(callback: Any, queue: Any) -> Any:
    """``callback(channel, method, properties, body)`` inside the entry span of its message."""
    def span_for(*args: Any, **_: Any) -> Span | None:
        return _consumer_span(args[0], args[1], args[2], queue) if plugin.installed and len(args) >= 3 else None

    return traced_callback(callback, span_for, "_sw_rabbitmq")


def _with_callback(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``basic_consume(queue, on_message_callback, ...)`` arguments with the callback traced."""
    queue = _argument(args, kwargs, 0, "queue")
    if len(args) > 1:
        return (args[0], _traced_callback(args[1], queue), *args[2:]), kwargs
    if "on_message_callback" in kwargs:
        return args, {**kwargs, "on_message_callback": _traced_callback(kwargs["on_message_callback"], queue)}
    return args, kwargs


def _blocking_basic_consume(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        args, kwargs = _with_callback(args, kwargs)
    except Exception:
        logger.debug("sw_rabbitmq: consumer callback not traced", exc_info=True)
    return wrapped(*args, **kwargs)


def _basic_consume(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        callback = _argument(args, kwargs, 1, "on_message_callback")
        # a BlockingChannel's own sink only queues the delivery: its user callback is traced instead
        if not _is_blocking_sink(callback):
            args, kwargs = _with_callback(args, kwargs)
    except Exception:
        logger.debug("sw_rabbitmq: consumer callback not traced", exc_info=True)
    return wrapped(*args, **kwargs)


def _is_blocking_sink(callback: Any) -> bool:
    blocking = importlib.import_module("pika.adapters.blocking_connection")  # pika has no type information
    return isinstance(getattr(callback, "__self__", None), blocking.BlockingChannel)


def _basic_get(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    if not plugin.installed:
        return wrapped(*args, **kwargs)
    queue = _argument(args, kwargs, 0, "queue")
    start = _amqp.now_ms()
    try:
        result = wrapped(*args, **kwargs)
    except Exception:
        _refused(instance, queue, start)
        raise
    try:
        method, properties, _ = result
        if method is not None:
            span = _consumer_span(instance, method, properties, queue)
            if span is not None:
                span.start_time = start
                span.stop()
    except Exception:
        logger.debug("sw_rabbitmq: no span for basic_get", exc_info=True)
    return result


# channel -> the entry span of the message its consume() generator handed out last and is still processing (the
# span stays active while the application works on the message, so that work joins the producer's trace)
_consuming: weakref.WeakKeyDictionary[Any, Span] = weakref.WeakKeyDictionary()


def _end_consuming(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``BlockingChannel.cancel()`` / ``close()``: the message being processed is done; end its span now, even if
    the application keeps the paused consume() generator."""
    try:
        span = _consuming.pop(instance, None)
        if span is not None:
            span.stop()
    except Exception:
        logger.debug("sw_rabbitmq: consumer span not ended", exc_info=True)
    return wrapped(*args, **kwargs)


def _consume(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    messages = wrapped(*args, **kwargs)
    if not plugin.installed:
        return messages
    return _traced_messages(messages, instance, _argument(args, kwargs, 0, "queue"))


def _traced_messages(messages: Iterator[Any], channel: Any, queue: Any) -> Generator[Any, None, None]:
    """``consume()``'s messages, each inside its entry span until the next one is asked for."""
    try:
        while True:
            start = _amqp.now_ms()
            try:
                message = next(messages)
            except StopIteration:
                return
            except Exception:
                _refused(channel, queue, start)
                raise
            span = None
            try:
                method, properties, _ = message
                if method is not None:  # (None, None, None): the inactivity timeout
                    span = _consumer_span(channel, method, properties, queue)
            except Exception:
                logger.debug("sw_rabbitmq: no span for a consumed message", exc_info=True)
            if span is None:
                yield message
                continue
            _consuming[channel] = span  # BlockingChannel.cancel()/close() end it if the loop is left early
            try:
                yield message
            except Exception:
                span.raised()
                raise
            finally:
                if _consuming.get(channel) is span:
                    del _consuming[channel]
                    span.stop()
    finally:
        close = getattr(messages, "close", None)
        if close is not None:
            close()


class PikaPlugin(Plugin):
    name = "sw_rabbitmq"
    instruments = ("pika>=1.2",)
    modules = ("pika",)
    note = ("RabbitMQ through pika: `BlockingChannel` (`basic_publish`, `basic_consume` callbacks, `basic_get`, "
            "`consume()`) and the asynchronous adapters' `Channel` (`basic_publish`, `basic_consume` callbacks)")

    def _install(self) -> None:
        self.wrap("pika.channel", "Channel.basic_publish", _basic_publish)
        self.wrap("pika.channel", "Channel.basic_consume", _basic_consume)
        self.wrap("pika.adapters.blocking_connection", "BlockingChannel.basic_publish", _basic_publish)
        self.wrap("pika.adapters.blocking_connection", "BlockingChannel.basic_consume", _blocking_basic_consume)
        self.wrap("pika.adapters.blocking_connection", "BlockingChannel.basic_get", _basic_get)
        self.wrap("pika.adapters.blocking_connection", "BlockingChannel.consume", _consume)
        self.wrap("pika.adapters.blocking_connection", "BlockingChannel.cancel", _end_consuming)
        self.wrap("pika.adapters.blocking_connection", "BlockingChannel.close", _end_consuming)


plugin = PikaPlugin()
