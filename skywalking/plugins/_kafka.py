"""What the Kafka plugins (``sw_kafka``, ``sw_aiokafka``, ``sw_confluent_kafka``) share.

* ``producer_op(topic)`` → ``Kafka/<topic>/Producer``; ``consumer_op(topics, group)`` →
  ``Kafka/<topics>/Consumer/<group>`` (``topics`` joined with ``;``, an empty group when there is none).
* ``brokers(servers)``: the bootstrap servers as one ``;``-joined string (a list, or a ``,``-separated string).
* ``producer_span(topic, servers, component)``: the started exit span of one send (None: not traced);
  ``with_headers(headers, span)``: a new header collection holding the caller's headers plus the headers of
  ``agent_propagation`` (``sw6`` by default) as ``(str, bytes)`` — the caller's list or dict is never changed.
* ``with_headers_at(args, kwargs, at, span)``: a send's arguments with its ``headers`` argument so replaced;
  ``topics_of(consumer)``: a kafka-python / aiokafka consumer's topics.
* ``consumer_span(topics, group, servers, batches, component)``: the started entry span of one received batch,
  in its own segment, with a ref for every record whose headers carry a context (``batches``: the records'
  header collections, each ``[(str, bytes | str | None), ...]``, a dict, or None).

Spans: layer MQ, peer = ``brokers(servers)``, tags ``mq.broker`` (same value) and ``mq.topic``. The span
helpers and ``with_headers`` never raise: on a failure they log at debug and return None (the headers unchanged),
and the call runs untraced."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from skywalking import Component, Layer
from skywalking.loggings import logger
from skywalking.trace.carrier import inbound_carrier, inbound_header_names
from skywalking.trace.context import fresh_context, get_context, inside_exit_span
from skywalking.trace.span import Span
from skywalking.trace.tags import TagMqBroker, TagMqTopic

__all__ = ["brokers", "consumer_op", "consumer_span", "producer_op", "producer_span", "topics_of", "with_headers",
           "with_headers_at"]


def producer_op(topic: object) -> str:
    return f"Kafka/{topic or ''}/Producer"


def consumer_op(topics: Iterable[str] | str, group: object) -> str:
    joined = topics if isinstance(topics, str) else ";".join(topics)
    return f"Kafka/{joined}/Consumer/{group or ''}"


def brokers(servers: object) -> str:
    """``host:port;host:port`` from a list of servers or a ``,``-separated string."""
    if servers is None:
        return ""
    if isinstance(servers, str):
        return ";".join(part.strip() for part in servers.split(",") if part.strip())
    if isinstance(servers, (list, tuple)):
        return ";".join(str(s) for s in servers)
    return str(servers)


def _tag(span: Span, broker: str, topic: str) -> None:
    span.layer = Layer.MQ
    if broker:
        span.tag(TagMqBroker(broker))
    span.tag(TagMqTopic(topic))


# -- producer -------------------------------------------------------------------------------------------------------

def producer_span(topic: object, servers: object, component: Component = Component.KafkaProducer) -> Span | None:
    """The started exit span of a send to ``topic``; None when it is not to be traced."""
    try:
        if inside_exit_span():
            return None
        broker = brokers(servers)
        span = get_context().new_exit_span(op=producer_op(topic), peer=broker or None, component=component)
        _tag(span, broker, str(topic or ""))
        return span.start()
    except Exception:
        logger.debug("kafka: no span for a send", exc_info=True)
        return None


def with_headers(headers: Any, span: Span) -> Any:
    """A copy of ``headers`` (a list of ``(key, value)`` pairs, a dict, or None) with the span's propagation
    headers set (a same-named header of the caller's is replaced); ``headers`` itself when there is nothing to
    add or on a failure. A dict stays a dict, anything else becomes a list of pairs."""
    try:
        ours = [(item.key, item.val.encode()) for item in span.inject() if item.val]
        if not ours:
            return headers
        names = {key for key, _ in ours}
        if isinstance(headers, Mapping):
            return {**{k: v for k, v in headers.items() if str(k).lower() not in names}, **dict(ours)}
        kept = [pair for pair in (headers or ()) if str(pair[0]).lower() not in names]
        return kept + ours
    except Exception:
        logger.debug("kafka: no propagation header for a send", exc_info=True)
        return headers


def with_headers_at(args: tuple[Any, ...], kwargs: dict[str, Any], at: int, span: Span) -> tuple[Any, Any]:
    """``(args, kwargs)`` of a send whose ``headers`` argument is positional number ``at`` or the keyword
    ``headers``, with that argument replaced by ``with_headers(...)`` (new tuples and dicts)."""
    if len(args) > at:
        return (*args[:at], with_headers(args[at], span), *args[at + 1:]), kwargs
    return args, {**kwargs, "headers": with_headers(kwargs.get("headers"), span)}


# -- consumer -------------------------------------------------------------------------------------------------------

def topics_of(consumer: Any) -> list[str]:
    """The topics a kafka-python or aiokafka consumer subscribed to (those assigned to it without a subscription),
    sorted."""
    topics = consumer.subscription()
    if not topics:
        topics = {tp.topic for tp in consumer.assignment()}
    return sorted(topics)


def _lookup(headers: Any) -> dict[str, str] | None:
    """The propagation headers among a record's headers (lower-case names, text values); None if there are none."""
    if not headers:
        return None
    wanted = inbound_header_names()
    found: dict[str, str] = {}
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in pairs:
        name = str(key).lower()
        if name in wanted and value is not None:
            found[name] = value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)
    return found or None


def consumer_span(topics: Iterable[str] | str, group: object, servers: object, batches: Iterable[Any],
                  component: Component = Component.KafkaConsumer) -> Span | None:
    """The started entry span of a received batch (see the module docstring); None when it cannot be made."""
    try:
        joined = topics if isinstance(topics, str) else ";".join(topics)
        broker = brokers(servers)
        span: Span | None = None
        ctx = fresh_context()  # its own segment, whatever code polled
        for headers in batches:
            found = _lookup(headers)
            if found is None:
                continue
            carrier = inbound_carrier(found.get)
            if span is None:
                span = ctx.new_entry_span(consumer_op(joined, group), carrier)
            else:
                span.extract(carrier)  # one more ref
        if span is None:
            span = ctx.new_entry_span(consumer_op(joined, group))
        span.component = component
        span.peer = broker or None
        _tag(span, broker, joined)
        return span.start()
    except Exception:
        logger.debug("kafka: no span for a received batch", exc_info=True)
        return None
