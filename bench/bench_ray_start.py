"""The first task of a fresh Ray session, run by run.py: ``--plugin off`` (no agent) or ``--plugin on`` (the
agent in the driver and, through ray.init(), in every worker, reporting v6 to ``--collector``; run.py points
it at a port nothing listens on: the OAP is down) or ``--plugin runtime-env`` (no agent, but a job runtime_env
with one environment variable: Ray cannot use its pre-started workers for a job with a runtime_env, whatever
it holds). Prints one JSON line with the latency in ms."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import ray


@ray.remote
def first(x: int) -> int:
    return x + 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plugin", choices=("on", "off", "runtime-env"), required=True)
    parser.add_argument("--collector", default="127.0.0.1:9")
    args = parser.parse_args()
    result: dict[str, Any] = {"plugin": args.plugin, "ok": False}
    if args.plugin == "on":
        from skywalking import agent, config

        config.init(agent_name="bench-ray-start", agent_collector_backend_services=args.collector,
                    agent_logging_level="ERROR")
        agent.start()
    extra = {"runtime_env": {"env_vars": {"BENCH_RAY_START": "1"}}} if args.plugin == "runtime-env" else {}
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             **extra)
    t0 = time.perf_counter()
    ray.get(first.remote(1))
    result.update(first_task_ms=(time.perf_counter() - t0) * 1000, ok=True)
    ray.shutdown()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
