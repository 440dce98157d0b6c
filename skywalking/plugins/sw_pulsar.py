"""``pulsar-client`` (Apache Pulsar, pulsar-client 3.1+), and its ``pulsar.asyncio`` API where a release has it.

Producer: an exit span ``Pulsar/Topic/<topic>/Producer`` around ``Producer.send`` and the awaited
``pulsar.asyncio.Producer.send`` (until the broker has acknowledged the message), and around
``Producer.send_async`` (the call only: it returns once the client has queued the message; the broker's answer,
given to the callback later, is not part of the span). ``<topic>`` is the last part of the producer's topic name
(``persistent://public/default/orders`` → ``orders``). The headers of ``agent_propagation`` (``sw6`` by default)
go into the message's properties: a new dict is sent, the caller's ``properties`` dict is left as it was (the
first ``pulsar.asyncio`` releases, 3.5 among them, have no properties: their sends are traced without a header).

Consumer: an entry span ``Pulsar/Topic/<topic>/Consumer`` per message, continuing the header its properties carry,
in a segment of its own: around each call of a ``message_listener`` given to ``Client.subscribe`` (the listener's
work is part of the trace); for ``Consumer.receive``, each message of ``Consumer.batch_receive`` and the awaited
``pulsar.asyncio.Consumer.receive``, a span made when the call hands the message over (it marks the delivery: what
the application does with the message afterwards is not in it). ``<topic>`` is the last part of the message's
topic name. A receive that times out or is interrupted makes no span (nothing was delivered); one that fails
otherwise (a closed consumer, a consumer with a listener) gets an error entry span with the consumer's topic.

Layer MQ, components PulsarProducer (73) / PulsarConsumer (74), peer = the client's service URL as given to
``Client`` (``pulsar://host:6650``; for a failover configuration, its primary's); tags ``mq.broker`` (the same URL)
and ``mq.topic`` (``<topic>``). A call that raises marks its span as an error and the exception reaches the
application unchanged. Not traced: ``Reader`` (``read_next``, the reader listener)."""

from __future__ import annotations

import importlib
import inspect
import time
from collections.abc import Callable
from typing import Any

from skywalking import Component, Layer
from skywalking.loggings import logger
from skywalking.plugins import Plugin
from skywalking.plugins._callback import traced_callback
from skywalking.trace.carrier import inbound_carrier
from skywalking.trace.context import fresh_context, get_context, inside_exit_span
from skywalking.trace.span import Span
from skywalking.trace.tags import TagMqBroker, TagMqTopic

_PEER = "_sw_pulsar_peer"  # on a Client, Producer, Consumer: the service URL (None when unknown)
_TARGET = "_sw_pulsar"  # on a Producer: (operation name, short topic, peer), made once
_LISTENER_AT = 4  # subscribe(topic, subscription_name, consumer_type, schema, message_listener, ...)

# receive() failures that deliver nothing and are no error of the consumer (set by _install)
_quiet: tuple[type[BaseException], ...] = ()
_aio_error: tuple[type[Any], ...] = ()  # pulsar.asyncio.PulsarException (set by _install_asyncio)
_aio_properties = False  # whether pulsar.asyncio.Producer.send takes properties (not in the first releases)


def _short(topic: Any) -> str:
    return str(topic or "").rsplit("/", 1)[-1]


def _op(topic: str, role: str) -> str:
    return f"Pulsar/Topic/{topic}/{role}"


def _tag(span: Span, peer: str | None, topic: str) -> None:
    span.layer = Layer.MQ
    if peer:
        span.tag(TagMqBroker(peer))
    span.tag(TagMqTopic(topic))


# -- the client's service URL ---------------------------------------------------------------------------------------

def _service_url(client: Any, service_url: Any) -> str | None:
    if isinstance(service_url, str):
        return service_url
    primary = getattr(getattr(service_url, "primary", None), "service_url", None)  # AutoClusterFailover
    if isinstance(primary, str):
        return primary
    info = getattr(client, "get_service_info", None)  # ServiceInfoProvider: the URL in use now
    url = getattr(info(), "service_url", None) if callable(info) else None
    return url if isinstance(url, str) else None


