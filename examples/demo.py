"""Demo (`make demo`): a Ray Serve application traced end to end into the bundled local collector.

    upstream-gateway ──HTTP + sw6──▶ Serve proxy ──▶ ray-upstream (FastAPI ingress)
    (stands in for a Java service                      ├─ Ray Core task  tokenize
     with a SkyWalking 6.6.0 agent)                    ├─ actor call     Usage.add
                                                       └─ handle call ─▶ ray-downstream.generate

Every process reports natively over the SkyWalking 6.6.0 protocol (register, ping, collect) to the bundled
collector, which checks OAP 6.6.0's acceptance rules; the demo prints the one linked trace it stored. The
deployments contain no SkyWalking code: the agent is started once in the Ray driver (examples/ray_app.py).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from skywalking import Component, Layer, agent, config
from skywalking.collector.process import CollectorProcess
from skywalking.trace.context import get_context, suppress_tracing
from skywalking.trace.tags import TagHttpMethod, TagHttpURL

HERE = Path(__file__).resolve().parent
SEGMENTS = 5  # gateway, ray-upstream, the task's worker, the actor, ray-downstream


def get(url: str) -> object:
    with suppress_tracing(), urllib.request.urlopen(url, timeout=5) as resp:  # polling is not part of the app
        return json.load(resp)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call_with_sw6(url: str) -> tuple[str, dict]:
    """What the upstream service does: an exit span, and the sw6 header a 6.6.0 Java agent would send."""
    ctx = get_context()
    with ctx.new_entry_span(op="/gateway/chat") as entry:
        entry.layer, entry.component = Layer.Http, Component.General
        with ctx.new_exit_span(op="/hello-ray/upstream", peer=url.split("/")[2], component=Component.General) as call:
            call.layer = Layer.Http
            call.tag(TagHttpMethod("POST")).tag(TagHttpURL(url))
            request = urllib.request.Request(url, data=b"", method="POST")
            for item in call.inject():
                print(f"sending {item.key}: {item.val}")
                request.add_header(item.key, item.val)
            with urllib.request.urlopen(request, timeout=60) as resp:
                body = json.load(resp)
        return str(ctx.segment.related_traces[0]), body


def wait_for_trace(http_addr: str, trace_id: str) -> dict | None:
    """The trace once it has every expected segment and has stopped growing for a second."""
    deadline = time.monotonic() + 60
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        try:
            trace = get(f"http://{http_addr}/api/traces/{trace_id}")
            count = len(trace.get("segments", [])) if isinstance(trace, dict) else 0
            if count != last:
                last, since = count, time.monotonic()
            elif count >= SEGMENTS and time.monotonic() - since > 1 and not get(f"http://{http_addr}/api/pending"):
                return trace  # type: ignore[return-value]
        except OSError:
            pass
        time.sleep(0.3)
    return None


def main() -> int:
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    procs: list[subprocess.Popen[str]] = []
    collector: CollectorProcess | None = None
    try:
        collector = CollectorProcess("--no-print", "--log-level", "WARNING", env=env)
        grpc_addr, http_addr = collector.grpc, collector.http
        print(f"bundled collector: gRPC {grpc_addr} (SkyWalking 6.6.0 protocol), JSON API http://{http_addr}")
        port = free_port()
        print("starting Ray and the Serve application (about half a minute on 2 cores) ...", flush=True)
        app = subprocess.Popen([sys.executable, str(HERE / "ray_app.py"), grpc_addr, str(port)], env=env,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(app)
        if (app.stdout.readline() or "").strip() != "ready":  # type: ignore[union-attr]
            print("the Ray application did not start")
            return 1
        # the gateway's very first call carries the sw6 header: wait for its instance id (Ray needs no wait)
        config.init(agent_name="upstream-gateway", agent_collector_backend_services=grpc_addr,
                    agent_register_wait=15, agent_logging_level="WARNING")
        agent.start()
        trace_id, body = call_with_sw6(f"http://127.0.0.1:{port}/hello-ray/upstream")
        print(f"response: {body}\ntrace id: {trace_id}")
        agent.stop()
        trace = wait_for_trace(http_addr, trace_id)
        print("\nthe trace as the collector stored it (OAP 6.6.0 acceptance rules checked):\n")
        print(trace["tree"] if trace else f"fewer than {SEGMENTS} segments arrived within 60 s")
        drops = get(f"http://{http_addr}/api/drops")
        print(f"\nsegments OAP 6.6.0 would drop: {len(drops)}")  # type: ignore[arg-type]
        return 0 if trace and not drops else 1
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                if proc.stdin:
                    proc.stdin.close()  # the Ray app shuts down cleanly when its stdin closes
                    try:
                        proc.wait(60)
                    except subprocess.TimeoutExpired:
                        pass
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
        if collector is not None:
            collector.stop()


if __name__ == "__main__":
    sys.exit(main())
