"""Ray Core driver for the tests: the agent is started here only; workers get it through ray.init().

Each scenario runs inside an entry span and prints {"scenario": {"trace": id, "value": ...}} as JSON.
"""

from __future__ import annotations

import json
import sys
import time

import ray

from skywalking import agent, config
from skywalking.trace.context import get_context


@ray.remote
def square(x):
    return x * x


@ray.remote
def nested(x):
    return ray.get(square.remote(x)) + 1


@ray.remote
def positional_only(x, /, y=1):
    return x + y


@ray.remote
def takes_kwargs(**kwargs):
    return sorted(kwargs)


@ray.remote
def boom():
    raise ValueError("boom")


@ray.remote
def countdown(n):
    yield from range(n, 0, -1)


@ray.remote
class Counter:
    def __init__(self, start=0):
        self.n = start

    def add(self, k):
        self.n += k
        return self.n

    async def async_add(self, k):
        return self.n + k

    def upto(self, n):
        yield from range(n)

    async def async_upto(self, n):
        for i in range(n):
            yield i

    def keywords(self, **kwargs):
        return sorted(kwargs)

    def fail(self):
        raise RuntimeError("actor failure")


def main() -> None:
    config.init(agent_name="ray-core", agent_collector_backend_services=sys.argv[1],
                agent_collector_heartbeat_period=1, agent_logging_level="WARNING")
    late = sys.argv[2:] == ["late-agent"]  # ray.init() first: workers get no agent (callees without the plugin)
    otel = {}
    if sys.argv[2:] == ["ray-otel"]:  # Ray's own OpenTelemetry tracing on as well (its _ray_trace_ctx kwarg)
        otel = {"_tracing_startup_hook": "ray.util.tracing.setup_local_tmp_tracing:setup_tracing"}
    if not late:
        agent.start()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", **otel)
    if late:
        agent.start()
    counter = Counter.remote(1)
    scenarios = {
        "task": lambda: ray.get(square.remote(3)),
        "nested": lambda: ray.get(nested.remote(3)),
        "positional_only": lambda: ray.get(positional_only.remote(2)),
        "kwargs": lambda: ray.get(takes_kwargs.remote(a=1)),
        "task_error": lambda: _error(lambda: ray.get(boom.remote())),
        "generator_task": lambda: [ray.get(r) for r in countdown.remote(3)],
        "actor": lambda: ray.get(counter.add.remote(2)),
        "async_actor": lambda: ray.get(counter.async_add.remote(10)),
        "generator_method": lambda: [ray.get(r) for r in counter.upto.remote(3)],
        "async_generator_method": lambda: [ray.get(r) for r in counter.async_upto.remote(2)],
        "actor_kwargs": lambda: ray.get(counter.keywords.remote(b=2)),
        "actor_error": lambda: _error(lambda: ray.get(counter.fail.remote())),
        "actor_creation": _fresh_actor,
    }
    if otel:  # Ray 2.60's own tracing breaks these, agent or not: `yield from` generators (it sends values
        # into them) and async generator methods (it passes _ray_trace_ctx to a method that lacks it)
        for name in ("generator_task", "generator_method", "async_generator_method"):
            del scenarios[name]
    results = {}
    for name, run in scenarios.items():
        ctx = get_context()
        with ctx.new_entry_span(op=f"/scenario/{name}"):
            value = run()
            results[name] = {"trace": str(ctx.segment.related_traces[0]), "value": value}
    print(json.dumps(results), flush=True)
    time.sleep(2)  # Ray kills workers at shutdown: let their reporters send the last batch
    ray.shutdown()
    agent.stop()


_KEEP = []


def _fresh_actor():
    fresh = Counter.remote(5)  # held: before 2.48 an actor method keeps only a weak reference to its handle
    value = ray.get(fresh.add.remote(1))
    # From 2.48 an actor whose last handle goes away leaves its task loop and its worker flushes on the way
    # out (tested here, as the handle is dropped now); before, Ray force-kills it within milliseconds, which
    # is the documented loss window, so it is kept alive until the end of the run.
    if tuple(int(p) for p in ray.__version__.split(".")[:2]) < (2, 48):
        _KEEP.append(fresh)
    return value


def _error(call):
    try:
        call()
    except Exception as e:  # RayTaskError wraps the remote exception
        return type(e).__name__
    return None


if __name__ == "__main__":
    main()
