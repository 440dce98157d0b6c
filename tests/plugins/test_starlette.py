"""sw_starlette with a real FastAPI app on uvicorn (route templates on), called with sw6 by a traced caller;
checked against expected/starlette.json."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.plugins import expect
from tests.plugins.test_http import start
from tests.protocol.procs import Collector, Proc, Service, clean_env

HERE = Path(__file__).parent


def test_fastapi_entry_spans_continue_the_caller() -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    collector = Collector()
    procs: list[Proc] = []
    try:
        back, back_port = start("back", "plugin-back", collector.grpc)
        procs.append(back)
        env = clean_env(SW_AGENT_NAME="plugin-asgi", SW_AGENT_COLLECTOR_BACKEND_SERVICES=collector.grpc,
                        SW_AGENT_REGISTER_WAIT="15", SW_PLUGIN_STARLETTE_ROUTE_TEMPLATE="true")
        front = Proc([sys.executable, str(HERE / "apps" / "asgi_app.py"), f"http://127.0.0.1:{back_port}"], env,
                     "ready port=")
        procs.append(front)
        front_port = int(front.ready_line.split("=")[1])
        caller = Service("upstream-java", collector.grpc)
        procs.append(caller)
        assert caller.call(next=f"http://127.0.0.1:{front_port}/items/7?q=1")["downstream"]["item"] == 7
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(f"http://127.0.0.1:{front_port}/boom", timeout=10)
        assert failed.value.code == 500

        segments = collector.segments(4)
        expect.check(expect.load(HERE / "expected" / "starlette.json", front=front_port, back=back_port), segments)
        collector.settled()
        assert collector.api("/api/drops") == []
    finally:
        for proc in procs:
            proc.stop()
        collector.stop()
