"""A Ray driver with no SkyWalking code at all: the agent reaches the workers through node-level preloading
(``RAY_preload_python_modules=skywalking.bootstrap.ray_worker`` and ``SW_*`` in the cluster's environment)."""

from __future__ import annotations

import json
import sys
import time

import ray


@ray.remote
def inner(x):
    return x * 2


@ray.remote
def outer(x):
    return ray.get(inner.remote(x)) + 1


def main() -> None:
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    value = ray.get(outer.remote(20))
    print(json.dumps({"value": value, "driver_has_agent": "skywalking" in sys.modules}), flush=True)
    time.sleep(2)  # Ray kills workers at shutdown: let their reporters send the last batch
    ray.shutdown()


if __name__ == "__main__":
    main()
