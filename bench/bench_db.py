"""DB benchmark: one request = an entry span around a PyMySQL ``SELECT 1`` round trip to a local MariaDB.

bench/run.py starts the server (tools/mariadb.py) and runs this script in three configurations, passing the
server's address and account on the command line:

* ``--mode baseline``: the round trip alone (cursor, ``execute('SELECT 1')``, ``fetchone()``, cursor closed);
  ``skywalking`` is never imported.
* ``--mode agent`` under upstream ``apache-skywalking==1.2.0``: upstream's plugin loading (``plugins.install()``,
  what its ``agent.start()`` runs; its sw_pymysql replaces ``pymysql.cursors.Cursor.execute``), segments to the
  counting sink of bench_core.py.
* ``--mode agent`` under ``company-skywalking``: ``agent.start()`` (our sw_pymysql wraps ``Cursor.execute``),
  segments to ``MemoryReporter``.

In agent mode each request is one segment: the entry span and the plugin's exit span. After timing the script
checks that every request made one, and the last one's exit span (operation, peer, component, statement). It
prints exactly one JSON line on stdout. Needs PyMySQL; otherwise stdlib only.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json
import os
import platform
import sys
import traceback
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench_core (run.py runs scripts with -I)

from bench_core import CountingSink, ensure, measure, per_request

BENCHMARK = 'db'
QUERY = 'SELECT 1'
ENTRY_OP = '/api/db'
Request = Callable[[], Any]
Checker = Callable[[int, Any], dict[str, Any]]


def connect(args: argparse.Namespace) -> Any:
    import pymysql

    return pymysql.connect(host=args.host, port=args.port, user=args.user, password=args.password,
                           database=args.database, autocommit=True)


def round_trip(conn: Any) -> Request:
    """The measured database call, the same in every mode."""

    def call() -> Any:
        with conn.cursor() as cur:
            cur.execute(QUERY)
            return cur.fetchone()

    return call


def traced(call: Request) -> Request:
    """``call`` inside an entry span, written against the public API shared by upstream and ours."""
    from skywalking import Component, Layer
    from skywalking.trace.context import get_context
    from skywalking.trace.tags import TagHttpMethod

    def request() -> Any:
        with get_context().new_entry_span(op=ENTRY_OP) as entry:
            entry.layer = Layer.Http
            entry.component = Component.Flask
            entry.tag(TagHttpMethod('GET'))
            return call()

    return request


def tag_values(span: Any) -> dict[str, str]:
    tags = span.iter_tags() if hasattr(span, 'iter_tags') else span.tags  # upstream keeps a dict of tags
    return {tag.key: tag.val for tag in tags}


def check_segment(spans: list[Any], op: str, args: argparse.Namespace, row: Any) -> dict[str, Any]:
    """The segment of the last request: the plugin's exit span, then the entry span."""
    ensure(row == (1,), f'{QUERY} returned {row!r}')
    ensure(len(spans) == 2, f'last segment has {len(spans)} spans')
    db, entry = spans
    peer = f'{args.host}:{args.port}'
    ensure(entry.op == ENTRY_OP, f'entry span is {entry.op!r}')
    ensure(db.op == op and db.peer == peer, f'exit span is {db.op!r} to {db.peer!r}, expected {op!r} to {peer!r}')
    ensure(int(getattr(db.component, 'value', db.component)) == 7003, f'exit span component {db.component!r}')
    tags = tag_values(db)
    ensure(tags.get('db.statement') == QUERY and tags.get('db.instance') == args.database, f'exit span tags {tags}')
    return {'exit_span': db.op, 'peer': db.peer, 'tags': tags}


# --------------------------------------------------------------------------- the three setups


def setup_baseline(args: argparse.Namespace) -> tuple[Request, Checker, dict[str, Any]]:
    def check(total: int, row: Any) -> dict[str, Any]:
        ensure(row == (1,), f'{QUERY} returned {row!r}')
        ensure('skywalking' not in sys.modules, 'baseline imported skywalking')
        return {'skywalking_imported': False}

    return round_trip(connect(args)), check, {'impl': 'baseline', 'package': None, 'version': None}


