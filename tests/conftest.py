"""Shared fixtures: an agent wired to the in-memory reporter, and config isolation."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from skywalking import agent, config
from skywalking.reporter.memory import MemoryReporter
from tests.protocol.procs import Proc


@pytest.fixture(autouse=True)
def _restore_config() -> Iterator[None]:
    saved = config.options()
    yield
    agent.stop()
    config.init(**saved)
    config.finalize()


@pytest.fixture
def reporter() -> Iterator[MemoryReporter]:
    """A started agent (protocol v6, instance id 2) whose segments land in the returned reporter."""
    rep = MemoryReporter()
    agent.start(reporter=rep)
    yield rep
    agent.stop()


@pytest.fixture
def start_agent() -> Iterator[object]:
    """Start the agent after the test sets options: ``rep = start_agent(agent_protocol_version='v8')``."""

    def _start(**options: object) -> MemoryReporter:
        config.init(**options)
        rep = MemoryReporter()
        agent.start(reporter=rep)
        return rep

    yield _start
    agent.stop()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Every process a test starts (collectors, services, fault servers); all are killed at the end, whatever
    happens (SIGKILL ends a SIGSTOPped one too)."""
    started: list[Proc] = []
    yield started
    for proc in reversed(started):
        proc.stop(kill=True)


@pytest.fixture
def spawn(procs: list[Proc]) -> Callable[..., Any]:
    """``spawn(Kind, *args)``: start a ``Proc`` subclass, stopped with the test."""
    def _spawn(kind: type, *args: Any, **kwargs: Any) -> Any:
        proc = kind(*args, **kwargs)
        procs.append(proc)
        return proc

    return _spawn

