"""Ray benchmark, run by run.py twice in the same run: ``--plugin off`` (no agent) and ``--plugin on``
(agent started in the driver, so every worker and replica is traced, reporting v6 to the bundled collector).

Measures the median of N calls of: a Serve handle call from the driver, an HTTP request through Serve's
proxy, a Ray task round trip and an actor method round trip. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
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


def median_ms(call: Callable[[], Any], n: int, warmup: int) -> float:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plugin", choices=("on", "off"), required=True)
    parser.add_argument("--collector", default="")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    args = parser.parse_args()
    result: dict[str, Any] = {"plugin": args.plugin, "python": platform.python_version(), "ray": ray.__version__,
                              "calls": args.calls, "ok": False}
    try:
        if args.plugin == "on":
            from skywalking import agent, config

            config.init(agent_name="bench-ray", agent_collector_backend_services=args.collector,
                        agent_register_wait=15, agent_logging_level="WARNING")
            agent.start()
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        serve.start(http_options={"host": "127.0.0.1", "port": args.port})
        handle = serve.run(Echo.bind(), route_prefix="/echo")
        actor = Actor.remote()
        url = f"http://127.0.0.1:{args.port}/echo"

        def http() -> None:
            with urllib.request.urlopen(url, timeout=30) as resp:
                resp.read()

        result["median_ms"] = {
            "serve_handle": median_ms(lambda: handle.hello.remote("x").result(), args.calls, args.warmup),
            "serve_http": median_ms(http, args.calls, args.warmup),
            "task": median_ms(lambda: ray.get(task.remote(1)), args.calls, args.warmup),
            "actor": median_ms(lambda: ray.get(actor.call.remote(1)), args.calls, args.warmup),
        }
        result["ok"] = True
        serve.shutdown()
        ray.shutdown()
        if args.plugin == "on":
            from skywalking import agent

            agent.stop()
    except Exception as e:
        result["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