def setup_upstream(args: argparse.Namespace) -> tuple[Request, Checker, dict[str, Any]]:
    from skywalking import config, plugins
    from skywalking.agent import agent as sw_agent

    config.init(agent_name='bench', agent_profile_active=False, agent_meter_reporter_active=False,
                agent_log_reporter_active=False, sample_n_per_3_secs=0)
    config.finalize()
    sink = CountingSink()  # as in bench_core: stands in for the queue and the gRPC reporter threads
    sw_agent.is_segment_queue_full = sink.is_segment_queue_full
    sw_agent.archive_segment = sink.archive_segment
    plugins.install()  # the plugin step of agent.start(); it logs a warning for each library that is absent
    import pymysql.cursors

    ensure(pymysql.cursors.Cursor.execute.__module__ != 'pymysql.cursors', 'upstream sw_pymysql did not install')

    def check(total: int, row: Any) -> dict[str, Any]:
        ensure(sink.count == total, f'sink received {sink.count} segments for {total} requests')
        ensure(sink.bad == 0, f'{sink.bad} segments did not hold exactly 2 spans')
        return {'segments': sink.count, **check_segment(list(sink.segments[-1].spans), 'Mysql/PyMsql/execute',
                                                        args, row)}

    meta = {'impl': 'upstream', 'package': 'apache-skywalking', 'version': importlib.metadata.version(
        'apache-skywalking'), 'reporter': 'CountingSink on skywalking.agent.agent (as bench_core.py)'}
    return traced(round_trip(connect(args))), check, meta


def setup_ours(skywalking: Any, args: argparse.Namespace) -> tuple[Request, Checker, dict[str, Any]]:
    from skywalking import agent, config
    from skywalking.reporter.memory import MemoryReporter

    config.init(agent_name='bench')
    reporter = MemoryReporter(maxlen=1024)
    agent.start(reporter=reporter)

    def check(total: int, row: Any) -> dict[str, Any]:
        ensure(reporter.count == total, f'reporter received {reporter.count} segments for {total} requests')
        ensure(len(reporter.segments) > 0, 'reporter kept no segments')
        return {'segments': reporter.count, **check_segment(list(reporter.segments[-1].spans),
                                                            'Mysql/PyMySQL/execute', args, row)}

    meta = {'impl': 'ours', 'package': 'company-skywalking',
            'version': getattr(skywalking, '__version__', None) or importlib.metadata.version('company-skywalking'),
            'reporter': 'skywalking.reporter.memory.MemoryReporter(maxlen=1024)'}
    return traced(round_trip(connect(args))), check, meta


def setup(args: argparse.Namespace) -> tuple[Request, Checker, dict[str, Any]]:
    if args.mode == 'baseline':
        return setup_baseline(args)
    import skywalking

    if getattr(skywalking, '__distribution__', None) == 'company-skywalking':
        return setup_ours(skywalking, args)
    return setup_upstream(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--mode', choices=('baseline', 'agent'), required=True)
    parser.add_argument('--requests', type=int, default=20_000, help='requests per round')
    parser.add_argument('--rounds', type=int, default=7)
    parser.add_argument('--warmup', type=int, default=5_000, help='requests before timing starts')
    parser.add_argument('--no-gc', action='store_true', help='disable the cyclic GC (instruction counts)')
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, required=True)
    parser.add_argument('--user', required=True)
    parser.add_argument('--password', required=True)
    parser.add_argument('--database', required=True)
    parser.add_argument('--cpu', type=int, default=-1, help='run on this CPU only (run.py pins the server there too)')
    args = parser.parse_args(argv)
    if args.no_gc:
        gc.disable()
    if args.cpu >= 0:
        os.sched_setaffinity(0, {args.cpu})

    result: dict[str, Any] = {
        'benchmark': BENCHMARK, 'mode': args.mode, 'ok': False,
        'python': platform.python_version(), 'executable': sys.executable,
        'requests': args.requests, 'rounds': args.rounds, 'warmup': args.warmup, 'gc_enabled': gc.isenabled(),
        'cpus': sorted(os.sched_getaffinity(0)),
    }
    try:
        request, check, meta = setup(args)
        result.update(meta)
        result['pymysql'] = importlib.metadata.version('PyMySQL')
        timings, cpu, last = measure(request, args.requests, args.rounds, args.warmup)
        result.update(per_request(timings, cpu, args.requests))  # CPU: the client's own, the server's excluded
        result['checks'] = check(1 + args.warmup + args.requests * args.rounds, last)
        result['ok'] = True
    except Exception as exc:  # reported as data: run.py shows the failed leg and carries on
        result['error'] = f'{type(exc).__name__}: {exc}'
        result['traceback'] = traceback.format_exc()
    print(json.dumps(result), flush=True)
    return 0 if result['ok'] else 1


if __name__ == '__main__':
    sys.exit(main())
