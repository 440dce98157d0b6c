"""HTTP plugins with real servers on 127.0.0.1 and a caller that sends sw6 as a SkyWalking 6.6.0 service would:
sw_http_server (http.server, wsgiref), sw_urllib_request or sw_requests, sw_logging; checked against
expected/<client>.json."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.plugins import expect
from tests.protocol.procs import Collector, Proc, Service, clean_env

HERE = Path(__file__).parent
APP = HERE / "apps" / "stdlib_app.py"


def start(mode: str, name: str, backend: str, *args: str) -> tuple[Proc, int]:
    env = clean_env(SW_AGENT_NAME=name, SW_AGENT_COLLECTOR_BACKEND_SERVICES=backend, SW_AGENT_REGISTER_WAIT="15",
                    SW_AGENT_INSTANCE_NAME=f"{name}-1")
    proc = Proc([sys.executable, str(APP), mode, *args], env, "ready port=")
    return proc, int(proc.ready_line.split("=")[1])


@pytest.mark.parametrize(("client", "expected"), [("urllib", "stdlib.json"), ("requests", "requests.json"),
                                                  ("urllib3", "urllib3.json"), ("httpx", "httpx.json"),
                                                  ("httpx-async", "httpx.json"), ("aiohttp", "aiohttp.json")])
def test_http_servers_and_clients(client: str, expected: str) -> None:
    if client != "urllib":
        pytest.importorskip(client.split("-")[0])
    collector = Collector()
    procs: list[Proc] = []
    try:
        back, back_port = start("back", "plugin-back", collector.grpc)
        procs.append(back)
        mode = "front" if client == "urllib" else f"front-{client}"
        front, front_port = start(mode, "plugin-front", collector.grpc, f"http://127.0.0.1:{back_port}")
        procs.append(front)
        caller = Service("upstream-java", collector.grpc)  # traced by hand, sends sw6 like a Java agent
        procs.append(caller)
        caller.call(next=f"http://127.0.0.1:{front_port}/front?q=1")
        with pytest.raises(urllib.error.HTTPError) as failed:  # an untraced caller; the downstream answers 500
            urllib.request.urlopen(f"http://127.0.0.1:{front_port}/front-fail", timeout=10)
        assert failed.value.code == 502

        segments = collector.segments(5)
        expect.check(expect.load(HERE / "expected" / expected, front=front_port, back=back_port), segments)
        # sw_logging: the back end's log lines carry the trace ids of the requests they were written in
        traces = {seg["traceId"] for seg in segments if seg["service"] == "plugin-back"}
        logged = {line.split()[1].removeprefix("tid=") for line in back.stderr if line.startswith("log tid=")}
        assert logged == traces and len(traces) == 2, (logged, traces)
        collector.settled()
        assert collector.api("/api/drops") == []
    finally:
        for proc in procs:
            proc.stop()
        collector.stop()
