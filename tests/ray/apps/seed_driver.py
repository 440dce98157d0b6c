"""Runs the user's original Serve code (tests/fixtures/seed_demo.py, collector address substituted) with no
agent in the driver: the deployments start it themselves in __init__, as the user wrote them."""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from pathlib import Path

import ray
from ray import serve

collector, port, workdir = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
source = (Path(__file__).resolve().parents[2] / "fixtures" / "seed_demo.py").read_text()
(workdir / "seed_app.py").write_text(source.replace("localhost:11800", collector))
sys.path.insert(0, str(workdir))
import seed_app  # noqa: E402

ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR",
         runtime_env={"env_vars": {"PYTHONPATH": str(workdir)}})
serve.start(http_options={"host": "127.0.0.1", "port": port})
small = {"ray_actor_options": {"num_cpus": 0.1}}
serve.run(seed_app.Upstream.options(**small).bind(seed_app.Downstream.options(**small).bind()),
          route_prefix="/hello-ray")
answers = []
for _ in range(8):  # the replicas register with the collector on their own; a few requests may be untraced
    request = urllib.request.Request(f"http://127.0.0.1:{port}/hello-ray/upstream", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=30) as resp:
        answers.append(json.load(resp))
    time.sleep(0.5)
print(json.dumps(answers), flush=True)
time.sleep(2)  # Ray kills workers at shutdown: let their reporters send the last batch
serve.shutdown()
ray.shutdown()
