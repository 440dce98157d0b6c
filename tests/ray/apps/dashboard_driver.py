"""Run under ``sw-python run`` (every Ray process started from here loads the agent, the dashboard's aiohttp
server included): starts Ray with its dashboard on 127.0.0.1 and calls three of its HTTP endpoints.
Prints a JSON line with the status codes, or ``{"dashboard": null}`` when this Ray has no dashboard."""

from __future__ import annotations

import json
import urllib.request

import ray

PATHS = ("/api/version", "/api/cluster_status", "/nodes?view=summary")


def main() -> None:
    ctx = ray.init(address="local", include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=0, num_cpus=1)
    try:
        url = getattr(ctx, "dashboard_url", None)
        if not url:
            print(json.dumps({"dashboard": None}), flush=True)
            return
        codes = {}
        for path in PATHS:
            with urllib.request.urlopen(f"http://{url}{path}", timeout=30) as resp:
                resp.read()
                codes[path] = resp.status
        print(json.dumps({"dashboard": url, "codes": codes}), flush=True)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