def _client_init(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    result = wrapped(*args, **kwargs)
    try:
        setattr(instance, _PEER, _service_url(instance, args[0] if args else kwargs.get("service_url")))
    except Exception:
        logger.debug("sw_pulsar: no service URL for a client", exc_info=True)
    return result


def _create_producer(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    producer = wrapped(*args, **kwargs)
    try:
        _target(producer, getattr(instance, _PEER, None))
    except Exception:
        logger.debug("sw_pulsar: producer not described", exc_info=True)
    return producer


# -- producer -------------------------------------------------------------------------------------------------------

def _target(producer: Any, peer: str | None) -> tuple[str, str, str | None]:
    # the first pulsar.asyncio producers have no topic(): their C++ producer has
    topic = _short((getattr(producer, "topic", None) or producer._producer.topic)())
    target = (_op(topic, "Producer"), topic, peer)
    setattr(producer, _TARGET, target)
    return target


def _producer_span(producer: Any) -> Span | None:
    """The started exit span of a send; None when it is not to be traced."""
    if inside_exit_span():
        return None
    try:
        op, topic, peer = getattr(producer, _TARGET, None) or _target(producer, None)
        span = get_context().new_exit_span(op=op, peer=peer, component=Component.PulsarProducer)
        _tag(span, peer, topic)
        return span.start()
    except Exception:  # never into the application: send untraced
        logger.debug("sw_pulsar: no span for a send", exc_info=True)
        return None


def _with_headers(args: tuple[Any, ...], kwargs: dict[str, Any], at: int,
                  span: Span) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The call's arguments with the span's headers added to a copy of ``properties`` (position ``at``)."""
    positional = len(args) > at
    properties = args[at] if positional else kwargs.get("properties")
    if properties is not None and not isinstance(properties, dict):
        return args, kwargs  # the library rejects it, as it would without us
    merged = dict(properties) if properties else {}
    for item in span.inject():
        merged[item.key] = item.val
    if positional:
        return (*args[:at], merged, *args[at + 1:]), kwargs
    return args, {**kwargs, "properties": merged}


def _traced_send(at: int) -> Callable[[Any, Any, Any, Any], Any]:
    """The wrapper of ``send`` / ``send_async``, whose ``properties`` argument is at position ``at``."""

    def send(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        span = _producer_span(instance)
        if span is None:
            return wrapped(*args, **kwargs)
        try:
            try:
                args, kwargs = _with_headers(args, kwargs, at, span)
            except Exception:  # send without the header rather than not at all
                logger.debug("sw_pulsar: no header for a send", exc_info=True)
            return wrapped(*args, **kwargs)
        except Exception:
            span.raised()
            raise
        finally:
            span.stop()

    return send


async def _aio_send(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``pulsar.asyncio.Producer.send(content, properties, ...)``: the span lasts until the broker's answer."""
    span = _producer_span(instance)
    if span is None:
        return await wrapped(*args, **kwargs)
    try:
        if _aio_properties:
            try:
                args, kwargs = _with_headers(args, kwargs, 1, span)
            except Exception:
                logger.debug("sw_pulsar: no header for a send", exc_info=True)
        return await wrapped(*args, **kwargs)
    except BaseException as e:
        if isinstance(e, (Exception, *_aio_error)):  # the first PulsarException was a BaseException
            span.raised()
        raise
    finally:
        span.stop()


async def _aio_create_producer(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    producer = await wrapped(*args, **kwargs)
    try:
        _target(producer, getattr(instance, _PEER, None))
    except Exception:
        logger.debug("sw_pulsar: producer not described", exc_info=True)
    return producer


# -- consumer -------------------------------------------------------------------------------------------------------

def _consumer_span(message: Any, peer: str | None) -> Span | None:
    """The started entry span of one delivered message; None when it cannot be made."""
    try:
        topic = _short(message.topic_name())
        found = message.properties() or {}
        # its own segment: never nested in (nor re-filing) the segment of whatever code received the message
        span = fresh_context().new_entry_span(_op(topic, "Consumer"), inbound_carrier(found.get))
        span.component = Component.PulsarConsumer
        span.peer = peer
        _tag(span, peer, topic)
        return span.start()
    except Exception:
        logger.debug("sw_pulsar: no span for a message", exc_info=True)
        return None


def _delivered(consumer: Any, message: Any) -> None:
    span = _consumer_span(message, getattr(consumer, _PEER, None))
    if span is not None:
        span.stop()


def _refused(consumer: Any, start_ms: int) -> None:
    """An error entry span for a receive that raised (called in its ``except`` block)."""
    try:
        topic = _short(consumer.topic())
        peer = getattr(consumer, _PEER, None)
        span = fresh_context().new_entry_span(_op(topic, "Consumer"))
        span.component = Component.PulsarConsumer
        span.peer = peer
        _tag(span, peer, topic)
        with span:
            span.start_time = start_ms
            span.raised()
    except Exception:
        logger.debug("sw_pulsar: no span for a failed receive", exc_info=True)


def _receive(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    start = time.time_ns() // 1_000_000
    try:
        message = wrapped(*args, **kwargs)
    except Exception as e:
        if not isinstance(e, _quiet):
            _refused(instance, start)
        raise
    _delivered(instance, message)
    return message


def _aio_quiet(error: BaseException) -> bool:
    """``pulsar.asyncio.PulsarException`` has one class for every error: its result code tells them apart."""
    return isinstance(error, _aio_error) and getattr(error.error(), "name", None) in ("Timeout", "Interrupted")


async def _aio_receive(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    start = time.time_ns() // 1_000_000
    try:
        message = await wrapped(*args, **kwargs)
    except BaseException as e:
        if isinstance(e, (Exception, *_aio_error)) and not _aio_quiet(e):
            _refused(instance, start)
        raise
    _delivered(instance, message)
    return message


async def _aio_subscribe(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    consumer = await wrapped(*args, **kwargs)
    try:
        setattr(consumer, _PEER, getattr(instance, _PEER, None))
    except Exception:
        logger.debug("sw_pulsar: consumer not described", exc_info=True)
    return consumer


def _batch_receive(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    start = time.time_ns() // 1_000_000
    try:
        messages = wrapped(*args, **kwargs)
    except Exception as e:
        if not isinstance(e, _quiet):
            _refused(instance, start)
        raise
    try:
        for message in messages:
            _delivered(instance, message)
    except Exception:
        logger.debug("sw_pulsar: no spans for a batch", exc_info=True)
    return messages


def _traced_listener(listener: Any, peer: str | None) -> Any:
    """``listener(consumer, message)`` inside the entry span of its message."""
    def span_for(consumer: Any, message: Any) -> Span | None:
        return _consumer_span(message, peer) if plugin.installed else None

    return traced_callback(listener, span_for, "_sw_pulsar_listener")


def _subscribe(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    peer = getattr(instance, _PEER, None)
    try:
        if len(args) > _LISTENER_AT:
            args = (*args[:_LISTENER_AT], _traced_listener(args[_LISTENER_AT], peer), *args[_LISTENER_AT + 1:])
        elif kwargs.get("message_listener") is not None:
            kwargs = {**kwargs, "message_listener": _traced_listener(kwargs["message_listener"], peer)}
    except Exception:
        logger.debug("sw_pulsar: message listener not traced", exc_info=True)
    consumer = wrapped(*args, **kwargs)
    try:
        setattr(consumer, _PEER, peer)
    except Exception:
        logger.debug("sw_pulsar: consumer not described", exc_info=True)
    return consumer


class PulsarPlugin(Plugin):
    name = "sw_pulsar"
    instruments = ("pulsar-client>=3.1",)
    modules = ("pulsar",)
    note = ("Apache Pulsar through pulsar-client: `Producer.send` / `send_async`, `Consumer.receive` / "
            "`batch_receive`, `subscribe(message_listener=...)` callbacks, and `pulsar.asyncio`'s `Producer.send` / "
            "`Consumer.receive`")

    def _install(self) -> None:
        global _quiet
        exceptions = importlib.import_module("pulsar.exceptions")
        _quiet = tuple(getattr(exceptions, name) for name in ("Timeout", "Interrupted") if hasattr(exceptions, name))
        self.wrap("pulsar", "Client.__init__", _client_init)
        self.wrap("pulsar", "Client.create_producer", _create_producer)
        self.wrap("pulsar", "Client.subscribe", _subscribe)
        self.wrap("pulsar", "Producer.send", _traced_send(1))  # send(content, properties, ...)
        self.wrap("pulsar", "Producer.send_async", _traced_send(2))  # send_async(content, callback, properties, ...)
        self.wrap("pulsar", "Consumer.receive", _receive)
        self.wrap("pulsar", "Consumer.batch_receive", _batch_receive)
        self.when_imported("pulsar.asyncio", self._install_asyncio)

    def _install_asyncio(self) -> None:
        """``pulsar.asyncio``, in the releases that have it (what a release has of it is traced)."""
        global _aio_error, _aio_properties
        wrappers = (("Client.__init__", _client_init), ("Client.create_producer", _aio_create_producer),
                    ("Client.subscribe", _aio_subscribe), ("Producer.send", _aio_send),
                    ("Consumer.receive", _aio_receive))
        aio = importlib.import_module("pulsar.asyncio")
        _aio_error = tuple(c for c in (getattr(aio, "PulsarException", None),) if isinstance(c, type))
        send = getattr(getattr(aio, "Producer", None), "send", None)
        _aio_properties = send is not None and "properties" in inspect.signature(send).parameters
        for name, wrapper in wrappers:
            owner, _, method = name.partition(".")
            if hasattr(getattr(aio, owner, None), method):
                self.wrap(aio, name, wrapper)


plugin = PulsarPlugin()
