"""The spans the RabbitMQ (AMQP 0-9-1) client plugins share: operation names
``RabbitMQ/Topic/<exchange>/Queue/<routing key>/Producer|Consumer``, layer MQ, components RabbitmqProducer (52) /
RabbitmqConsumer (53), peer and ``mq.broker`` = ``host:port``, tags ``mq.topic`` (the exchange) and ``mq.queue``.

The helpers raise like any code; the plugins catch and carry on untraced."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from skywalking import Component, Layer
from skywalking.trace.carrier import inbound_carrier
from skywalking.trace.context import fresh_context, get_context
from skywalking.trace.span import Span
from skywalking.trace.tags import TagMqBroker, TagMqQueue, TagMqTopic


def op(exchange: Any, routing_key: Any, role: str) -> str:
    """``RabbitMQ/Topic/<exchange>/Queue/<routing key>/<role>`` (``Producer`` or ``Consumer``)."""
    return f"RabbitMQ/Topic/{exchange or ''}/Queue/{routing_key or ''}/{role}"


def tag(span: Span, broker: str | None, exchange: Any, queue: Any) -> None:
    span.layer = Layer.MQ
    if broker:
        span.tag(TagMqBroker(broker))
    span.tag(TagMqTopic(str(exchange or ""))).tag(TagMqQueue(str(queue or "")))


def header_lookup(headers: Mapping[Any, Any] | None) -> Callable[[str], str | None]:
    """``get`` over the text values of a message's headers table, keys lower-cased (bytes decoded as UTF-8)."""
    found: dict[str, str] = {}
    for key, value in (headers or {}).items():
        if isinstance(value, (bytes, bytearray)):
            value = bytes(value).decode("utf-8", "replace")
        if isinstance(value, str):
            found[str(key).lower()] = value
    return found.get


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def producer_span(broker: str | None, exchange: Any, routing_key: Any) -> Span:
    """The started exit span of one publish (the caller checks ``inside_exit_span()`` first)."""
    span = get_context().new_exit_span(op=op(exchange, routing_key, "Producer"), peer=broker,
                                       component=Component.RabbitmqProducer)
    tag(span, broker, exchange, routing_key)
    return span.start()


def consumer_span(broker: str | None, exchange: Any, routing_key: Any, queue: Any,
                  headers: Mapping[Any, Any] | None) -> Span:
    """The started entry span of one delivered message, continuing the header it carries; in a segment of its
    own, never nested in (nor re-filing) the segment of whatever code received the message."""
    span = fresh_context().new_entry_span(op(exchange, routing_key, "Consumer"),
                                          inbound_carrier(header_lookup(headers)))
    span.component = Component.RabbitmqConsumer
    span.peer = broker
    tag(span, broker, exchange, queue or routing_key)
    return span.start()


def refused_span(broker: str | None, queue: Any, start_ms: int) -> None:
    """An error entry span ``RabbitMQ/Topic//Queue/<queue>/Consumer`` for a receive call that raised (to be called
    in its ``except`` block: the span logs the exception being handled)."""
    span = fresh_context().new_entry_span(op("", queue, "Consumer"))
    span.component = Component.RabbitmqConsumer
    span.peer = broker
    tag(span, broker, "", queue)
    with span:
        span.start_time = start_ms
        span.raised()
