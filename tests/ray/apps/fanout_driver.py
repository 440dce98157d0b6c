"""A fan-out of 10 000 tasks from one traced span: ``fanout_driver.py <backend> <n>``. Prints one JSON line: the
trace, the results' sum, what the plugin still holds afterwards and the driver's memory."""

from __future__ import annotations

import json
import resource
import sys
import time

import ray

from skywalking import agent, config
from skywalking.plugins.sw_ray import core
from skywalking.trace.context import get_context
from skywalking.trace.tracer import TRACER


@ray.remote(num_cpus=0.25)
def leaf(x: int) -> int:
    return x


def main() -> None:
    n = int(sys.argv[2])
    config.init(agent_name="ray-fanout", agent_collector_backend_services=sys.argv[1],
                agent_collector_heartbeat_period=1, agent_logging_level="WARNING")
    agent.start()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    ray.get(leaf.remote(0))  # workers up
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ctx = get_context()
    with ctx.new_entry_span(op="/fan-out"):
        total = sum(ray.get([leaf.remote(i) for i in range(n)]))
        trace = str(ctx.segment.related_traces[0])
    time.sleep(1)  # the last completion callbacks
    print(json.dumps({"trace": trace, "sum": total, "pending_refs": len(core._pending),
                      "spans_over_limit": TRACER.spans_over_limit, "max_rss_kb": [rss_before, resource.getrusage(
                          resource.RUSAGE_SELF).ru_maxrss]}), flush=True)
    time.sleep(3)  # the workers' reporters deliver
    ray.shutdown()
    agent.stop()


if __name__ == "__main__":
    main()
