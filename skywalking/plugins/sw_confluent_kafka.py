"""``confluent-kafka`` (Kafka through librdkafka, confluent-kafka 2.2+).

``confluent_kafka.Producer`` and ``Consumer`` are C extension types whose methods cannot be replaced, so the
plugin puts subclasses of them in their place in the ``confluent_kafka`` namespace (restored by ``uninstall()``):
objects made through ``confluent_kafka.Producer(...)`` / ``confluent_kafka.Consumer(...)`` afterwards are traced.
``isinstance`` / ``issubclass`` against the swapped-in names still accept the original types and their
subclasses. Not traced: objects made before the plugin was installed, and classes bound earlier by name (``from
confluent_kafka import Producer`` executed before the agent started) or taken from ``confluent_kafka.cimpl``.
``SerializingProducer`` and ``DeserializingConsumer`` are Python classes: their methods are wrapped in place.

Producer: an exit span ``Kafka/<topic>/Producer`` around each ``Producer.produce`` and
``SerializingProducer.produce`` call. The span covers the call only (librdkafka queues the message; delivery
happens later, during ``poll()`` / ``flush()``): an exception the call raises (a full queue, a message too large,
a serializer error) marks it as an error; a failure reported later to the delivery callback does not. The headers
of ``agent_propagation`` (``sw6`` by default) are added to the message's headers as UTF-8 bytes, on a copy (a list
of ``(key, value)`` pairs stays a list, a dict stays a dict, none becomes a list): the caller's object is left as
it was; a same-named header of the caller's is replaced. ``produce_batch`` is not traced (librdkafka's batch API
carries no headers), nor, therefore, the ``confluent_kafka.aio`` producer.

Consumer: an entry span ``Kafka/<topics>/Consumer/<group>`` (its own segment) per ``Consumer.poll`` /
``DeserializingConsumer.poll`` call that returned a message and per ``Consumer.consume`` call that returned a
non-empty list, with a CrossProcess ref for every record carrying a header (``<topics>``: the topics of the
returned records, ``;``-joined in the order they first appear). The span marks the moment the call returned (it
starts and ends then): neither the wait for messages nor the application's handling of them is in it. A record
whose ``error()`` is set (e.g. an unknown subscribed topic) marks the span as an error with that error as its
log; partition-EOF events (``enable.partition.eof``) are not errors and alone make no span (nor does the
``ConsumeError`` a ``DeserializingConsumer`` raises for one). A call that raises (a closed consumer;
``DeserializingConsumer``'s ``ConsumeError`` or deserializer errors) gets an error entry span named after the
record it concerns, else the subscribed topics, and the exception reaches the application unchanged.
``confluent_kafka.aio.AIOConsumer`` receives through ``confluent_kafka.Consumer``: traced the same way.

Layer MQ, components KafkaProducer (40) / KafkaConsumer (41), peer = the ``bootstrap.servers`` of the client's
configuration (``;``-joined); tags ``mq.broker`` (same value) and ``mq.topic``."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from skywalking.loggings import logger
from skywalking.plugins import Plugin
from skywalking.plugins._kafka import consumer_span, producer_span, with_headers

_PRODUCE_HEADERS_AT = 7  # Producer.produce(topic, value, key, partition, callback, on_delivery, timestamp, headers)
_SERIALIZING_HEADERS_AT = 6  # SerializingProducer.produce(topic, key, value, partition, on_delivery, timestamp, ...)
_PARTITION_EOF = -191  # librdkafka's RD_KAFKA_RESP_ERR__PARTITION_EOF: the end of a partition, not a failure
_ATTR = "_sw_kafka"  # where a client keeps what its spans need (a _Client)


class _Client:
    """What the spans of one client need from its configuration, and the topics it subscribed to."""

    __slots__ = ("group", "servers", "topics")

    def __init__(self, servers: str, group: str) -> None:
        self.servers = servers
        self.group = group
        self.topics: list[str] = []


_UNKNOWN = _Client("", "")


def _setting(config: Mapping[str, Any], kwargs: dict[str, Any], *names: str) -> str:
    for name in names:  # keyword arguments override the dict; either may spell the name with _ for .
        for source in (kwargs, config):
            value = source.get(name, source.get(name.replace(".", "_")))
            if value is not None:
                return str(value)
    return ""


def _remember(client: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Keep ``bootstrap.servers`` and ``group.id`` of the configuration a client was made with."""
    try:
        config = args[0] if args and isinstance(args[0], Mapping) else {}
        setattr(client, _ATTR, _Client(_setting(config, kwargs, "bootstrap.servers", "metadata.broker.list"),
                                       _setting(config, kwargs, "group.id")))
    except Exception:
        logger.debug("sw_confluent_kafka: client configuration not read", exc_info=True)


