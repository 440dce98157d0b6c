"""The log reporter's hand-off (``skywalking.log.sw_logging``) into a real feed: which records it takes, what it
captures, and that it leaves ``logging`` as it found it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from skywalking import config
from skywalking.log import sw_logging
from skywalking.reporter.data import Feed
from skywalking.trace.context import get_context


@pytest.fixture
def feed() -> Iterator[Feed]:
    original = logging.Logger.callHandlers
    config.agent_log_reporter_level = "INFO"
    got = Feed("log", "", lambda c: c, 100)
    sw_logging.install(got)
    yield got
    sw_logging.uninstall()
    config.agent_log_reporter_level = "WARNING"
    assert logging.Logger.callHandlers is original


def log_on(thread_name: str, log: logging.Logger) -> None:
    t = threading.Thread(target=lambda: log.error("from %s", thread_name), name=thread_name)
    t.start()
    t.join()


def test_records_at_or_above_the_level_are_taken_once_with_their_message(feed: Feed) -> None:
    log = logging.getLogger("unit.orders")
    log.setLevel(logging.DEBUG)
    log.debug("below")
    log.info("order %s", 7)
    log.addFilter(lambda r: "secret" not in r.getMessage())
    log.warning("a secret")  # rejected by the logger's filter: not reported
    assert [c.message for c in feed.queue] == ["order 7"]
    assert feed.queue[0].trace is None and feed.queue[0].record.name == "unit.orders"


def test_a_record_inside_a_span_captures_its_trace_context(feed: Feed, start_agent: object) -> None:
    start_agent()  # type: ignore[operator]
    sw_logging.install(feed)
    span = get_context().new_entry_span("/orders")
    with span:
        logging.getLogger("unit.orders").warning("inside")
        seg = span.context.current_segment
    (captured,) = feed.queue
    assert captured.trace == (seg.related_traces[0].value, seg.segment_id.value, span.sid)
    assert captured.endpoint == "/orders"


def test_the_agents_own_threads_and_loggers_are_not_reported(feed: Feed) -> None:
    log = logging.getLogger("grpc._channel")
    log_on("SkyWalkingDataSender", log)
    logging.getLogger("skywalking.reporter").error("the agent's own logger")
    assert len(feed.queue) == 0
    log_on("worker-1", log)
    assert [c.message for c in feed.queue] == ["from worker-1"]


def test_ignore_filter_reports_what_filters_reject(feed: Feed) -> None:
    config.agent_log_reporter_ignore_filter = True
    try:
        sw_logging.install(feed)
        log = logging.getLogger("unit.filtered")
        log.addFilter(lambda r: False)
        log.error("rejected")
        assert [c.message for c in feed.queue] == ["rejected"]
    finally:
        config.agent_log_reporter_ignore_filter = False
        sw_logging.install(feed)
