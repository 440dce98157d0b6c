"""Reporter benchmarks, run by run.py under ours (v6) and upstream apache-skywalking 1.2.0 (v8).

* ``--mode throughput --collector HOST:PORT --collector-http HOST:PORT``: produce N segments (entry +
  exit span each) through the public API as fast as the agent takes them, and time until the
  collector has received all of them: segments per second delivered, and the agent process's CPU
  time per segment (spans made, encoded, sent), which does not depend on the collector's speed, split into the
  application thread's (spans made, handed to the reporter) and the reporter's threads' (encoded, sent,
  registration): the cost of reporting. The main thread's polling of the collector is left out of both.
* ``--mode soak --collector ... --minutes M``: register, then the collector is killed by run.py (it
  waits for the ``registered`` line), then steady load (``--rate`` segments/s) for M minutes while
  RSS is sampled every 10 s: it must stay flat, bounded by the queue.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
import urllib.request
from typing import Any


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def received(http: str) -> int:
    with urllib.request.urlopen(f"http://{http}/api/stats", timeout=5) as resp:
        stats = json.load(resp)
    return int(stats["segmentsReceived"])


def _cpu() -> float:
    """CPU seconds of this process, all threads (spans made + segments encoded and sent)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def start_agent(collector: str, protocol: str) -> dict[str, Any]:
    import skywalking
    from skywalking import agent, config

    ours = getattr(skywalking, "__distribution__", None) == "company-skywalking"
    options: dict[str, Any] = {"agent_collector_backend_services": collector, "agent_name": "bench-reporter",
                               "agent_logging_level": "WARNING", "agent_trace_reporter_max_buffer_size": 10000}
    if ours:
        options.update(agent_protocol_version=protocol, agent_register_wait=30)
    else:
        options.update(agent_profile_active=False, agent_meter_reporter_active=False,
                       agent_log_reporter_active=False)
    config.init(**options)
    agent.start()
    return {"impl": "ours" if ours else "upstream", "package": "company-skywalking" if ours else "apache-skywalking",
            "version": skywalking.__version__ if ours else _version("apache-skywalking")}


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


def one_segment() -> None:
    from skywalking import Component, Layer
    from skywalking.trace.context import get_context

    ctx = get_context()
    with ctx.new_entry_span(op="/api/items") as entry:
        entry.layer, entry.component = Layer.Http, Component.Flask
        with ctx.new_exit_span(op="/db", peer="127.0.0.1:5432", component=Component.Requests) as out:
            out.layer = Layer.Http
            out.inject()


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    meta = start_agent(args.collector, args.protocol)
    one_segment()
    base = received(args.collector_http)
    deadline = time.monotonic() + 60
    while received(args.collector_http) < base + 1 and time.monotonic() < deadline:
        time.sleep(0.05)  # the warm-up segment is through: the stream is open
    base = received(args.collector_http)
    cpu0, main0 = _cpu(), time.thread_time()
    t0 = time.perf_counter()
    for _ in range(args.segments):
        one_segment()
    produced = time.perf_counter() - t0
    traced = time.thread_time() - main0  # the application thread: spans made and handed over
    while received(args.collector_http) < base + args.segments and time.monotonic() < deadline + 120:
        time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    cpu = _cpu() - cpu0
    background = cpu - (time.thread_time() - main0)  # every other thread: encoding, sending, registration
    got = received(args.collector_http) - base
    return {**meta, "segments": args.segments, "received": got, "produce_s": produced, "elapsed_s": elapsed,
            "segments_per_s": min(got, args.segments) / elapsed, "cpu_s": cpu,
            "cpu_us_per_segment": (traced + background) / max(1, min(got, args.segments)) * 1e6,
            "traced_us_per_segment": traced / args.segments * 1e6,
            "reporting_us_per_segment": background / max(1, min(got, args.segments)) * 1e6, "ok": got >= args.segments}


def soak(args: argparse.Namespace) -> dict[str, Any]:
    meta = start_agent(args.collector, args.protocol)
    one_segment()
    print("registered", flush=True, file=sys.stderr)
    sys.stdin.readline()  # run.py kills the collector, then says go
    samples = []
    end = time.monotonic() + args.minutes * 60
    next_sample = time.monotonic()
    interval = 1.0 / args.rate
    while time.monotonic() < end:
        one_segment()
        if time.monotonic() >= next_sample:
            samples.append(rss_kib())
            next_sample += 10
        time.sleep(interval)
    samples.append(rss_kib())
    from skywalking import agent

    reporter = getattr(agent.agent, "_reporter", None)
    stats = reporter.stats() if reporter is not None and hasattr(reporter, "stats") else {}
    settled = samples[len(samples) // 4:]  # after the queue has filled
    return {**meta, "minutes": args.minutes, "rate": args.rate, "rss_kib": samples,
            "rss_growth_kib_after_fill": max(settled) - min(settled), "reporter": stats, "ok": True}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("throughput", "soak"), required=True)
    parser.add_argument("--collector", required=True)
    parser.add_argument("--collector-http", default="")
    parser.add_argument("--protocol", default="v6")
    parser.add_argument("--segments", type=int, default=5000)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=int, default=200)
    args = parser.parse_args(argv)
    try:
        result = throughput(args) if args.mode == "throughput" else soak(args)
    except Exception as e:  # reported as data
        result = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    result["python"] = platform.python_version()
    print(json.dumps(result), flush=True)
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
