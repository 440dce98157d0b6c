"""Fixtures that several plugin test modules share word for word; each builds on the module's own ``broker`` or
``channel`` fixture (a module that defines a fixture of the same name uses its own)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest


def _name() -> str:
    return f"sw-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def topic(broker: Any) -> str:
    """A new topic on the Kafka modules' broker (``KafkaBroker.create_topic``)."""
    name = _name()
    broker.create_topic(name)
    return name


@pytest.fixture
def queue(channel: Any) -> str:
    """A new auto-delete queue declared on the AMQP modules' ``channel`` (pika and py-amqp take the same
    arguments)."""
    name = _name()
    channel.queue_declare(name, auto_delete=True)
    return name
