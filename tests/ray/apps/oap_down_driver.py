"""A fresh worker's first task while the OAP is down: ``oap_down_driver.py <backend> agent|none``. Prints one
JSON line (the first task's latency, its trace) as soon as the task returned; with the agent, it then waits
for the backend to come up and for the reporters to deliver before it exits."""

from __future__ import annotations

import json
import os
import socket
import sys
import time

import ray

from skywalking import agent, config
from skywalking.trace.context import get_context


@ray.remote
def first() -> int:
    return os.getpid()


def backend_up(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def main() -> None:
    backend, traced = sys.argv[1], sys.argv[2] == "agent"
    if traced:
        config.init(agent_name="ray-oap-down", agent_collector_backend_services=backend,
                    agent_collector_heartbeat_period=1, agent_logging_level="WARNING")
        agent.start()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    ctx = get_context()
    with ctx.new_entry_span(op="/first-task"):
        t0 = time.perf_counter()
        pid = ray.get(first.remote())
        latency = time.perf_counter() - t0
        trace = str(ctx.segment.related_traces[0])
    print(json.dumps({"latency": latency, "trace": trace, "worker_pid": pid}), flush=True)
    if traced:
        deadline = time.monotonic() + 120
        while not backend_up(backend) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(4)  # registration (backoff capped), then delivery of the held segments
    ray.shutdown()
    agent.stop()


if __name__ == "__main__":
    main()
