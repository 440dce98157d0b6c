"""The README's demo command works: a Ray Serve app traced end to end into the bundled collector."""

from __future__ import annotations

import sys

from tests.protocol.procs import ROOT, clean_env
from tests.ray.driver import run_with_retries


def test_demo_prints_one_linked_trace_through_ray() -> None:
    # retried: starting Ray on a loaded 2-core machine occasionally fails by itself (tests/ray/driver.py)
    out = run_with_retries([sys.executable, str(ROOT / "examples" / "demo.py")], clean_env(), 400,
                           lambda out: out.returncode == 0)
    tree = [line.strip().split()[:3] for line in out.stdout.splitlines() if line.startswith("  ")]
    for line in (["upstream-gateway", "Entry", "/gateway/chat"], ["upstream-gateway", "Exit", "/hello-ray/upstream"],
                 ["ray-upstream", "Entry", "POST:/hello-ray/upstream"],
                 ["ray-upstream", "Exit", "Ray/Task/tokenize"], ["ray-app", "Entry", "Ray/Task/tokenize"],
                 ["ray-upstream", "Exit", "Ray/Actor/Usage.add"], ["ray-app", "Entry", "Ray/Actor/Usage.add"],
                 ["ray-upstream", "Exit", "Ray/Serve/default/downstream.generate"],
                 ["ray-downstream", "Entry", "Ray/Serve/default/downstream.generate"]):
        assert line in tree, out.stdout
    depth = {tuple(line.strip().split()[:3]): len(line) - len(line.lstrip()) for line in out.stdout.splitlines()
             if line.startswith("  ")}
    assert depth[("ray-downstream", "Entry", "Ray/Serve/default/downstream.generate")] > depth[
        ("ray-upstream", "Entry", "POST:/hello-ray/upstream")] > depth[("upstream-gateway", "Entry", "/gateway/chat")]
    assert "segments OAP 6.6.0 would drop: 0" in out.stdout
    assert "sending sw6: 1-" in out.stdout
