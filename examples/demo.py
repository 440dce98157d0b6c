"""Demo (`make demo`): two traced Python services linked by an sw6 header, reporting natively over the
SkyWalking 6.6.0 protocol to the bundled local collector, which prints the joined trace.

    client ──HTTP──▶ python-gateway ──HTTP + sw6──▶ llm-backend
                          │                              │
                          └──── gRPC (v6: register, ping, collect) ────▶ bundled collector ─▶ trace tree

(The Ray Serve version of this demo replaces it once the Ray plugin lands.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

from skywalking import Component, Layer, agent, config
from skywalking.trace.carrier import Carrier
from skywalking.trace.context import get_context
from skywalking.trace.tags import TagHttpMethod, TagHttpURL

ROOT = Path(__file__).resolve().parent.parent


class Handler(BaseHTTPRequestHandler):
    downstream = ""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        carrier = Carrier()
        for item in carrier:
            item.val = self.headers.get(item.key)
        ctx = get_context()
        with ctx.new_entry_span(op=self.path, carrier=carrier) as entry:
            entry.layer, entry.component = Layer.Http, Component.General
            entry.tag(TagHttpMethod("GET"))
            if self.downstream:
                with ctx.new_exit_span(op="/generate", peer=self.downstream, component=Component.General) as call:
                    call.layer = Layer.Http
                    url = f"http://{self.downstream}/generate"
                    call.tag(TagHttpURL(url))
                    request = urllib.request.Request(url)
                    for item in call.inject():
                        request.add_header(item.key, item.val)
                    with urllib.request.urlopen(request, timeout=10) as resp:
                        answer = resp.read()
            else:
                with ctx.new_local_span("llm/generate"):
                    time.sleep(0.02)  # the "model"
                answer = json.dumps({"text": "hello from the model"}).encode()
            trace_id = str(ctx.segment.related_traces[0])
        self.send_response(200)
        self.send_header("X-Trace-Id", trace_id)
        self.end_headers()
        self.wfile.write(answer)


def serve(name: str, collector: str, downstream: str = "") -> ThreadingHTTPServer:
    config.init(agent_name=name, agent_collector_backend_services=collector, agent_register_wait=15,
                agent_logging_level="WARNING")
    agent.start()
    Handler.downstream = downstream
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Thread(target=server.serve_forever, daemon=True).start()
    return server


def child_main(collector: str) -> None:
    server = serve("llm-backend", collector)
    print(f"ready 127.0.0.1:{server.server_address[1]}", flush=True)
    sys.stdin.readline()  # runs until the parent closes our stdin
    agent.stop()


def get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)


def wait_for_trace(http_addr: str, trace_id: str, segments: int) -> dict | None:
    """The trace once all its segments are accepted (the collector holds new names ~1 s, like OAP)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            trace = get(f"http://{http_addr}/api/traces/{trace_id}")
        except OSError:
            trace = None
        if isinstance(trace, dict) and len(trace.get("segments", [])) >= segments \
                and not get(f"http://{http_addr}/api/pending"):
            return trace
        time.sleep(0.2)
    return None


def main() -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    collector = subprocess.Popen([sys.executable, "-m", "skywalking.collector", "--grpc-port", "0", "--http-port",
                                  "0", "--no-print", "--log-level", "WARNING"], stdout=subprocess.PIPE, text=True,
                                 env=env)
    children = [collector]
    try:
        ready = collector.stdout.readline().split()  # type: ignore[union-attr]
        addresses = dict(p.split("=", 1) for p in ready[2:])
        grpc_addr, http_addr = addresses["grpc"], addresses["http"]
        print(f"bundled collector listening on {grpc_addr} (gRPC, SkyWalking 6.6.0 protocol)")
        backend = subprocess.Popen([sys.executable, __file__, "--child", grpc_addr], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True, env=env)
        children.append(backend)
        backend_addr = backend.stdout.readline().split()[1]  # type: ignore[union-attr]
        gateway = serve("python-gateway", grpc_addr, backend_addr)
        url = f"http://127.0.0.1:{gateway.server_address[1]}/chat"
        with urllib.request.urlopen(url, timeout=10) as resp:
            trace_id = resp.headers["X-Trace-Id"]
            print(f"GET {url} -> {resp.read().decode()} (trace {trace_id})")
        agent.stop()  # flushes the gateway's segment
        backend.stdin.close()  # type: ignore[union-attr]
        backend.wait(15)
        trace = wait_for_trace(http_addr, trace_id, segments=2)
        print("\nthe trace as the collector stored it (OAP 6.6.0 acceptance rules checked):\n")
        print(trace["tree"] if trace else "trace not complete after 20 s")
        drops = get(f"http://{http_addr}/api/drops")
        print(f"\nsegments OAP 6.6.0 would drop: {len(drops)}")
        return 0 if trace and not drops else 1
    finally:
        for proc in children:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child_main(sys.argv[2])
    else:
        sys.exit(main())
