"""Ray's dashboard is an aiohttp server (aiohttp 3.14 with Ray 2.60): with the agent loaded into every Ray process
(``sw-python run``), it keeps answering, and its requests are traced by sw_aiohttp's server side."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.protocol.procs import Collector, clean_env, wait_for
from tests.ray.driver import json_lines, run_with_retries

DRIVER = Path(__file__).parent / "apps" / "dashboard_driver.py"


@pytest.mark.parametrize("system", [True, False], ids=["ray-processes-traced", "default"])
def test_dashboard_keeps_working_with_the_agent_in_every_ray_process(system: bool) -> None:
    """By default Ray's own processes are left alone; ``plugin_ray_trace_system_processes`` traces them too."""
    pytest.importorskip("aiohttp")
    collector = Collector()
    try:
        env = clean_env(SW_AGENT_NAME="ray-dashboard", SW_AGENT_COLLECTOR_BACKEND_SERVICES=collector.grpc,
                        SW_AGENT_LOGGING_LEVEL="WARNING", RAY_AUTH_MODE="disabled",
                        SW_PLUGIN_RAY_TRACE_SYSTEM_PROCESSES=str(system).lower())
        sw_python = Path(sys.executable).parent / "sw-python"  # the console script installed with the package
        out = run_with_retries([str(sw_python), "run", sys.executable, str(DRIVER)], env, 300,
                               lambda out: out.returncode == 0 and bool(json_lines(out)))
        result = json.loads(json_lines(out)[-1])
        if result["dashboard"] is None:
            pytest.skip("this Ray has no dashboard (ray[default] not installed)")
        assert set(result["codes"].values()) == {200}, result

        def dashboard_entry() -> dict | None:
            for seg in collector.api("/api/segments?service=ray-dashboard"):
                entry = seg["spans"][-1]
                if entry["operationName"] == "/api/version" and entry["componentId"] == 7008:
                    return entry
            return None

        if not system:  # the driver's own segments arrived: the dashboard's would have too (see the other case)
            wait_for(lambda: collector.api("/api/segments?service=ray-dashboard"), what="the driver's segments")
            collector.settled()
            assert [s for seg in collector.api("/api/segments") for s in seg["spans"] if s["componentId"] == 7008] == []
            return
        entry = wait_for(dashboard_entry, what="the dashboard's /api/version entry span")
        assert entry["spanType"] == "Entry" and not entry["isError"]
        tags = {t["key"]: t["value"] for t in entry["tags"]}
        assert tags["http.status_code"] == "200" and tags["http.method"] == "GET"
    finally:
        collector.stop()
