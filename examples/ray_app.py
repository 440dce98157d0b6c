"""The Ray Serve application of the demo: the user's scenario, with no SkyWalking code in the deployments.

FastAPI ingress ``upstream`` calls ``downstream`` through a DeploymentHandle, runs a Ray Core task and
calls an actor. Run as a driver process by examples/demo.py: ``python ray_app.py <collector> <port>``;
it prints ``ready`` once Serve is up and shuts everything down when its stdin closes.
"""

from __future__ import annotations

import sys

import ray
from fastapi import FastAPI
from ray import serve

app = FastAPI()


@ray.remote
def tokenize(text: str) -> list[str]:
    return text.split()


@ray.remote(num_cpus=0.1)
class Usage:
    def __init__(self) -> None:
        self.tokens = 0

    def add(self, n: int) -> int:
        self.tokens += n
        return self.tokens


@serve.deployment(name="downstream", ray_actor_options={"num_cpus": 0.1})
class Downstream:
    async def generate(self, prompt: str) -> str:
        return f"echo: {prompt}"


@serve.deployment(name="upstream", ray_actor_options={"num_cpus": 0.1})
@serve.ingress(app)
class Upstream:
    def __init__(self, downstream) -> None:
        self.downstream = downstream
        self.usage = Usage.remote()

    @app.post("/upstream")
    async def upstream(self, prompt: str = "hello ray") -> dict:
        tokens = await tokenize.remote(prompt)
        total = await self.usage.add.remote(len(tokens))
        answer = await self.downstream.generate.remote(prompt)
        return {"answer": answer, "tokens": len(tokens), "total_tokens": total}


def main() -> None:
    from skywalking import agent, config

    # the driver starts the agent once; ray.init() passes it on to every worker, replica included
    config.init(agent_name="ray-app", agent_collector_backend_services=sys.argv[1],
                plugin_ray_serve_service_name="ray-{deployment}", agent_logging_level="WARNING")
    agent.start()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": int(sys.argv[2])})
    serve.run(Upstream.bind(Downstream.bind()), route_prefix="/hello-ray")
    print("ready", flush=True)
    sys.stdin.readline()
    serve.shutdown()
    ray.shutdown()
    agent.stop()


if __name__ == "__main__":
    main()
