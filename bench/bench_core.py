"""Core tracing benchmark: one HTTP-like request with an entry span and a nested exit span.

The same script is run by ``bench/run.py`` in three configurations:

* ``--mode baseline``: the request does only its non-tracing work (building the outgoing
  headers dict). ``skywalking`` is never imported.
* ``--mode agent`` under upstream ``apache-skywalking==1.2.0``: segments go to a counting
  sink installed on upstream's agent instance (there is no collector to report to).
* ``--mode agent`` under ``company-skywalking``: segments go to ``MemoryReporter``.

In agent mode the spans are real: they are recorded, archived and handed to a reporter,
and the script checks this after timing. It prints exactly one JSON line on stdout.
Stdlib only, so it runs unchanged in any of the venvs.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json
import platform
import statistics
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any

BENCHMARK = 'core'
Request = Callable[[], dict[str, str]]
Checker = Callable[[int, dict[str, str]], dict[str, Any]]


class CheckFailed(Exception):
    """A post-run sanity check failed: the numbers would not measure real tracing."""


def ensure(cond: bool, message: str) -> None:
    if not cond:
        raise CheckFailed(message)


# --------------------------------------------------------------------------- baseline

_BASELINE_ITEMS: tuple[tuple[str, str], ...] = (('sw8', '1-dHJhY2U=-c2VnbWVudA==-1-YmVuY2g=-aW5zdA==-L2E=-cGVlcg=='),)


def setup_baseline() -> tuple[Request, Checker, dict[str, Any]]:
    items = _BASELINE_ITEMS

    def request() -> dict[str, str]:
        headers: dict[str, str] = {}
        for key, val in items:
            headers[key] = val
        return headers

    def check(total: int, headers: dict[str, str]) -> dict[str, Any]:
        ensure('skywalking' not in sys.modules, 'baseline imported skywalking')
        return {'skywalking_imported': False, 'headers': sorted(headers)}

    return request, check, {'impl': 'baseline', 'package': None, 'version': None}


# --------------------------------------------------------------------------- tracing request


def make_request() -> Request:
    """The measured request, written once against the public API shared by upstream and ours."""
    from skywalking import Component, Layer
    from skywalking.trace.context import get_context
    from skywalking.trace.tags import TagHttpMethod

    def request() -> dict[str, str]:
        ctx = get_context()
        with ctx.new_entry_span(op='/api/users') as entry:
            entry.layer = Layer.Http
            entry.component = Component.Flask
            entry.tag(TagHttpMethod('GET'))
            with ctx.new_exit_span(op='/downstream', peer='127.0.0.1:9090', component=Component.Requests) as exit_span:
                exit_span.layer = Layer.Http
                headers: dict[str, str] = {}
                for item in exit_span.inject():
                    headers[item.key] = item.val
        return headers

    return request


def valid_sw_header(value: str | None) -> bool:
    """An sw6/sw8 value from a real span: 8 (sw8) or 9 (sw6) dash-separated, non-empty fields."""
    if not value:
        return False
    parts = value.split('-')
    return len(parts) in (8, 9) and all(parts)


# --------------------------------------------------------------------------- upstream


class CountingSink:
    """Stands in for upstream's segment queue + gRPC reporter thread.

    Upstream's ``SpanContext`` calls ``agent.is_segment_queue_full()`` when opening spans and
    ``agent.archive_segment(segment)`` when the last span closes. Both only exist after
    ``agent.start()`` has built the queues and reporter threads, which need a collector.
    """

    def __init__(self, maxlen: int = 1024) -> None:
        self.count = 0
        self.bad = 0  # segments that did not hold exactly two spans
        self.segments: deque[Any] = deque(maxlen=maxlen)

    def is_segment_queue_full(self) -> bool:
        return False

    def archive_segment(self, segment: Any) -> None:
        self.count += 1
        if len(segment.spans) != 2:
            self.bad += 1
        self.segments.append(segment)


def setup_upstream(skywalking: Any) -> tuple[Request, Checker, dict[str, Any]]:
    from skywalking import config
    from skywalking.agent import agent as sw_agent

    version = importlib.metadata.version('apache-skywalking')
    config.init(agent_name='bench', agent_profile_active=False, agent_meter_reporter_active=False,
                agent_log_reporter_active=False, sample_n_per_3_secs=0)
    config.finalize()  # what agent.start() does before bootstrapping; builds the ignore-path regex
    sink = CountingSink()
    # Instance attributes shadow the methods for the module-level singleton that
    # skywalking.trace.context imported as `agent`.
    sw_agent.is_segment_queue_full = sink.is_segment_queue_full
    sw_agent.archive_segment = sink.archive_segment

    def check(total: int, headers: dict[str, str]) -> dict[str, Any]:
        ensure(sink.count == total, f'sink received {sink.count} segments for {total} requests')
        ensure(sink.bad == 0, f'{sink.bad} segments did not hold exactly 2 spans')
        last = sink.segments[-1]
        ensure(len(last.spans) == 2, f'last segment has {len(last.spans)} spans')
        ensure(valid_sw_header(headers.get('sw8')), f'no real sw8 header: {headers!r}')
        return {'segments': sink.count, 'spans_per_segment': 2, 'headers': sorted(headers),
                'sw8': headers['sw8']}

    meta = {'impl': 'upstream', 'package': 'apache-skywalking', 'version': version,
            'reporter': 'CountingSink on skywalking.agent.agent (archive_segment, is_segment_queue_full)'}
    return make_request(), check, meta


# --------------------------------------------------------------------------- ours


def setup_ours(skywalking: Any) -> tuple[Request, Checker, dict[str, Any]]:
    from skywalking import agent, config
    from skywalking.reporter.memory import MemoryReporter

    config.init(agent_name='bench')
    reporter = MemoryReporter(maxlen=1024)
    agent.start(reporter=reporter)

    def check(total: int, headers: dict[str, str]) -> dict[str, Any]:
        ensure(reporter.count == total, f'reporter received {reporter.count} segments for {total} requests')
        ensure(len(reporter.segments) > 0, 'reporter kept no segments')
        last = reporter.segments[-1]
        ensure(len(last.spans) == 2, f'last segment has {len(last.spans)} spans')
        ensure(valid_sw_header(headers.get('sw6')), f'no real sw6 header: {headers!r}')
        return {'segments': reporter.count, 'spans_in_last_segment': 2, 'headers': sorted(headers),
                'sw6': headers['sw6']}

    meta = {'impl': 'ours', 'package': 'company-skywalking',
            'version': getattr(skywalking, '__version__', None) or importlib.metadata.version('company-skywalking'),
            'reporter': 'skywalking.reporter.memory.MemoryReporter(maxlen=1024)'}
    return make_request(), check, meta


def setup_agent() -> tuple[Request, Checker, dict[str, Any]]:
    import skywalking

    if getattr(skywalking, '__distribution__', None) == 'company-skywalking':
        return setup_ours(skywalking)
    return setup_upstream(skywalking)


# --------------------------------------------------------------------------- measurement


def measure(request: Request, requests: int, rounds: int, warmup: int) -> tuple[list[int], list[int], Any]:
    """The wall time and this process's CPU time of each round in ns, and the last request's result."""
    result = request()
    for _ in range(warmup):
        result = request()
    timings: list[int] = []
    cpu: list[int] = []
    clock, cpu_clock = time.perf_counter_ns, time.process_time_ns
    for _ in range(rounds):
        loop = range(requests)
        cpu_start = cpu_clock()
        start = clock()
        for _ in loop:
            result = request()
        timings.append(clock() - start)
        cpu.append(cpu_clock() - cpu_start)
    return timings, cpu, result


def per_request(timings: list[int], cpu: list[int], requests: int) -> dict[str, Any]:
    """The result fields of ``measure``'s rounds: µs per request (wall and CPU), median, best and each round."""
    wall = [ns / requests / 1000 for ns in timings]
    own = [ns / requests / 1000 for ns in cpu]
    return {'us_per_request': {'median': statistics.median(wall), 'best': min(wall), 'rounds': wall},
            'cpu_us_per_request': {'median': statistics.median(own), 'rounds': own}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--mode', choices=('baseline', 'agent'), required=True)
    parser.add_argument('--requests', type=int, default=20_000, help='requests per round')
    parser.add_argument('--rounds', type=int, default=7)
    parser.add_argument('--warmup', type=int, default=5_000, help='requests before timing starts')
    parser.add_argument('--no-gc', action='store_true', help='disable the cyclic GC (instruction counts)')
    args = parser.parse_args(argv)
    if args.no_gc:
        gc.disable()

    result: dict[str, Any] = {
        'benchmark': BENCHMARK, 'mode': args.mode, 'ok': False,
        'python': platform.python_version(), 'executable': sys.executable,
        'requests': args.requests, 'rounds': args.rounds, 'warmup': args.warmup, 'gc_enabled': gc.isenabled(),
    }
    try:
        request, check, meta = setup_baseline() if args.mode == 'baseline' else setup_agent()
        result.update(meta)
        timings, cpu, headers = measure(request, args.requests, args.rounds, args.warmup)
        result.update(per_request(timings, cpu, args.requests))
        result['checks'] = check(1 + args.warmup + args.requests * args.rounds, headers)
        result['ok'] = True
    except Exception as exc:  # reported as data: run.py shows the failed leg and carries on
        result['error'] = f'{type(exc).__name__}: {exc}'
        result['traceback'] = traceback.format_exc()
    print(json.dumps(result), flush=True)
    return 0 if result['ok'] else 1


if __name__ == '__main__':
    sys.exit(main())
