"""Web framework servers (Flask on werkzeug, Django on wsgiref and on uvicorn, aiohttp): a request from a caller
that sends sw6 as a SkyWalking 6.6.0 service would, which calls a downstream, and one untraced request whose
view raises; checked against expected/<framework>.json."""

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


def check_front(app: list[str], env: dict[str, str], expected: str, segments: int) -> None:
    """Start the back end, the collector and the front ``app`` (a command; ``env`` adds SW_* settings), send it
    ``/items/7?q=1`` from a caller that sends sw6 and an untraced ``/boom``, and check the segments received
    against ``expected/<expected>``."""
    collector = Collector()
    procs: list[Proc] = []
    try:
        back, back_port = start("back", "plugin-back", collector.grpc)
        procs.append(back)
        front = Proc(app + [f"http://127.0.0.1:{back_port}"],
                     clean_env(SW_AGENT_COLLECTOR_BACKEND_SERVICES=collector.grpc, SW_AGENT_REGISTER_WAIT="15", **env),
                     "ready port=")
        procs.append(front)
        front_port = int(front.ready_line.split("=")[1])
        caller = Service("upstream-java", collector.grpc)
        procs.append(caller)
        assert caller.call(next=f"http://127.0.0.1:{front_port}/items/7?q=1")["downstream"]["item"] == 7
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(f"http://127.0.0.1:{front_port}/boom", timeout=10)
        assert failed.value.code == 500

        received = collector.segments(segments)
        expect.check(expect.load(HERE / "expected" / expected, front=front_port, back=back_port), received)
        collector.settled()
        assert collector.api("/api/drops") == []
    finally:
        for proc in procs:
            proc.stop()
        collector.stop()


@pytest.mark.parametrize(("framework", "needs", "expected"), [
    ("flask", ("flask",), "flask.json"),
    ("django", ("django",), "django.json"),
    ("django-asgi", ("django", "uvicorn"), "django-asgi.json"),
    ("aiohttp", ("aiohttp",), "aiohttp-server.json"),
])
def test_framework_entry_spans(framework: str, needs: tuple[str, ...], expected: str) -> None:
    for module in needs:
        pytest.importorskip(module)
    check_front([sys.executable, str(HERE / "apps" / "web_app.py"), framework], {"SW_AGENT_NAME": "plugin-web"},
                expected, 5 if framework == "django-asgi" else 4)
