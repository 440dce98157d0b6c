"""Two-node Ray cluster driver: a chain driver → task (head) → task (node 2), and an actor on node 2."""

from __future__ import annotations

import json
import sys
import time

import ray
from ray.cluster_utils import Cluster

from skywalking import agent, config
from skywalking.trace.context import get_context


@ray.remote(resources={"node2": 0.01})
def on_node2(x):
    return x * 10, ray.get_runtime_context().get_node_id()


@ray.remote(num_cpus=0.1, resources={"head": 0.01})
def on_head(x):
    value, node = ray.get(on_node2.remote(x))
    return value + 1, ray.get_runtime_context().get_node_id(), node


@ray.remote(resources={"node2": 0.01})
class Remote:
    async def ping(self):
        return ray.get_runtime_context().get_node_id()


def main() -> None:
    config.init(agent_name="ray-cluster", agent_collector_backend_services=sys.argv[1],
                agent_collector_heartbeat_period=1, agent_logging_level="WARNING")
    agent.start()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"head": 1}})
    cluster.add_node(num_cpus=1, resources={"node2": 1})
    ray.init(address=cluster.address, logging_level="ERROR")
    results = {}
    ctx = get_context()
    with ctx.new_entry_span(op="/cluster/chain"):
        value, head_node, second_node = ray.get(on_head.remote(4))
        results["chain"] = {"trace": str(ctx.segment.related_traces[0]), "value": value, "head": head_node,
                            "node2": second_node}
    ctx = get_context()
    with ctx.new_entry_span(op="/cluster/actor"):
        remote = Remote.remote()  # held: before 2.48 an actor method keeps only a weak reference to its handle
        results["actor"] = {"trace": str(ctx.segment.related_traces[0]), "node": ray.get(remote.ping.remote())}
    print(json.dumps(results), flush=True)
    time.sleep(2)  # Ray kills workers at shutdown: let their reporters send the last batch
    ray.shutdown()
    cluster.shutdown()
    agent.stop()


if __name__ == "__main__":
    main()
