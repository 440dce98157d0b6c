"""``kafka-python`` (2.0.2+).

Producer: an exit span ``Kafka/<topic>/Producer`` around ``KafkaProducer.send`` (the call only: metadata wait,
serialisation and queueing; the broker's acknowledgement arrives later on the returned future). The headers of
``agent_propagation`` (``sw6`` by default) are added to the record's headers as ``(str, bytes)`` pairs, in a new
list: the caller's ``headers`` list is left as it was.

Consumer: an entry span ``Kafka/<topics>/Consumer/<group>`` for each ``KafkaConsumer._poll_once`` that returned
records (``poll()`` and iteration both go through it), in a segment of its own, with a CrossProcess ref for every
record that carries a propagation header. ``<topics>`` are the subscribed topics (the assigned ones for a manual
assignment), sorted, joined with ``;``; ``<group>`` is the ``group_id`` (empty without one). The span marks the
moment the batch was handed over (it starts and ends then): the application's handling of the records is not in it.

Layer MQ, components KafkaProducer (40) / KafkaConsumer (41); tags ``mq.broker`` (the ``bootstrap_servers``
joined with ``;``, also the spans' peer) and ``mq.topic`` (the topic; the consumer: ``<topics>``). A ``send``
that raises marks its span as an error and the exception reaches the application unchanged. Not traced: the
legacy iterator (``legacy_iterator=True`` of kafka-python 2.0), a poll that raises."""

from __future__ import annotations

from typing import Any

from skywalking import Component
from skywalking.loggings import logger
from skywalking.plugins import Plugin
from skywalking.plugins._kafka import consumer_span, producer_span, topics_of, with_headers_at

_HEADERS_AT = 3  # send(topic, value, key, headers, partition, timestamp_ms)


def _config(client: Any, key: str) -> Any:
    config = getattr(client, "config", None)
    return config.get(key) if isinstance(config, dict) else None


def _send(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    topic = args[0] if args else kwargs.get("topic")
    span = producer_span(topic, _config(instance, "bootstrap_servers"), Component.KafkaProducer)
    if span is None:
        return wrapped(*args, **kwargs)
    try:
        args, kwargs = with_headers_at(args, kwargs, _HEADERS_AT, span)
        return wrapped(*args, **kwargs)
    except Exception:
        span.raised()
        raise
    finally:
        span.stop()


def _poll_once(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    records = wrapped(*args, **kwargs)
    if records and plugin.installed:
        try:
            batches = (record.headers for batch in records.values() for record in batch)
            span = consumer_span(topics_of(instance), _config(instance, "group_id"),
                                 _config(instance, "bootstrap_servers"), batches, Component.KafkaConsumer)
            if span is not None:
                span.stop()
        except Exception:
            logger.debug("sw_kafka: no span for a poll", exc_info=True)
    return records


class KafkaPythonPlugin(Plugin):
    name = "sw_kafka"
    instruments = ("kafka-python>=2.0.2",)
    modules = ("kafka",)
    note = "Kafka through kafka-python: `KafkaProducer.send`, `KafkaConsumer` polls (`poll()` and iteration)"

    def _install(self) -> None:
        self.wrap("kafka.producer.kafka", "KafkaProducer.send", _send)
        self.wrap("kafka.consumer.group", "KafkaConsumer._poll_once", _poll_once)


plugin = KafkaPythonPlugin()
