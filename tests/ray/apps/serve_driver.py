"""Ray Serve driver for the tests: FastAPI ingress `Upstream` calling `Downstream` through a handle.

The agent is started in the driver only. Prints {"http": ..., "fail": ..., "handle": ...} as JSON,
each with the trace id the driver saw.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request

import ray
from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from skywalking import Component, Layer, agent, config
from skywalking.trace.context import get_context, suppress_tracing

app = FastAPI()


@ray.remote(num_cpus=0)
def total(xs):
    return sum(xs)


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
class Downstream:
    @serve.batch(max_batch_size=3, batch_wait_timeout_s=5)
    async def batched(self, xs):
        whole = await total.remote(xs)  # a call made by the batch, on behalf of all its requests
        return [x * 100 + whole for x in xs]

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

    @app.get("/items/{item_id}")
    async def item(self, item_id: int):
        return {"item": item_id}

    @app.get("/dispatch")
    async def dispatch(self):
        handle = self.downstream.options(method_name="hello")
        async with handle.choose_replica("dispatched") as selection:
            return await handle.dispatch(selection, "dispatched")

    @app.get("/broadcast")
    async def broadcast(self):
        return await self.downstream.broadcast("hello", "everyone").results_async()


def http_get(url: str, op: str, traced: bool = True) -> dict:
    """A traced HTTP call, the way an upstream service with an agent would make it (or an untraced one)."""
    if not traced:
        with suppress_tracing(), urllib.request.urlopen(url, timeout=30) as resp:
            return {"body": json.load(resp)}
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


def http_options(url: str) -> dict:
    """An untraced OPTIONS request: the ingress replica must not trace it (``plugin_http_ignore_method``)."""
    request = urllib.request.Request(url, method="OPTIONS")
    try:
        with suppress_tracing(), urllib.request.urlopen(request, timeout=30) as resp:
            return {"status": resp.status}
    except urllib.error.HTTPError as e:
        return {"status": e.code}


def direct_port() -> int:
    """The port of the ingress replica's own HTTP server (direct ingress), found through /-/routes."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for port in range(30000, 30050):
            try:
                with suppress_tracing(), urllib.request.urlopen(f"http://127.0.0.1:{port}/-/routes", timeout=1) as resp:
                    if "/hello-ray" in json.load(resp):
                        return port
            except (OSError, ValueError):
                continue
        time.sleep(1)
    raise RuntimeError("no direct-ingress replica found")


def main() -> None:
    backend, port = sys.argv[1], int(sys.argv[2])
    direct = sys.argv[3:] == ["direct"]
    if direct:  # read by Serve in every process of the local cluster, which inherits the driver's environment
        os.environ["RAY_SERVE_ENABLE_DIRECT_INGRESS"] = "1"
    config.init(agent_name="ray-driver", agent_collector_backend_services=backend,
                agent_collector_heartbeat_period=1, agent_logging_level="WARNING",
                plugin_http_ignore_method="OPTIONS")  # reaches the replicas with the rest of the config
    agent.start()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(Upstream.bind(Downstream.bind()), route_prefix="/hello-ray")
    base = f"http://127.0.0.1:{direct_port() if direct else port}/hello-ray"
    results = {"http": http_get(f"{base}/chat", "/hello-ray/chat")}
    if not direct:
        results.update({
            "fail": http_get(f"{base}/fail", "/hello-ray/fail"),
            "untraced": http_get(f"{base}/chat", "/hello-ray/chat", traced=False),
            "item": http_get(f"{base}/items/7", "/hello-ray/items/7"),
            "ignored": http_options(f"{base}/chat"),
        })
        if hasattr(DeploymentHandle, "dispatch"):
            results["dispatch"] = http_get(f"{base}/dispatch", "/hello-ray/dispatch")
        if hasattr(DeploymentHandle, "broadcast"):
            results["broadcast"] = http_get(f"{base}/broadcast", "/hello-ray/broadcast")
        handle = serve.get_deployment_handle("Downstream", app_name="default")
        ctx = get_context()
        with ctx.new_entry_span(op="/driver/handle"):
            value = handle.hello.remote("driver").result()
            results["handle"] = {"trace": str(ctx.segment.related_traces[0]), "body": value}
        ctx = get_context()
        with ctx.new_entry_span(op="/driver/passed-on"):  # a response passed to another call, never awaited
            inner = handle.hello.remote("inner")
            value = handle.hello.remote(inner).result()
            del inner  # dropped: its exit span ends now
            results["passed_on"] = {"trace": str(ctx.segment.related_traces[0]), "body": value}
        batch = []  # three requests, three traces, served by one @serve.batch call
        for i in range(3):
            ctx = get_context()
            with ctx.new_entry_span(op=f"/driver/batch/{i}"):
                batch.append((str(ctx.segment.related_traces[0]), handle.batched.remote(i)))
        results["batch"] = [{"trace": trace, "body": response.result()} for trace, response in batch]
    print(json.dumps(results), flush=True)
    time.sleep(2)  # Ray kills workers at shutdown: let their reporters send the last batch
    serve.shutdown()
    ray.shutdown()
    agent.stop()


if __name__ == "__main__":
    main()
