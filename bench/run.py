"""Run every benchmark under baseline / upstream / ours and print a comparison table.

Usage: .venv/bin/python bench/run.py [--requests N] [--rounds R] [--warmup W] [--only NAME]
(NAME: core, logs, db, reporter, http, ray, faults, scaling; see bench/README.md)

* baseline: .venv, ``--mode baseline`` (skywalking is never imported)
* upstream: .venvs/bench-upstream with apache-skywalking==1.2.0 (created on first use)
* ours:     .venv with company-skywalking installed editable, ``--mode agent``

Each benchmark script prints one JSON line; results go to bench/results/<name>.json.
Exit status is non-zero if a baseline leg fails, or if an ours leg fails while our
package is installed. A missing package or a failing upstream leg is reported, not fatal.
To add a benchmark, write bench/bench_<name>.py with the same CLI and add it to BENCHMARKS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from skywalking.collector.process import CollectorProcess

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / 'results'
OURS_PYTHON = ROOT / '.venv' / 'bin' / 'python'
UPSTREAM_VENV = ROOT / '.venvs' / 'bench-upstream'
UPSTREAM_PYTHON = UPSTREAM_VENV / 'bin' / 'python'
UPSTREAM_PACKAGE = 'apache-skywalking'
UPSTREAM_VERSION = '1.2.0'
RUN_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Benchmark:
    name: str
    script: str  # file in bench/, taking --mode baseline|agent --requests --rounds --warmup
    description: str


@dataclass(frozen=True)
class Config:
    name: str  # also the `impl` the script must report, so a wrong venv cannot pass silently
    python: Path
    mode: str


BENCHMARKS: list[Benchmark] = [
    Benchmark('core', 'bench_core.py', 'entry span + exit span + header injection, one segment per request'),
    Benchmark('logs', 'bench_logs.py', 'one logging record inside an open entry span, handed to the log reporter'),
]

CONFIGS: list[Config] = [
    Config('baseline', OURS_PYTHON, 'baseline'),
    Config('upstream', UPSTREAM_PYTHON, 'agent'),
    Config('ours', OURS_PYTHON, 'agent'),
]


def log(message: str) -> None:
    print(f'[bench] {message}', file=sys.stderr, flush=True)


def run(cmd: list[str | Path], timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, cwd=BENCH_DIR)


def installed_version(python: Path, dist: str) -> str | None:
    if not python.exists():
        return None
    proc = run([python, '-I', '-c', f'import importlib.metadata as m; print(m.version({dist!r}))'], timeout=60)
    return proc.stdout.strip() if proc.returncode == 0 else None


def ensure_upstream_venv() -> str | None:
    """Create or reuse the upstream venv; return an error message on failure."""
    if installed_version(UPSTREAM_PYTHON, UPSTREAM_PACKAGE) == UPSTREAM_VERSION:
        return None
    python311 = shutil.which('python3.11')
    if python311 is None:
        return 'python3.11 not found on PATH'
    log(f'creating {UPSTREAM_VENV} with {UPSTREAM_PACKAGE}=={UPSTREAM_VERSION}')
    steps: list[list[str | Path]] = [
        [python311, '-m', 'venv', '--clear', UPSTREAM_VENV],
        [UPSTREAM_PYTHON, '-m', 'pip', 'install', '-q', f'{UPSTREAM_PACKAGE}=={UPSTREAM_VERSION}'],
    ]
    for cmd in steps:
        proc = run(cmd)
        if proc.returncode != 0:
            return f'{" ".join(map(str, cmd))} failed: {proc.stderr.strip()[-2000:]}'
    found = installed_version(UPSTREAM_PYTHON, UPSTREAM_PACKAGE)
    return None if found == UPSTREAM_VERSION else f'expected {UPSTREAM_PACKAGE} {UPSTREAM_VERSION}, found {found}'


def ours_installed() -> bool:
    """True once .venv imports our package (as opposed to nothing, or upstream)."""
    code = "import skywalking; print(getattr(skywalking, '__distribution__', None))"
    proc = run([OURS_PYTHON, '-I', '-c', code], timeout=60)
    return proc.returncode == 0 and proc.stdout.strip() == 'company-skywalking'


def run_leg(bench: Benchmark, config: Config, args: argparse.Namespace, *extra: str) -> dict[str, Any]:
    cmd: list[str | Path] = [config.python, '-I', BENCH_DIR / bench.script, '--mode', config.mode,
                             '--requests', str(args.requests), '--rounds', str(args.rounds),
                             '--warmup', str(args.warmup), *extra]
    log(f'{bench.name}/{config.name}: {" ".join(map(str, cmd))}')
    try:
        proc = run(cmd)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {'ok': False, 'error': f'{type(exc).__name__}: {exc}'}
    lines = [line for line in proc.stdout.splitlines() if line.startswith('{')]
    if not lines:
        return {'ok': False, 'error': f'exit {proc.returncode}, no JSON result; stderr: {proc.stderr.strip()[-2000:]}'}
    result: dict[str, Any] = json.loads(lines[-1])
    if result.get('ok') and result.get('impl') != config.name:
        result.update(ok=False, error=f'expected impl {config.name!r}, script ran {result.get("impl")!r}')
    if result.get('ok') and proc.returncode != 0:
        result.update(ok=False, error=f'exit {proc.returncode}: {proc.stderr.strip()[-2000:]}')
    return result


def instructions_per_request(bench: Benchmark, config: Config) -> float | None:
    """Instructions per request under callgrind (deterministic, unlike wall time on a shared VM):
    the difference between a 3000- and a 1000-request run, GC off, divided by 2000."""
    if not shutil.which('valgrind'):
        return None
    counts = []
    for n in (1000, 3000):
        proc = run(['valgrind', '--tool=callgrind', '--callgrind-out-file=/dev/null', config.python, '-I',
                    BENCH_DIR / bench.script, '--mode', config.mode, '--requests', str(n), '--rounds', '1',
                    '--warmup', '100', '--no-gc'])
        match = re.search(r'Collected : (\d+)', proc.stderr)
        if proc.returncode != 0 or not match:
            return None
        counts.append(int(match.group(1)))
    return (counts[1] - counts[0]) / 2000


def fmt(value: float | None, spec: str) -> str:
    return '—' if value is None else format(value, spec)


def median_us(result: dict[str, Any] | None) -> float | None:
    if not result or not result.get('ok'):
        return None
    value: float = result['us_per_request']['median']
    return value


def table(bench: Benchmark, results: dict[str, dict[str, Any]], ratio_spec: str = '.1f') -> str:
    base = median_us(results.get('baseline'))
    rows = [f'### {bench.name}: {bench.description}', '',
            '| config | python | package | median µs/req | best µs/req | × baseline (median) | status |',
            '|---|---|---|---:|---:|---:|---|']
    for name, res in results.items():
        med = median_us(res)
        best = res['us_per_request']['best'] if res.get('ok') else None
        pkg = f'{res["package"]} {res["version"]}' if res.get('package') else '—'
        ratio = med / base if med is not None and base else None
        status = 'ok' if res.get('ok') else 'n/a' if res.get('skipped') else 'FAILED'
        if not res.get('ok'):
            status += ': ' + str(res.get('error', '?')).replace('|', '/').splitlines()[0]
        cells = [name, res.get('python', '—'), pkg, fmt(med, '.2f'), fmt(best, '.2f'), fmt(ratio, ratio_spec), status]
        rows.append('| ' + ' | '.join(cells) + ' |')
    up, ours = median_us(results.get('upstream')), median_us(results.get('ours'))
    rows.append('')
    if up is not None and ours is not None:
        rows.append(f'upstream / ours speed-up (median): **{up / ours:.2f}×**'
                    + (f'; tracing overhead upstream {up - base:.2f} µs, ours {ours - base:.2f} µs' if base else ''))
        if base and bench.name == 'core':
            rows.append(f'\n- target, traced request with reporting off ≤ 6 µs: {ours - base:.2f} µs, '
                        f"{'met' if ours - base <= 6 else 'NOT met'}")
        if base and bench.name == 'logs':
            checks = results['ours'].get('checks', {})
            rows.append(f'\n- target, log record hand-off ≤ 5 µs: {ours - base:.2f} µs, '
                        f"{'met' if ours - base <= 5 else 'NOT met'}; then on the sender thread "
                        f"{checks.get('sender_us_per_record', '?')} µs per record (layout, tags, LogData)")
            rows.append(f"- meter thread CPU per period (9 PVM gauges, 100 counters, a histogram): "
                        f"{checks.get('meter_cpu_ms_per_period', '?')} ms")
    else:
        rows.append('upstream / ours speed-up: — (a leg did not complete)')
    return '\n'.join(rows)


DB = Benchmark('db', 'bench_db.py', 'an entry span around a PyMySQL `SELECT 1` round trip to a local MariaDB '
                                    '(plus the plugin\'s exit span: one segment, two spans per request)')
DB_ACCOUNT = ('bench', 'bench-secret', 'bench')  # user, password, database


def merge_sessions(sessions: list[dict[str, Any]]) -> dict[str, Any]:
    """One leg's alternating sessions as one result: the first failure, else the median and best over every
    timed round of every session (each session's median kept in ``session_medians``)."""
    for res in sessions:
        if not res.get('ok'):
            return res
    rounds = [r for res in sessions for r in res['us_per_request']['rounds']]
    merged = dict(sessions[-1])
    merged['us_per_request'] = {'median': statistics.median(rounds), 'best': min(rounds), 'rounds': rounds}
    merged['session_medians'] = [res['us_per_request']['median'] for res in sessions]
    if all('cpu_us_per_request' in res for res in sessions):
        cpu = [r for res in sessions for r in res['cpu_us_per_request']['rounds']]
        merged['cpu_us_per_request'] = {'median': statistics.median(cpu), 'rounds': cpu}
    return merged


def db_benchmarks(args: argparse.Namespace, upstream_error: str | None, have_ours: bool) -> bool:
    """PyMySQL against a local MariaDB (tools/mariadb.py, started once): no agent, apache-skywalking 1.2.0 and
    ours, in ``--db-sessions`` alternating sessions (fresh processes) of ``--rounds`` × ``--requests``; the table
    shows the median over every round. The upstream venv gets .venv's PyMySQL version."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tools.mariadb import MariaDB, Unavailable, account_sql  # ours, imported only by this leg

    user, password, database = DB_ACCOUNT
    error = None if installed_version(OURS_PYTHON, 'PyMySQL') else \
        'PyMySQL is not installed in .venv (pip install -r requirements/bench.txt)'
    server = None
    if error is None:
        try:
            server = MariaDB.start(account_sql(user, password, database))
        except (Unavailable, RuntimeError) as exc:
            error = f'no MariaDB server: {str(exc).strip()[-2000:]}'
    skip: dict[str, dict[str, Any]] = {}
    if upstream_error:
        skip['upstream'] = {'ok': False, 'error': upstream_error}
    elif error is None:
        pin_error = ensure_same_versions(UPSTREAM_PYTHON, ('PyMySQL',))
        if pin_error:
            skip['upstream'] = {'ok': False, 'error': pin_error}
    if not have_ours:
        skip['ours'] = {'ok': False, 'skipped': True, 'error': 'company-skywalking not installed in .venv (make venv)'}
    sessions: dict[str, list[dict[str, Any]]] = {config.name: [] for config in CONFIGS}
    try:
        if server is not None:
            where: tuple[str, ...] = ('--port', str(server.port), '--user', user, '--password', password,
                                      '--database', database)
            if args.db_cpu >= 0:  # client and server on one CPU: no cross-CPU wake-ups in the round trip
                server.pin({args.db_cpu})
                where += ('--cpu', str(args.db_cpu))
            for _ in range(max(1, args.db_sessions)):
                for config in CONFIGS:
                    if config.name not in skip:
                        sessions[config.name].append(run_leg(DB, config, args, *where))
    finally:
        if server is not None:
            server.stop()
    results: dict[str, dict[str, Any]] = {}
    for config in CONFIGS:
        res = skip.get(config.name) or ({'ok': False, 'error': error} if error else merge_sessions(
            sessions[config.name]))
        results[config.name] = res
        if not res.get('ok'):
            log(f'db/{config.name} {"n/a" if res.get("skipped") else "FAILED"}: {res.get("error")}')
            if res.get('traceback'):
                log(res['traceback'])
    print(table(DB, results, ratio_spec='.3f'))
    print('\n' + (f'client and MariaDB pinned to CPU {args.db_cpu}; ' if args.db_cpu >= 0 else 'not pinned; ')
          + 'median µs/req of each session (the spread shows the noise): ' + '; '.join(
        f"{name} {', '.join(f'{m:.1f}' for m in res['session_medians'])}" for name, res in results.items()
        if res.get('session_medians')))
    cpu = {name: res['cpu_us_per_request']['median'] for name, res in results.items() if res.get('ok')
           and 'cpu_us_per_request' in res}
    if cpu:
        print("the benchmark process's own CPU µs/req (median; the server's excluded): "
              + ', '.join(f'{name} {value:.2f}' for name, value in cpu.items()))
    base, up, ours = (median_us(results.get(name)) for name in ('baseline', 'upstream', 'ours'))
    if base and up is not None and ours is not None:
        added, up_added = ours - base, up - base
        half = added <= 0 or (up_added > 0 and added <= up_added / 2)
        met = added / base * 100 <= 5 and half
        print(f'\n- target, DB round trip: ours adds ≤ 5 % and ≤ half of what upstream adds: ours {added:+.2f} µs '
              f'({added / base * 100:+.1f} %), upstream {up_added:+.2f} µs ({up_added / base * 100:+.1f} %), '
              f"ours / upstream added {fmt(added / up_added if up_added > 0 else None, '.2f')}, "
              f"{'met' if met else 'NOT met'}")
    else:
        print('\n- target, DB round trip: ours adds ≤ 5 % and ≤ half of what upstream adds: — (a leg did not '
              'complete), NOT met')
    out = RESULTS_DIR / 'db.json'
    payload = {'benchmark': DB.name, 'description': DB.description, 'requests': args.requests,
               'rounds': args.rounds, 'warmup': args.warmup, 'sessions': args.db_sessions, 'cpu': args.db_cpu,
               'results': results}
    out.write_text(json.dumps(payload, indent=2) + '\n', encoding='utf-8')
    print(f'\nwrote {out.relative_to(ROOT)}\n')
    return bool(results['baseline'].get('ok')) and (bool(results['ours'].get('ok')) or not have_ours)


def start_collector(*extra: str, nice: int = 0) -> CollectorProcess:
    """The bundled collector (from .venv, quiet), on ephemeral 127.0.0.1 ports (skywalking.collector.process)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from skywalking.collector.process import CollectorProcess  # ours, imported only by the legs that need it

    return CollectorProcess('--no-print', '--log-level', 'WARNING', *extra, python=OURS_PYTHON, cwd=ROOT, nice=nice)


def reporter_leg(config: Config, protocol: str, segments: int) -> dict[str, Any]:
    collector = start_collector('--sink')  # counts only, so the agents are measured, not the collector
    try:
        proc = run([config.python, '-I', BENCH_DIR / 'bench_reporter.py', '--mode', 'throughput', '--collector',
                    collector.grpc, '--collector-http', collector.http, '--protocol', protocol,
                    '--segments', str(segments)], timeout=600)
    finally:
        collector.stop()
    lines = [line for line in proc.stdout.splitlines() if line.startswith('{')]
    return json.loads(lines[-1]) if lines else {'ok': False, 'error': proc.stderr[-2000:]}


def start_soak(minutes: float, rate: int) -> tuple[subprocess.Popen[str], CollectorProcess]:
    """The soak leg (ours, v6): registers, then run.py kills the collector and lets the load begin."""
    collector = start_collector()
    proc = subprocess.Popen([str(OURS_PYTHON), '-I', str(BENCH_DIR / 'bench_reporter.py'), '--mode', 'soak',
                             '--collector', collector.grpc, '--minutes', str(minutes), '--rate', str(rate)],
                            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    line = proc.stderr.readline() if proc.stderr else ''
    collector.stop(kill=True)  # the backend goes away for the whole soak
    if proc.stdin:
        proc.stdin.write('go\n')
        proc.stdin.flush()
    if 'registered' not in line:
        log(f'soak: agent did not register: {line!r}')
    return proc, collector


def finish_soak(proc: subprocess.Popen[str], minutes: float) -> dict[str, Any]:
    try:
        out, _ = proc.communicate(timeout=minutes * 60 + 300)
    except subprocess.TimeoutExpired:
        proc.kill()
        return {'ok': False, 'error': 'soak timed out'}
    lines = [line for line in out.splitlines() if line.startswith('{')]
    return json.loads(lines[-1]) if lines else {'ok': False, 'error': 'no result'}


def reporter_benchmarks(args: argparse.Namespace, upstream_ok: bool, soak: tuple[Any, Any] | None) -> bool:
    results = {'ours (v6)': reporter_leg(CONFIGS[2], 'v6', args.segments),
               'ours (v8)': reporter_leg(CONFIGS[2], 'v8', args.segments)}
    if upstream_ok:
        results['upstream (v8)'] = reporter_leg(CONFIGS[1], 'v8', args.segments)
    print('### reporter: segments encoded, sent over gRPC and received by the bundled collector (--sink)\n')
    print('Agent CPU per delivered segment (entry + exit span, tag, header injected), split into the application '
          "thread's (spans made, handed over) and the reporter threads' (encoded, sent, registration).\n")
    print('| config | segments | seconds | segments/s | agent CPU µs/segment | app thread µs | reporting µs | status |')
    print('|---|---:|---:|---:|---:|---:|---:|---|')
    for name, res in results.items():
        print(f"| {name} | {res.get('received', '—')} | {fmt(res.get('elapsed_s'), '.2f')} | "
              f"{fmt(res.get('segments_per_s'), ',.0f')} | {fmt(res.get('cpu_us_per_segment'), ',.1f')} | "
              f"{fmt(res.get('traced_us_per_segment'), ',.1f')} | {fmt(res.get('reporting_us_per_segment'), ',.1f')} | "
              f"{'ok' if res.get('ok') else res.get('error', 'FAILED')} |")
    ours, up = results['ours (v6)'], results.get('upstream (v8)', {})
    if ours.get('segments_per_s') and up.get('segments_per_s'):
        print(f"\nours / upstream: **{ours['segments_per_s'] / up['segments_per_s']:.2f}×** throughput, "
              f"**{up['cpu_us_per_segment'] / ours['cpu_us_per_segment']:.2f}×** less agent CPU per segment")
    print()
    for name in ('ours (v6)', 'ours (v8)'):
        res = results[name]
        cost = res.get('reporting_us_per_segment')
        total = res.get('cpu_us_per_segment')
        print(f"- target, {name}: reporting ≤ 10 µs per segment: {fmt(cost, '.1f')} µs, "
              f"{'met' if cost is not None and cost <= 10 else 'NOT met'}; traced request with reporting ≤ 12 µs and "
              f"≥ 5× upstream: {fmt(total, '.1f')} µs"
              + (f", {up['cpu_us_per_segment'] / total:.1f}×" if total and up.get('cpu_us_per_segment') else '')
              + (', met' if total is not None and total <= 12 and up.get('cpu_us_per_segment', 0) >= 5 * total
                 else ', NOT met'))
    payload: dict[str, Any] = {'throughput': results}
    if soak is not None:
        res = finish_soak(soak[0], args.soak_minutes)
        payload['soak'] = res
        samples = res.get('rss_kib') or []
        print(f"\n### soak: {args.soak_minutes} min at {args.soak_rate} segments/s with the collector down\n")
        if samples:
            print(f"RSS first {samples[0] / 1024:.1f} MiB, max {max(samples) / 1024:.1f} MiB, last "
                  f"{samples[-1] / 1024:.1f} MiB; growth after the queue filled "
                  f"{res.get('rss_growth_kib_after_fill', 0) / 1024:.1f} MiB; reporter {res.get('reporter')}")
        else:
            print(f"soak failed: {res.get('error')}")
    (RESULTS_DIR / 'reporter.json').write_text(json.dumps(payload, indent=2) + '\n', encoding='utf-8')
    print(f"\nwrote {(RESULTS_DIR / 'reporter.json').relative_to(ROOT)}\n")
    return bool(results['ours (v6)'].get('ok'))


RAY_MODES = {'off': 'no agent', 'trace-only': 'traced, nothing sent', 'on': 'traced and reported (workers spool)',
             'on-no-spool': 'traced and reported, plugin_ray_spool off',
             'otel': "Ray's own OpenTelemetry tracing: Core + Serve at ratio 1.0, batch OTLP exporter"}
ADDED = ('trace-only', 'on', 'on-no-spool', 'otel')
RAY_ABSOLUTE_TARGET_PCT = {'serve_handle': 5.0, 'serve_http': 5.0, 'task': 10.0, 'actor': 10.0}


class OtlpSink:
    """otel_peer.py --sink: counts the peer's OTLP exports (niced, like the collector)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([str(OURS_PYTHON), '-I', str(BENCH_DIR / 'otel_peer.py'), '--sink'],
                                     cwd=BENCH_DIR, stdout=subprocess.PIPE, text=True, preexec_fn=lambda: os.nice(19))
        line = self.proc.stdout.readline() if self.proc.stdout else ''
        if not line.startswith('otlp ready'):
            self.proc.kill()
            raise RuntimeError(f'OTLP sink did not start: {line!r}')
        self.address = f"127.0.0.1:{line.split('port=')[1].strip()}"

    def stop(self) -> dict[str, Any]:
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return {}
        lines = [line for line in out.splitlines() if line.startswith('{')]
        return json.loads(lines[-1]) if lines else {}


def ray_benchmarks(calls: int, rounds: int) -> bool:
    """Serve handle, HTTP through the proxy, task and actor round trips: without the agent, traced without
    reporting, traced and reported (v6, to the bundled collector, niced: it stands in for a remote OAP), and
    the peer, Ray's own OpenTelemetry tracing exporting to a niced OTLP sink.

    Ray on 2 cores varies by ±20 % from one session to the next, more than the effect measured, so the
    sessions alternate (off, trace-only, on, ..., off, ...) and each number is the median over ``rounds``
    sessions."""
    sessions: dict[str, list[dict[str, Any]]] = {mode: [] for mode in RAY_MODES}
    collector = start_collector('--sink', nice=19)
    sink = OtlpSink()
    exported: dict[str, Any] = {}
    retried: list[str] = []
    try:
        for _ in range(rounds):
            for mode in RAY_MODES:
                for attempt in range(2):  # Ray itself sometimes fails to start on 2 cores (GCS start-up timeout)
                    proc = run([OURS_PYTHON, '-I', BENCH_DIR / 'bench_ray.py', '--plugin', mode, '--collector',
                                collector.grpc, '--otlp', sink.address, '--port', str(_free_port()),
                                '--calls', str(calls)], timeout=900)
                    lines = [line for line in proc.stdout.splitlines() if line.startswith('{')]
                    result = json.loads(lines[-1]) if lines else {'ok': False, 'plugin': mode,
                                                                  'error': proc.stderr[-2000:]}
                    if result.get('ok') or attempt:
                        break
                    log(f"ray/{mode}: session failed ({str(result.get('error'))[:200]}); running it again")
                    retried.append(f"{mode}: {str(result.get('error'))[:200]}")
                sessions[mode].append(result)
        with urllib.request.urlopen(f'http://{collector.http}/api/stats', timeout=5) as resp:
            received = json.load(resp)
    finally:
        collector.stop()
        exported = sink.stop()
    print(f'### ray: median of {calls} calls per session, then median over {rounds} alternating sessions per mode '
          f'({", ".join(f"{m} = {d}" for m, d in RAY_MODES.items())})\n')
    modes, added_modes = ' | '.join(RAY_MODES), ' | '.join(ADDED)
    print(f'| call | latency ms: {modes} | added: {added_modes} | CPU ms/call, all Ray processes: {modes} '
          f'| added: {added_modes} |')
    print('|---|' + '---:|' * (2 * (len(RAY_MODES) + len(ADDED))))
    summary: dict[str, Any] = {}
    targets: list[str] = []
    for name in ('serve_handle', 'serve_http', 'task', 'actor'):
        row = [name]
        summary[name] = {}
        for metric in ('median_ms', 'cpu_ms_per_call'):
            per = {m: [r[metric][name] for r in runs if r.get('ok')] for m, runs in sessions.items()}
            med = {m: statistics.median(v) if v else None for m, v in per.items()}
            base = med['off']
            added = {m: (med[m] - base) / base * 100 if base and med[m] else None for m in ADDED}
            summary[name][metric] = {'median': med, 'added_pct': added, 'sessions': per}
            row += [fmt(med[m], '.3f') for m in RAY_MODES] + [f"{fmt(added[m], '+.1f')} %" for m in added]
            ours, peer = added['on'], added['otel']
            what = 'latency' if metric == 'median_ms' else 'CPU'
            ratio = ours / peer if ours is not None and peer and peer > 0 else None
            half = ours is not None and peer is not None and (ours <= 0 or (peer > 0 and ours <= peer / 2))
            targets.append(f"- target, {name} {what}: ours adds at most half of Ray OTel's: {fmt(ours, '+.1f')} % vs "
                           f"{fmt(peer, '+.1f')} % (ratio {fmt(ratio, '.2f')}), {'met' if half else 'NOT met'}")
            if metric == 'median_ms':
                limit = RAY_ABSOLUTE_TARGET_PCT[name]
                ok = ours is not None and ours <= limit
                targets.append(f"- target, {name} latency: ours ≤ +{limit:.0f} %: {fmt(ours, '+.1f')} %, "
                               f"{'met' if ok else 'NOT met'}")
        print('| ' + ' | '.join(row) + ' |')
    print(f"\ncollector received {received.get('segmentsReceived', 0)} segments in total; the OTLP sink "
          f"{exported.get('exports', '?')} exports, {exported.get('bytes', '?')} bytes\n")
    restarts = [f"{mode}/{name} {[r.get('processes_started', {}).get(name, 0) for r in runs if r.get('ok')]}"
                 for mode, runs in sessions.items() for name in summary
                 if any(r.get('processes_started', {}).get(name) for r in runs if r.get('ok'))]
    if restarts:  # a worker start-up inside a CPU window inflates that session's CPU per call
        print('processes started during a CPU measurement (per session): ' + '; '.join(restarts) + '\n')
    print('\n'.join(targets))
    failed = [r for runs in sessions.values() for r in runs if not r.get('ok')]
    for res in failed:
        print(f"\n{res.get('plugin', '?')} session FAILED: {res.get('error')}")
    for line in retried:
        print(f"\nsession run again after a failure: {line}")
    start = ray_start_benchmark(rounds)
    (RESULTS_DIR / 'ray.json').write_text(json.dumps({'summary': summary, 'sessions': sessions,
                                                      'collector': received, 'otlp_sink': exported,
                                                      'first_task': start}, indent=2) + '\n', encoding='utf-8')
    print(f"\nwrote {(RESULTS_DIR / 'ray.json').relative_to(ROOT)}\n")
    return not failed and bool(start)


def ray_start_benchmark(rounds: int) -> dict[str, Any]:
    """A fresh Ray session's first task, without the agent, without it but with a runtime_env (one variable:
    what the agent adds at ray.init() is a runtime_env too), and with the agent while the OAP is down (nothing
    listens on the collector address): a worker must not wait for the OAP. Alternating sessions, medians."""
    modes = {'off': 'off', 'runtime_env only': 'runtime-env', 'on, OAP down': 'on'}
    runs: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(max(3, rounds)):
        for mode in runs:
            proc = run([OURS_PYTHON, '-I', BENCH_DIR / 'bench_ray_start.py', '--plugin', modes[mode],
                        '--collector', f'127.0.0.1:{_free_port()}'], timeout=300)
            lines = [line for line in proc.stdout.splitlines() if line.startswith('{')]
            if lines and json.loads(lines[-1]).get('ok'):
                runs[mode].append(json.loads(lines[-1])['first_task_ms'])
    med = {m: statistics.median(v) if v else None for m, v in runs.items()}
    print(f'### ray: first task of a fresh session, ms (median of {max(3, rounds)} alternating sessions)\n')
    print('| no agent | no agent, a runtime_env | agent, OAP down | agent / no agent | agent / runtime_env |\n'
          '|---:|---:|---:|---:|---:|')
    on, env = med['on, OAP down'], med['runtime_env only']
    ratio = on / med['off'] if med['off'] and on else None
    env_ratio = on / env if env and on else None
    print(f"| {fmt(med['off'], '.1f')} | {fmt(env, '.1f')} | {fmt(on, '.1f')} | {fmt(ratio, '.2f')} | "
          f"{fmt(env_ratio, '.2f')} |\n")
    return {'median_ms': med, 'runs_ms': runs, 'ratio': ratio, 'ratio_to_runtime_env': env_ratio} \
        if all(runs.values()) else {}


HTTP_IMPLS = ('baseline', 'upstream', 'ours')
HTTP_DEPS = ('fastapi', 'starlette', 'pydantic', 'uvicorn', 'httpx')


def ensure_same_versions(python: Path, dists: tuple[str, ...]) -> str | None:
    """The upstream venv gets the same versions of ``dists`` as .venv (FastAPI/uvicorn/httpx for the http legs,
    PyMySQL for db); an error message on failure."""
    pins = []
    for dist in dists:
        version = installed_version(OURS_PYTHON, dist)
        if version is None:
            return f'{dist} is not installed in .venv'
        if installed_version(python, dist) != version:
            pins.append(f'{dist}=={version}')
    if pins:
        proc = run([python, '-m', 'pip', 'install', '-q', *pins])
        if proc.returncode != 0:
            return f'pip install {" ".join(pins)} failed: {proc.stderr.strip()[-2000:]}'
    return None


class Server:
    """A bench/bench_http.py process, stopped by ``stop()``."""

    def __init__(self, python: Path, *args: str) -> None:
        self.proc = subprocess.Popen([str(python), '-I', str(BENCH_DIR / 'bench_http.py'), *args], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ''
        if not line.startswith('ready port='):
            err = self.proc.stderr.read()[-2000:] if self.proc.stderr and self.proc.poll() is not None else ''
            self.stop()
            raise RuntimeError(f'{" ".join(args)} did not start: {line!r} {err}')
        self.port = int(line.split('=')[1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _cpu_ticks(pid: int) -> int:
    """User + system CPU of a process (all its threads), in clock ticks."""
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _collector_stats(collector: CollectorProcess) -> dict[str, Any]:
    with urllib.request.urlopen(f'http://{collector.http}/api/stats', timeout=5) as resp:
        return json.load(resp)


def http_benchmarks(rounds: int, seconds: float, connections: int, upstream_error: str | None) -> bool:
    """FastAPI + httpx end to end: requests per second through a FastAPI app (uvicorn) that calls a downstream
    with httpx, driven by bench/loadgen.py on 127.0.0.1; no agent, apache-skywalking 1.2.0 (v8) and ours (v6),
    both reporting to the bundled collector (counting only, niced: it stands in for a remote OAP). The legs
    alternate, ``rounds`` times, and each number is the median over rounds."""
    impls = [i for i in HTTP_IMPLS if not (i == 'upstream' and upstream_error)]
    if 'upstream' in impls:
        error = ensure_same_versions(UPSTREAM_PYTHON, HTTP_DEPS)
        if error:
            log(f'http/upstream n/a: {error}')
            impls.remove('upstream')
    pythons = {'baseline': OURS_PYTHON, 'upstream': UPSTREAM_PYTHON, 'ours': OURS_PYTHON}
    runs: dict[str, list[dict[str, Any]]] = {impl: [] for impl in impls}
    collector = start_collector('--sink', nice=19)
    downstream = Server(OURS_PYTHON, '--role', 'downstream')
    try:
        for _ in range(rounds):
            for impl in impls:
                before = _collector_stats(collector).get('segmentsReceived', 0)
                front = Server(pythons[impl], '--role', 'front', '--impl', impl, '--downstream',
                               f'http://127.0.0.1:{downstream.port}', '--collector', collector.grpc)
                try:
                    cpu0 = _cpu_ticks(front.proc.pid)
                    proc = run([OURS_PYTHON, '-I', BENCH_DIR / 'loadgen.py', f'http://127.0.0.1:{front.port}/items/7',
                                '--connections', str(connections), '--seconds', str(seconds)], timeout=seconds + 120)
                    cpu = _cpu_ticks(front.proc.pid) - cpu0
                finally:
                    front.stop()
                lines = [line for line in proc.stdout.splitlines() if line.startswith('{')]
                result: dict[str, Any] = json.loads(lines[-1]) if lines else {'error': proc.stderr[-2000:]}
                if result.get('total'):
                    result['cpu_us_per_request'] = cpu / os.sysconf('SC_CLK_TCK') / result['total'] * 1e6
                result['segments'] = _collector_stats(collector).get('segmentsReceived', 0) - before
                result['ok'] = bool(lines) and result.get('errors') == 0 and result.get('requests', 0) > 0
                runs[impl].append(result)
                log(f"http/{impl}: {result.get('rps')} req/s, {result['segments']} segments")
    finally:
        downstream.stop()
        collector.stop()
    med = {i: statistics.median(r['rps'] for r in rs if r.get('ok')) if any(r.get('ok') for r in rs) else None
           for i, rs in runs.items()}
    base = med.get('baseline')
    print(f'### http: FastAPI + httpx end to end, {connections} connections, {seconds:g} s per leg, median of '
          f'{rounds} alternating rounds\n')
    print('| agent | req/s | vs no agent | app CPU µs/request | vs no agent | p50 ms | p99 ms | segments per request |')
    print('|---|---:|---:|---:|---:|---:|---:|---:|')
    cpu = {i: statistics.median(r['cpu_us_per_request'] for r in rs if r.get('ok') and 'cpu_us_per_request' in r)
           if any(r.get('ok') and 'cpu_us_per_request' in r for r in rs) else None for i, rs in runs.items()}
    for impl, rs in runs.items():
        ok = [r for r in rs if r.get('ok')]
        p50 = statistics.median(r['p50_ms'] for r in ok) if ok else None
        p99 = statistics.median(r['p99_ms'] for r in ok) if ok else None
        per = statistics.median(r['segments'] / max(1, r['total']) for r in ok) if ok else None
        ratio = f"{med[impl] / base * 100:.1f} %" if base and med[impl] else '—'
        cpu_base = cpu.get('baseline')
        cpu_ratio = f"{cpu[impl] / cpu_base * 100:.1f} %" if cpu_base and cpu[impl] else '—'
        print(f"| {impl} | {fmt(med[impl], ',.0f')} | {ratio} | {fmt(cpu[impl], ',.0f')} | {cpu_ratio} "
              f"| {fmt(p50, '.2f')} | {fmt(p99, '.2f')} | {fmt(per, '.2f')} |")
    if med.get('ours') and med.get('upstream'):
        print(f"\nours / upstream: **{med['ours'] / med['upstream']:.2f}×** requests per second")
    share = med['ours'] / base * 100 if base and med.get('ours') else None
    print(f"\n- target, FastAPI + httpx: ours ≥ 95 % of the no-agent requests per second: {fmt(share, '.1f')} %, "
          f"{'met' if share is not None and share >= 95 else 'NOT met'}")
    payload = {'median_rps': med, 'median_cpu_us_per_request': cpu, 'runs': runs}
    (RESULTS_DIR / 'http.json').write_text(json.dumps(payload, indent=2) + '\n', encoding='utf-8')
    print(f"\nwrote {(RESULTS_DIR / 'http.json').relative_to(ROOT)}\n")
    failed = [f'{i}: {r.get("error") or r.get("error_kinds")}' for i, rs in runs.items() for r in rs if not r.get('ok')]
    for line in failed:
        print(f'http leg FAILED: {line}')
    return not failed


def fault_benchmarks(requests: int) -> bool:
    """App request latency while the backend misbehaves (bench/bench_faults.py), against the healthy case."""
    proc = run([OURS_PYTHON, BENCH_DIR / 'bench_faults.py', '--requests', str(requests)], timeout=1800)
    lines = [line for line in proc.stdout.splitlines() if line.startswith('{')]
    if not lines:
        print(f'faults benchmark FAILED: {proc.stderr[-2000:]}')
        return False
    results = json.loads(lines[-1])
    healthy, bare = results['healthy'], results['no agent']
    print(f'### faults: app request latency while the backend misbehaves, {requests} sequential requests per case\n')
    print('| backend | p50 ms | p99 ms | p50 vs healthy | p99 vs healthy | p50 vs no agent |')
    print('|---|---:|---:|---:|---:|---:|')
    for name, r in results.items():
        print(f"| {name} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['p50_ms'] / healthy['p50_ms']:.2f} "
              f"| {r['p99_ms'] / healthy['p99_ms']:.2f} | {r['p50_ms'] / bare['p50_ms']:.2f} |")
    (RESULTS_DIR / 'faults.json').write_text(json.dumps(results, indent=2) + '\n', encoding='utf-8')
    print(f"\nwrote {(RESULTS_DIR / 'faults.json').relative_to(ROOT)}\n")
    return True


def scaling_benchmarks() -> bool:
    """Time per span as spans per segment, threads and asyncio tasks grow; memory per queued segment."""
    proc = run([OURS_PYTHON, BENCH_DIR / 'bench_scaling.py'], timeout=1800)
    lines = [line for line in proc.stdout.splitlines() if line.startswith('{')]
    if not lines:
        print(f'scaling benchmark FAILED: {proc.stderr[-2000:]}')
        return False
    result = json.loads(lines[-1])
    print('### scaling: µs per span as the work grows (in-memory reporter)\n')
    for key, label in (('spans_per_segment', 'spans per segment'), ('threads', 'threads'),
                       ('asyncio_tasks', 'asyncio tasks')):
        row = result[key]
        values = list(row.values())
        growth = max(values) / values[0]  # against the smallest load: falling is fine, growing is not
        print(f"| {label} | " + ' | '.join(row) + ' | max / first |')
        print('|---|' + '---:|' * (len(row) + 1))
        print('| µs per span | ' + ' | '.join(f'{v:.2f}' for v in values) + f' | {growth:.2f} '
              f"({'no growth: met' if growth <= 1.5 else 'GROWS'}) |\n")
    print(f"memory per queued segment (two spans): {result['bytes_per_queued_segment']:,.0f} bytes\n")
    (RESULTS_DIR / 'scaling.json').write_text(json.dumps(result, indent=2) + '\n', encoding='utf-8')
    return True


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--requests', type=int, default=20_000, help='requests per round (default 20000)')
    parser.add_argument('--rounds', type=int, default=7, help='timed rounds (default 7)')
    parser.add_argument('--warmup', type=int, default=5_000, help='untimed requests first (default 5000)')
    parser.add_argument('--ray-calls', type=int, default=300, help='calls per Ray measurement (median)')
    parser.add_argument('--ray-rounds', type=int, default=3, help='alternating off/on Ray sessions per side')
    parser.add_argument('--http-rounds', type=int, default=3, help='alternating rounds of the HTTP end-to-end legs')
    parser.add_argument('--http-seconds', type=float, default=10.0, help='measured seconds per HTTP leg')
    parser.add_argument('--http-connections', type=int, default=16, help='load generator connections')
    parser.add_argument('--only', action='append',
                        choices=[*(b.name for b in BENCHMARKS), 'db', 'reporter', 'http', 'ray', 'faults', 'scaling'],
                        help='run only these')
    parser.add_argument('--db-sessions', type=int, default=5, help='alternating sessions of the db legs')
    parser.add_argument('--db-cpu', type=int, default=max(os.sched_getaffinity(0)),
                        help='the CPU the db legs and their MariaDB share (default: the last one; -1: no pinning)')
    parser.add_argument('--fault-requests', type=int, default=3000, help='requests per fault case')
    parser.add_argument('--segments', type=int, default=5000, help='segments per reporter throughput leg')
    parser.add_argument('--soak-minutes', type=float, default=10, help='collector-down soak (0 skips it)')
    parser.add_argument('--soak-rate', type=int, default=200, help='segments per second during the soak')
    parser.add_argument('--instructions', action='store_true',
                        help='also count instructions per request with valgrind (about a minute per leg)')
    args = parser.parse_args(argv)

    upstream_error = ensure_upstream_venv()
    have_ours = ours_installed()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    print(f'python {platform.python_version()} ({sys.executable}), {platform.machine()}, {os.cpu_count()} CPUs; '
          f'{args.rounds} rounds × {args.requests} requests after {args.warmup} warm-up, gc on\n')

    soak = None
    if have_ours and args.soak_minutes > 0 and not args.only:
        soak = start_soak(args.soak_minutes, args.soak_rate)  # runs while the rest is measured
    failed: list[str] = []
    for bench in BENCHMARKS:
        if args.only and bench.name not in args.only:
            continue
        results: dict[str, dict[str, Any]] = {}
        for config in CONFIGS:
            if config.name == 'upstream' and upstream_error:
                results[config.name] = {'ok': False, 'error': upstream_error}
            elif config.name == 'ours' and not have_ours:
                missing = 'company-skywalking not installed in .venv (make venv)'
                results[config.name] = {'ok': False, 'skipped': True, 'error': missing}
            else:
                results[config.name] = run_leg(bench, config, args)
            res = results[config.name]
            if not res.get('ok'):
                log(f'{bench.name}/{config.name} {"n/a" if res.get("skipped") else "FAILED"}: {res.get("error")}')
                if res.get('traceback'):
                    log(res['traceback'])
                if config.name == 'baseline' or (config.name == 'ours' and have_ours):
                    failed.append(f'{bench.name}/{config.name}')
        print(table(bench, results) + '\n')
        if args.instructions:
            counts = {c.name: instructions_per_request(bench, c) for c in CONFIGS if results[c.name].get('ok')}
            for name, count in counts.items():
                results[name]['instructions_per_request'] = count
            print('instructions per request (callgrind, gc off): ' +
                  ', '.join(f'{name} {fmt(count, ",.0f")}' for name, count in counts.items()))
            if counts.get('upstream') and counts.get('ours'):
                print(f'upstream / ours: **{counts["upstream"] / counts["ours"]:.2f}×** fewer instructions\n')
        out = RESULTS_DIR / f'{bench.name}.json'
        payload = {'benchmark': bench.name, 'description': bench.description, 'requests': args.requests,
                   'rounds': args.rounds, 'warmup': args.warmup, 'results': results}
        out.write_text(json.dumps(payload, indent=2) + '\n', encoding='utf-8')
        print(f'wrote {out.relative_to(ROOT)}\n')

    if not args.only or 'db' in args.only:
        if not db_benchmarks(args, upstream_error, have_ours):
            failed.append('db')
    if have_ours and (not args.only or 'reporter' in args.only):
        if not reporter_benchmarks(args, not upstream_error, soak):
            failed.append('reporter/ours')
    if have_ours and (not args.only or 'http' in args.only):
        if not http_benchmarks(args.http_rounds, args.http_seconds, args.http_connections, upstream_error):
            failed.append('http')
    if have_ours and (not args.only or 'ray' in args.only):
        if not ray_benchmarks(args.ray_calls, args.ray_rounds):
            failed.append('ray')
    if have_ours and (not args.only or 'scaling' in args.only):
        if not scaling_benchmarks():
            failed.append('scaling')
    if have_ours and (not args.only or 'faults' in args.only):
        if not fault_benchmarks(args.fault_requests):
            failed.append('faults')
    if failed:
        print(f'FAILED legs: {", ".join(failed)}')
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