def _client(instance: Any) -> _Client:
    client = getattr(instance, _ATTR, None)
    return client if isinstance(client, _Client) else _UNKNOWN


# -- producer -------------------------------------------------------------------------------------------------------

def _produce(produce: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
             headers_at: int, unbound: bool) -> Any:
    """``instance``'s ``produce(*args, **kwargs)`` inside its exit span, headers added (``unbound``: ``produce``
    is the class's function, called with ``instance`` first)."""
    span = producer_span(args[0] if args else kwargs.get("topic"), _client(instance).servers)
    if span is None:
        return produce(instance, *args, **kwargs) if unbound else produce(*args, **kwargs)
    try:
        if len(args) > headers_at:
            headers = args[headers_at]
            if headers is None or isinstance(headers, (list, dict)):  # anything else: the library's error
                args = (*args[:headers_at], with_headers(headers, span), *args[headers_at + 1:])
        else:
            headers = kwargs.get("headers")
            if headers is None or isinstance(headers, (list, dict)):
                kwargs["headers"] = with_headers(headers, span)  # a dict of this call's own
        return produce(instance, *args, **kwargs) if unbound else produce(*args, **kwargs)
    except Exception:
        span.raised()
        raise
    finally:
        span.stop()


def _serializing_produce(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    if not plugin.installed:
        return wrapped(*args, **kwargs)
    return _produce(wrapped, instance, args, kwargs, _SERIALIZING_HEADERS_AT, False)


# -- consumer -------------------------------------------------------------------------------------------------------

def _is_eof(message: Any) -> bool:
    error = message.error()
    return error is not None and error.code() == _PARTITION_EOF


def _received(instance: Any, messages: Any) -> None:
    """The entry span of the messages one consume() returned (events only: none)."""
    try:
        topics: list[str] = []
        headers: list[Any] = []
        failure = None
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == _PARTITION_EOF:
                    continue
                failure = failure or error
            topic = message.topic()
            if topic is not None and topic not in topics:
                topics.append(topic)
            headers.append(message.headers())
        if headers:
            _finish(instance, topics, headers, failure)
    except Exception:
        logger.debug("sw_confluent_kafka: no span for received messages", exc_info=True)


def _received_one(instance: Any, message: Any) -> None:
    """The entry span of the message one poll() returned (an event: none)."""
    try:
        if not _is_eof(message):
            _finish(instance, message.topic() or "", (message.headers(),), message.error())
    except Exception:
        logger.debug("sw_confluent_kafka: no span for a received message", exc_info=True)


def _finish(instance: Any, topics: list[str] | str, headers: Iterable[Any], error: Any) -> None:
    client = _client(instance)
    span = consumer_span(topics, client.group, client.servers, headers)
    if span is None:
        return
    try:
        if error is not None:
            span.log(importlib.import_module("confluent_kafka").KafkaException(error))
    finally:
        span.stop()


def _refused(instance: Any, message: Any = None) -> None:
    """An error entry span for a receive call that raised (called in its ``except`` block)."""
    try:
        if message is not None and _is_eof(message):  # DeserializingConsumer raises for it: not a failure
            return
        client = _client(instance)
        topic = message.topic() if message is not None else None
        topics = [topic] if topic else client.topics
        span = consumer_span(topics, client.group, client.servers, [message.headers()] if message is not None else [])
        if span is not None:
            try:
                span.raised()
            finally:
                span.stop()
    except Exception:
        logger.debug("sw_confluent_kafka: no span for a failed receive", exc_info=True)


def _subscribed(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    try:
        topics = args[0] if args else kwargs.get("topics")
        if isinstance(topics, (list, tuple)):
            client = _client(instance)
            if client is not _UNKNOWN:
                client.topics = [str(t) for t in topics]
    except Exception:
        logger.debug("sw_confluent_kafka: subscription not recorded", exc_info=True)


def _deserializing_poll(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    if not plugin.installed:
        return wrapped(*args, **kwargs)
    try:
        message = wrapped(*args, **kwargs)
    except Exception as e:
        _refused(instance, getattr(e, "kafka_message", None))  # ConsumeError and the serde errors carry it
        raise
    if message is not None:
        _received_one(instance, message)
    return message


def _init(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    result = wrapped(*args, **kwargs)
    _remember(instance, args, kwargs)
    return result


def _subscribe(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    result = wrapped(*args, **kwargs)
    _subscribed(instance, args, kwargs)
    return result


# -- the swapped-in classes -----------------------------------------------------------------------------------------

class _Swapped(type):
    """Metaclass of the swapped-in subclasses: ``isinstance`` / ``issubclass`` answer for the original type, so
    code that checks against ``confluent_kafka.Producer`` keeps accepting what it accepted."""

    def __instancecheck__(cls, instance: Any) -> bool:
        original = cls.__dict__.get("_sw_original")  # an application's subclass of ours: the usual check
        return isinstance(instance, original) if original is not None else type.__instancecheck__(cls, instance)

    def __subclasscheck__(cls, subclass: type) -> bool:
        original = cls.__dict__.get("_sw_original")
        return issubclass(subclass, original) if original is not None else type.__subclasscheck__(cls, subclass)


def _producer_class(original: Any) -> type:
    base_init, base_produce = original.__init__, original.produce

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        base_init(self, *args, **kwargs)
        _remember(self, args, kwargs)

    def produce(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not plugin.installed:
            return base_produce(self, *args, **kwargs)
        return _produce(base_produce, self, args, kwargs, _PRODUCE_HEADERS_AT, True)

    return _Swapped("Producer", (original,), {
        "__init__": __init__, "produce": produce, "_sw_original": original, "__doc__": original.__doc__,
        "__module__": __name__, "__qualname__": "Producer"})


def _consumer_class(original: Any) -> type:
    base_init, base_subscribe = original.__init__, original.subscribe
    base_poll, base_consume = original.poll, original.consume

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        base_init(self, *args, **kwargs)
        _remember(self, args, kwargs)

    def subscribe(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = base_subscribe(self, *args, **kwargs)
        _subscribed(self, args, kwargs)
        return result

    def poll(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not plugin.installed:
            return base_poll(self, *args, **kwargs)
        try:
            message = base_poll(self, *args, **kwargs)
        except Exception:
            _refused(self)
            raise
        if message is not None:
            _received_one(self, message)
        return message

    def consume(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not plugin.installed:
            return base_consume(self, *args, **kwargs)
        try:
            messages = base_consume(self, *args, **kwargs)
        except Exception:
            _refused(self)
            raise
        if messages:
            _received(self, messages)
        return messages

    return _Swapped("Consumer", (original,), {
        "__init__": __init__, "subscribe": subscribe, "poll": poll, "consume": consume, "_sw_original": original,
        "__doc__": original.__doc__, "__module__": __name__, "__qualname__": "Consumer"})


class ConfluentKafkaPlugin(Plugin):
    name = "sw_confluent_kafka"
    instruments = ("confluent-kafka>=2.2",)
    modules = ("confluent_kafka",)
    note = ("Kafka through confluent-kafka: `Producer.produce`, `Consumer.poll` / `consume` (the classes are "
            "swapped in the `confluent_kafka` namespace), `SerializingProducer.produce`, `DeserializingConsumer.poll`")

    def _install(self) -> None:
        module = importlib.import_module("confluent_kafka")
        self._swap(module, "Producer", _producer_class)
        self._swap(module, "Consumer", _consumer_class)
        self.when_imported("confluent_kafka.serializing_producer", self._serializing)
        self.when_imported("confluent_kafka.deserializing_consumer", self._deserializing)

    def _swap(self, module: Any, name: str, make: Callable[[Any], type]) -> None:
        original = getattr(module, name)
        setattr(module, name, make(original))
        self._wrapped.append((module, name, original, True))  # restored by uninstall() like a wrap

    def _serializing(self) -> None:
        where = "confluent_kafka.serializing_producer"
        self.wrap(where, "SerializingProducer.__init__", _init)
        self.wrap(where, "SerializingProducer.produce", _serializing_produce)

    def _deserializing(self) -> None:
        where = "confluent_kafka.deserializing_consumer"
        self.wrap(where, "DeserializingConsumer.__init__", _init)
        self.wrap(where, "DeserializingConsumer.subscribe", _subscribe)
        self.wrap(where, "DeserializingConsumer.poll", _deserializing_poll)


plugin = ConfluentKafkaPlugin()
