"""Ray Serve driver for the tests: FastAPI ingress `Upstream` calling `Downstream` through a handle.

The agent is started in the driver only. Prints {"http": ..., "fail": ..., "handle": ...} as JSON,
each with the trace id the driver saw.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request

import ray
from fastapi import FastAPI
from ray import serve

from skywalking import Component, Layer, agent, config
from skywalking.trace.context import get_context

app = FastAPI()


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
class Downstream:
    async def hello(self, name):
        return f"hello {name}"

    async def stream(self, n):
        for i in range(n):
            yield i

    def boom(self):
        raise ValueError("downstream failure")


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
@serve.ingress(app)
class Upstream:
    def __init__(self, downstream):
        self.downstream = downstream

    @app.get("/chat")
    async def chat(self):
        text = await self.downstream.hello.remote("http")
        parts = [p async for p in self.downstream.options(stream=True).stream.remote(3)]
        return {"text": text, "parts": parts}

    @app.get("/fail")
    async def fail(self):
        return await self.downstream.boom.remote()


def http_get(url: str, op: str) -> dict:
    """A traced HTTP call, the way an upstream service with an agent would make it."""
    ctx = get_context()
    with ctx.new_entry_span(op=f"/driver{op}"):
        with ctx.new_exit_span(op=op, peer=url.split("/")[2], component=Component.General) as call:
            call.layer = Layer.Http
            request = urllib.request.Request(url)
            for item in call.inject():
                request.add_header(item.key, item.val)
            try:
                with urllib.request.urlopen(request, timeout=30) as resp:
                    body = json.load(resp)
            except urllib.error.HTTPError as e:
                body = {"status": e.code}
        return {"trace": str(ctx.segment.related_traces[0]), "body": body}


def main() -> None:
    backend, port = sys.argv[1], int(sys.argv[2])
    config.init(agent_name="ray-driver", agent_collector_backend_services=backend, agent_register_wait=15,
                agent_collector_heartbeat_period=1, agent_logging_level="WARNING")
    agent.start()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(Upstream.bind(Downstream.bind()), route_prefix="/hello-ray")
    results = {"http": http_get(f"http://127.0.0.1:{port}/hello-ray/chat", "/hello-ray/chat"),
               "fail": http_get(f"http://127.0.0.1:{port}/hello-ray/fail", "/hello-ray/fail")}
    handle = serve.get_deployment_handle("Downstream", app_name="default")
    ctx = get_context()
    with ctx.new_entry_span(op="/driver/handle"):
        value = handle.hello.remote("driver").result()
        results["handle"] = {"trace": str(ctx.segment.related_traces[0]), "body": value}
    print(json.dumps(results), flush=True)
    time.sleep(2)  # Ray kills workers at shutdown: let their reporters send the last batch
    serve.shutdown()
    ray.shutdown()
    agent.stop()


if __name__ == "__main__":
    main()
