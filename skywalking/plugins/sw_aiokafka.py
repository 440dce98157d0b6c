"""``aiokafka`` (0.8+).

Producer: an exit span ``Kafka/<topic>/Producer`` around ``AIOKafkaProducer.send`` (metadata wait, serialisation
and queueing; the broker's acknowledgement arrives later on the returned future) and around
``AIOKafkaProducer.send_and_wait`` (until the broker acknowledged; the ``send`` it makes is not traced again).
The headers of ``agent_propagation`` (``sw6`` by default) are added to the record's headers as ``(str, bytes)``
pairs, in a new list: the caller's ``headers`` are left as they were.

Consumer: an entry span ``Kafka/<topics>/Consumer/<group>`` for each ``AIOKafkaConsumer.getone`` (async iteration
goes through it) and each ``getmany`` that returned records, in a segment of its own, with a CrossProcess ref for
every record that carries a propagation header. ``<topics>`` are the subscribed topics (the assigned ones for a
manual assignment), sorted, joined with ``;``; ``<group>`` is the ``group_id`` (empty without one). The span marks
the moment the records were handed over (it starts and ends then): the application's handling is not in it.

Layer MQ, components KafkaProducer (40) / KafkaConsumer (41); tags ``mq.broker`` (the ``bootstrap_servers``
joined with ``;``, also the spans' peer) and ``mq.topic`` (the topic; the consumer: ``<topics>``). A send that
raises (or is cancelled) marks its span as an error and the exception reaches the application unchanged. Not
traced: ``send_batch``, a ``getone``/``getmany`` that raises."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from skywalking import Component
from skywalking.loggings import logger
from skywalking.plugins import Plugin
from skywalking.plugins._kafka import consumer_span, producer_span, topics_of, with_headers_at

_HEADERS_AT = 5  # send(topic, value, key, partition, timestamp_ms, headers)


def _servers(client: Any) -> Any:
    return getattr(client, "_bootstrap_servers", None)


async def _send(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    topic = args[0] if args else kwargs.get("topic")
    span = producer_span(topic, _servers(getattr(instance, "client", None)), Component.KafkaProducer)
    if span is None:
        return await wrapped(*args, **kwargs)
    try:
        args, kwargs = with_headers_at(args, kwargs, _HEADERS_AT, span)
        return await wrapped(*args, **kwargs)
    except BaseException:  # a cancelled send is an error too
        span.raised()
        raise
    finally:
        span.stop()


def _received(consumer: Any, headers: Iterable[Any]) -> None:
    try:
        span = consumer_span(topics_of(consumer), getattr(consumer, "_group_id", None),
                             _servers(getattr(consumer, "_client", None)), headers, Component.KafkaConsumer)
        if span is not None:
            span.stop()
    except Exception:
        logger.debug("sw_aiokafka: no span for received records", exc_info=True)


async def _getone(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    record = await wrapped(*args, **kwargs)
    if plugin.installed:
        _received(instance, (getattr(record, "headers", None),))
    return record


async def _getmany(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    records = await wrapped(*args, **kwargs)
    if records and plugin.installed:
        _received(instance, (record.headers for batch in records.values() for record in batch))
    return records


class AIOKafkaPlugin(Plugin):
    name = "sw_aiokafka"
    instruments = ("aiokafka>=0.8",)
    modules = ("aiokafka",)
    note = ("Kafka through aiokafka: `AIOKafkaProducer.send` / `send_and_wait`, `AIOKafkaConsumer.getone` "
            "(async iteration) / `getmany`")

    def _install(self) -> None:
        self.wrap("aiokafka.producer.producer", "AIOKafkaProducer.send", _send)
        self.wrap("aiokafka.producer.producer", "AIOKafkaProducer.send_and_wait", _send)
        self.wrap("aiokafka.consumer.consumer", "AIOKafkaConsumer.getone", _getone)
        self.wrap("aiokafka.consumer.consumer", "AIOKafkaConsumer.getmany", _getmany)


plugin = AIOKafkaPlugin()
