"""Ray benchmark, run by run.py in alternating sessions: ``--plugin off`` (no agent), ``--plugin trace-only``
(every worker and replica traced, nothing sent), ``--plugin on`` (traced, reporting v6 to the bundled
collector, workers writing ahead to the node spool) and ``--plugin on-no-spool`` (the same without the spool).
The agent is started in the driver only; ray.init() carries it into every worker.

Measures the median of N calls of: a Serve handle call from the driver, an HTTP request through Serve's
proxy, a Ray task round trip and an actor method round trip. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import ray
from ray import serve


@ray.remote(num_cpus=0.1)
def task(x: int) -> int:
    return x + 1


@ray.remote(num_cpus=0.1)
class Actor:
    def call(self, x: int) -> int:
        return x + 1


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
class Echo:
    async def __call__(self, request: Any) -> str:
        return "ok"

    async def hello(self, name: str) -> str:
        return name


def _tree_cpu_s(pids: set[int] | None = None) -> float:
    """CPU seconds used so far by this process and every descendant (GCS, raylet, workers, replicas; not the
    collector, which stands in for a remote OAP), summed over threads from ``schedstat`` (nanoseconds, unlike
    the 10 ms ticks of ``stat``). Threads and processes that ended drop out. ``pids`` receives the tree."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    tree, frontier = {os.getpid()}, [os.getpid()]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    if pids is not None:
        pids.update(tree)
    total = 0
    for pid in tree:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return total / 1e9


def measure(calls: dict[str, Callable[[], Any]], n: int, warmup_s: float,
            block: int = 25) -> tuple[dict[str, float], dict[str, float], dict[str, int]]:
    """Median latency (ms) of each call, then CPU per call (ms, all Ray processes). A warm-up phase first
    (Ray may still be starting pooled workers, which burns the 2 cores for seconds). Latency: blocks of
    ``block`` calls of each kind, interleaved, so that transient load spreads over all kinds instead of
    landing on one. CPU: ``n`` calls of each kind in a row, between two snapshots; also how many processes
    started meanwhile (Ray replacing a worker it stopped for being idle costs a worker start-up)."""
    deadline = time.monotonic() + warmup_s
    while time.monotonic() < deadline:
        for call in calls.values():
            call()
    time.sleep(3)
    samples: dict[str, list[float]] = {name: [] for name in calls}
    while any(len(s) < n for s in samples.values()):
        for name, call in calls.items():
            for _ in range(min(block, n - len(samples[name]))):
                t0 = time.perf_counter()
                call()
                samples[name].append(time.perf_counter() - t0)
    cpu, started = {}, {}
    for name, call in calls.items():
        old: set[int] = set()
        new: set[int] = set()
        before = _tree_cpu_s(old)
        for _ in range(n):
            call()
        cpu[name] = (_tree_cpu_s(new) - before) / n * 1000
        started[name] = len(new - old)
    return {name: statistics.median(s) * 1000 for name, s in samples.items()}, cpu, started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plugin", choices=("on", "on-no-spool", "trace-only", "off", "otel"), required=True)
    parser.add_argument("--collector", default="")
    parser.add_argument("--otlp", default="", help="host:port of the OTLP sink (--plugin otel)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--warmup", type=float, default=8.0, help="seconds of warm-up calls")
    args = parser.parse_args()
    result: dict[str, Any] = {"plugin": args.plugin, "python": platform.python_version(), "ray": ray.__version__,
                              "calls": args.calls, "ok": False}
    try:
        if args.plugin in ("on", "on-no-spool"):
            from skywalking import agent, config

            config.init(agent_name="bench-ray", agent_collector_backend_services=args.collector,
                        agent_logging_level="WARNING", plugin_ray_spool=args.plugin == "on")
            agent.start()
        elif args.plugin == "trace-only":  # v8 (no registration) to a closed port: spans built, nothing sent
            from skywalking import agent, config

            config.init(agent_name="bench-ray", agent_collector_backend_services="127.0.0.1:9",
                        agent_protocol_version="v8", agent_trace_reporter_max_buffer_size=100,
                        agent_logging_level="ERROR")
            agent.start()
        init: dict[str, Any] = {}
        start: dict[str, Any] = {}
        if args.plugin == "otel":  # workers find otel_peer through the PYTHONPATH they inherit
            from ray.serve.schema import TracingConfig

            here = os.path.dirname(os.path.abspath(__file__))
            sys.path.insert(0, here)
            os.environ["SW_BENCH_OTLP"] = args.otlp
            os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (here, os.environ.get("PYTHONPATH"))))
            init["_tracing_startup_hook"] = "otel_peer:startup"
            start["tracing_config"] = TracingConfig(enabled=True, exporter_import_path="otel_peer:serve_processors",
                                                    sampling_ratio=1.0)
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                 **init)
        serve.start(http_options={"host": "127.0.0.1", "port": args.port}, **start)
        handle = serve.run(Echo.bind(), route_prefix="/echo")
        actor = Actor.remote()
        url = f"http://127.0.0.1:{args.port}/echo"

        if args.plugin in ("off", "otel"):
            quiet: Callable[[], Any] = contextlib.nullcontext
        else:
            from skywalking.trace.context import suppress_tracing as quiet

        def http() -> None:  # an untraced client (the agent's urllib plugin stays out of this measurement)
            with quiet(), urllib.request.urlopen(url, timeout=30) as resp:
                resp.read()

        result["median_ms"], result["cpu_ms_per_call"], result["processes_started"] = measure({
            "serve_handle": lambda: handle.hello.remote("x").result(),
            "serve_http": http,
            "task": lambda: ray.get(task.remote(1)),
            "actor": lambda: ray.get(actor.call.remote(1)),
        }, args.calls, args.warmup)
        result["ok"] = True
        serve.shutdown()
        ray.shutdown()
        if args.plugin not in ("off", "otel"):
            from skywalking import agent

            agent.stop()
    except Exception as e:
        result["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
