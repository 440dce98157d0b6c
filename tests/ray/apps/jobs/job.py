"""A Ray job as teams submit it: ``python job.py [agent]``. With ``agent`` it starts the agent before
``ray.init()`` as docs/ray.md says; without, it contains no SkyWalking code at all. Three top-level calls:
a task that fans out to two subtasks, an actor creation, and an actor call that runs a task. Prints one
JSON line."""

from __future__ import annotations

import json
import os
import sys
import time

if sys.argv[1:] == ["agent"]:
    from skywalking import agent

    agent.start()  # configured from the SW_* variables of the job's runtime_env

import ray

ray.init()


@ray.remote
def leaf(x: int) -> int:
    return x + 1


@ray.remote
def fan(x: int) -> list[int]:
    return ray.get([leaf.remote(x), leaf.remote(x + 10)])


@ray.remote
class Counter:
    def __init__(self) -> None:
        self.base = 100

    def add(self, x: int) -> int:
        return ray.get(leaf.remote(x)) + self.base


counter = Counter.remote()
result = {"fan": ray.get(fan.remote(1)), "add": ray.get(counter.add.remote(5)), "driver_pid": os.getpid(),
          "driver_traced": "skywalking.agent" in sys.modules and sys.modules["skywalking.agent"].started()}
print(json.dumps(result), flush=True)  # not the last act: `ray job submit` may stop tailing at the exit
time.sleep(1.5)  # Ray SIGKILLs the job's workers when the driver exits: let their reporters send first
