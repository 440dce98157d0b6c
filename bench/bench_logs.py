"""Log reporter benchmark: one request = one ``logger.warning('order %s paid by %s', i, 'bob')`` inside an open
entry span, to a logger whose only handler is a ``NullHandler`` (so the application's own handling is minimal and
the reporter's share shows).

* ``--mode baseline``: the logging call alone; ``skywalking`` is never imported.
* ``--mode agent`` under upstream ``apache-skywalking==1.2.0``: its ``skywalking.log.sw_logging.install()`` (which
  builds the ``LogData`` on the logging thread); ``agent.archive_log`` replaced by a counter (its queue exists only
  after ``agent.start()``, which needs a collector).
* ``--mode agent`` under ``company-skywalking``: ``sw_logging.install(feed)`` with a real log ``Feed``; the
  request hands the record off (rendered message, trace context) and the feed is emptied every 1024 records
  instead of by the sender thread. What the sender thread then does per record (layout, tags, ``LogData``
  encoding) is measured after the rounds and reported as ``sender_us_per_record``.

Both agent legs check that every record reached the sink with the span's trace context. The meter thread's CPU
per period (``meter_cpu_ms_per_period``: the nine PVM gauges plus 100 counters and a histogram) is measured in the
``ours`` leg. Prints exactly one JSON line.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json
import logging
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench_core (run.py runs scripts with -I)

from bench_core import CountingSink, ensure, measure, per_request

BENCHMARK = 'logs'
DRAIN = 1024
Request = Callable[[], Any]
Checker = Callable[[int], dict[str, Any]]


def app_logger() -> logging.Logger:
    log = logging.getLogger('bench.orders')
    log.addHandler(logging.NullHandler())
    log.propagate = False
    log.setLevel(logging.INFO)
    return log


def setup_baseline() -> tuple[Request, Checker, dict[str, Any], Callable[[], None]]:
    log = app_logger()

    def request() -> None:
        log.warning('order %s paid by %s', 7, 'bob')

    def check(total: int) -> dict[str, Any]:
        ensure('skywalking' not in sys.modules, 'baseline imported skywalking')
        return {'skywalking_imported': False}

    return request, check, {'impl': 'baseline', 'package': None, 'version': None}, lambda: None


def setup_upstream() -> tuple[Request, Checker, dict[str, Any], Callable[[], None]]:
    from skywalking import config
    from skywalking.agent import agent as sw_agent
    from skywalking.log import sw_logging
    from skywalking.trace.context import get_context

    config.init(agent_name='bench', agent_profile_active=False, agent_meter_reporter_active=False,
                sample_n_per_3_secs=0)
    config.finalize()
    sink = CountingSink()
    sw_agent.is_segment_queue_full = sink.is_segment_queue_full
    sw_agent.archive_segment = sink.archive_segment
    got: list[Any] = []

    def archive_log(data: Any) -> None:
        got.append(data)
        if len(got) >= DRAIN:
            del got[:-1]

    sw_agent.archive_log = archive_log
    sw_logging.install()
    log = app_logger()
    span = get_context().new_entry_span(op='/orders')
    span.start()
    counted = [0]

    def request() -> None:
        log.warning('order %s paid by %s', 7, 'bob')
        counted[0] += 1

    def check(total: int) -> dict[str, Any]:
        last = got[-1]
        ensure(last.traceContext.traceSegmentId == str(span.context.segment.segment_id), 'no trace context')
        ensure(counted[0] == total, 'not every record was logged')
        return {'records': total, 'endpoint': last.endpoint}

    meta = {'impl': 'upstream', 'package': 'apache-skywalking',
            'version': importlib.metadata.version('apache-skywalking'),
            'reporter': 'agent.archive_log replaced by a list (LogData built on the logging thread, as upstream)'}
    return request, check, meta, span.stop


def setup_ours() -> tuple[Request, Checker, dict[str, Any], Callable[[], None]]:
    import skywalking
    from skywalking import agent, config
    from skywalking.agent.telemetry import LOG_PATH
    from skywalking.log import sw_logging
    from skywalking.log.entry import build
    from skywalking.protocol_v8 import telemetry as v8
    from skywalking.reporter.data import Feed
    from skywalking.reporter.memory import MemoryReporter
    from skywalking.trace.context import get_context

    config.init(agent_name='bench', agent_protocol_version='v8')
    agent.start(reporter=MemoryReporter(maxlen=16))
    feed = Feed('log', LOG_PATH, lambda c: v8.encode_log(build(c)), 10_000)
    sw_logging.install(feed)
    log = app_logger()
    span = get_context().new_entry_span(op='/orders')
    span.start()
    queue = feed.queue

    def request() -> None:
        log.warning('order %s paid by %s', 7, 'bob')
        if len(queue) >= DRAIN:
            queue.clear()

    def check(total: int) -> dict[str, Any]:
        books = feed.accounts.snapshot()
        ensure(books['created'] == total and books['dropped_total'] == 0, f'feed books {books}')
        captured = queue[-1]
        ensure(captured.trace is not None and captured.trace[1] == span.context.current_segment.segment_id.value,
               'no trace context')
        items = list(queue) * (2000 // max(1, len(queue)) + 1)
        start = time.process_time_ns()
        for item in items:
            feed.encode(item).SerializeToString()
        sender = (time.process_time_ns() - start) / len(items) / 1000
        return {'records': total, 'sender_us_per_record': round(sender, 3),
                'meter_cpu_ms_per_period': meter_period_cpu()}

    meta = {'impl': 'ours', 'package': 'company-skywalking', 'version': skywalking.__version__,
            'reporter': 'the log Feed (hand-off only; emptied every 1024 records instead of by the sender)'}
    return request, check, meta, span.stop


def meter_period_cpu() -> float:
    """CPU ms of one meter-thread period: PVM gauges, 100 counters and a histogram read and handed off."""
    from skywalking.agent.telemetry import METER_PATH
    from skywalking.meter import Counter, Histogram, pvm
    from skywalking.meter.meter_service import MeterService
    from skywalking.meter.reporter import MeterReporter
    from skywalking.protocol_v8 import telemetry as v8
    from skywalking.reporter.data import Feed

    registry = MeterService()
    pvm.register(registry)
    for i in range(100):
        registry.register(f'c{i}', Counter.Builder(f'c{i}').tag('shop', 'north').create).increment(i)
    registry.register('h', Histogram.Builder('h', [1, 5, 10, 50]).create).add_value(7)
    feed = Feed('meter', METER_PATH, lambda item: v8.encode_meter(*item), 100_000)
    meters = MeterReporter(feed, 20, registry)
    samples = []
    for _ in range(20):
        meters.report_once()
        samples.append(meters.cpu_ms_last)
    start = time.thread_time()
    for item in list(feed.queue):
        feed.encode(item).SerializeToString()
    encode_ms = (time.thread_time() - start) * 1000 / 20
    samples.sort()
    return round(samples[len(samples) // 2] + encode_ms, 3)


def setup(mode: str) -> tuple[Request, Checker, dict[str, Any], Callable[[], None]]:
    if mode == 'baseline':
        return setup_baseline()
    import skywalking

    if getattr(skywalking, '__distribution__', None) == 'company-skywalking':
        return setup_ours()
    return setup_upstream()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--mode', choices=('baseline', 'agent'), required=True)
    parser.add_argument('--requests', type=int, default=20_000, help='records per round')
    parser.add_argument('--rounds', type=int, default=7)
    parser.add_argument('--warmup', type=int, default=5_000, help='records before timing starts')
    parser.add_argument('--no-gc', action='store_true', help='disable the cyclic GC (instruction counts)')
    args = parser.parse_args(argv)
    if args.no_gc:
        gc.disable()
    result: dict[str, Any] = {'benchmark': BENCHMARK, 'mode': args.mode, 'ok': False,
                              'python': platform.python_version(), 'executable': sys.executable,
                              'requests': args.requests, 'rounds': args.rounds, 'warmup': args.warmup}
    try:
        request, check, meta, close = setup(args.mode)
        result.update(meta)
        timings, cpu, _ = measure(request, args.requests, args.rounds, args.warmup)
        result.update(per_request(timings, cpu, args.requests))
        result['checks'] = check(1 + args.warmup + args.requests * args.rounds)
        close()
        result['ok'] = True
    except Exception as exc:
        result['error'] = f'{type(exc).__name__}: {exc}'
        result['traceback'] = traceback.format_exc()
    print(json.dumps(result), flush=True)
    return 0 if result['ok'] else 1


if __name__ == '__main__':
    raise SystemExit(main())
