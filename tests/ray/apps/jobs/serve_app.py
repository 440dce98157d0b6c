"""A Serve application deployed from a config file (``serve deploy``): no SkyWalking code. The ingress
calls a second deployment through a handle, which runs a Ray Core task."""

from __future__ import annotations

import ray
from fastapi import FastAPI
from ray import serve

api = FastAPI()


@ray.remote(num_cpus=0)
def square(x: int) -> int:
    return x * x


@serve.deployment(ray_actor_options={"num_cpus": 0})
class Backend:
    async def compute(self, x: int) -> int:
        return await square.remote(x)


@serve.deployment(ray_actor_options={"num_cpus": 0})
@serve.ingress(api)
class Front:
    def __init__(self, backend: serve.handle.DeploymentHandle) -> None:
        self.backend = backend

    @api.get("/calc/{x}")
    async def calc(self, x: int) -> dict[str, int]:
        return {"value": await self.backend.compute.remote(x)}


app = Front.bind(Backend.bind())
