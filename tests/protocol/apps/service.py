"""A small HTTP service traced through the public API, for the protocol tests (run as a process).

GET /call[?next=<url>][&fail=1]: an entry span continuing the caller's sw6/sw8 headers, and for
``next`` an exit span whose injected headers go with the downstream request. Answers JSON with the
trace id it saw. GET /stats: ``agent.stats()``. GET /load?n=<n>: n segments of one local span each, then the
stats. GET /stop: stops the agent and answers its final counts. Configured by SW_* env vars; prints
``ready port=<n>`` once listening. SW_TEST_LOAD=<n> makes it trace n local spans per second.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from skywalking import Component, Layer, agent, config
from skywalking.trace.carrier import Carrier
from skywalking.trace.context import get_context
from skywalking.trace.tags import TagHttpMethod


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/stats":
            self._reply(200, agent.stats())
            return
        if url.path == "/load":  # n local-span segments, made now
            for _ in range(int(parse_qs(url.query).get("n", ["1"])[0])):
                with get_context().new_local_span("/load"):
                    pass
            self._reply(200, agent.stats())
            return
        if url.path == "/stop":  # stop the agent (flush, at most 5 s); answers its final counts
            reporter = agent.agent.reporter
            agent.stop()
            self._reply(200, reporter.stats() if reporter is not None else {})
            return
        query = parse_qs(url.query)
        carrier = Carrier()
        for item in carrier:
            item.val = self.headers.get(item.key)
        ctx = get_context()
        body: dict = {"service": config.agent_name}
        code = 200
        try:
            with ctx.new_entry_span(op=url.path, carrier=carrier) as span:
                span.layer, span.component = Layer.Http, Component.General
                span.tag(TagHttpMethod("GET"))
                body["trace_id"] = str(ctx.segment.related_traces[0])
                nxt = query.get("next", [None])[0]
                if nxt:
                    target = urlparse(nxt)
                    with ctx.new_exit_span(op=target.path, peer=target.netloc, component=Component.General) as out:
                        out.layer = Layer.Http
                        request = urllib.request.Request(nxt)
                        body["headers_sent"] = {item.key: item.val for item in out.inject()}
                        for key, value in body["headers_sent"].items():
                            request.add_header(key, value)
                        with urllib.request.urlopen(request, timeout=10) as resp:
                            body["downstream"] = json.load(resp)
                if query.get("fail"):
                    raise RuntimeError("requested failure")
        except RuntimeError as e:
            code, body["error"] = 500, str(e)
        self._reply(code, body)


def load(per_second: int) -> None:
    while True:
        with get_context().new_local_span("/load"):
            pass
        time.sleep(1 / per_second)


def main() -> None:
    if not os.environ.get("SW_TEST_NO_AGENT"):  # the no-agent baseline of bench/bench_faults.py
        agent.start()
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("SW_TEST_PORT", "0"))), Handler)
    if os.environ.get("SW_TEST_LOAD"):
        threading.Thread(target=load, args=(int(os.environ["SW_TEST_LOAD"]),), daemon=True).start()
    print(f"ready port={server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        agent.stop()


if __name__ == "__main__":
    sys.exit(main())
