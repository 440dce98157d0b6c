"""A worker SIGKILLed right after its task returned: ``sigkill_driver.py <backend>``. Prints one JSON line
(the trace of the call, the killed worker's pid) and then keeps the session alive while the other workers
deliver what the killed one left in the node's spool."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import ray

from skywalking import agent, config
from skywalking.trace.context import get_context


@ray.remote(max_retries=0)
def victim() -> int:
    return os.getpid()


@ray.remote
def survivor() -> int:
    return os.getpid()


def main() -> None:
    config.init(agent_name="ray-sigkill", agent_collector_backend_services=sys.argv[1],
                agent_collector_heartbeat_period=1, agent_logging_level="WARNING")
    agent.start()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    ray.get(survivor.remote())  # a worker that stays alive (and looks after the node's spool)
    ctx = get_context()
    with ctx.new_entry_span(op="/kill-after-return"):
        pid = ray.get(victim.remote())
        os.kill(pid, signal.SIGKILL)  # its reporter had no time to send: only the spool has the segment
        trace = str(ctx.segment.related_traces[0])
    print(json.dumps({"trace": trace, "victim_pid": pid}), flush=True)
    time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 12)
    ray.shutdown()
    agent.stop()


if __name__ == "__main__":
    main()
