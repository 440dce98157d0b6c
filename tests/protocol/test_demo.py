"""The README's demo command works: a Ray Serve app traced end to end into the bundled collector."""

from __future__ import annotations

import subprocess
import sys

from tests.protocol.procs import ROOT, clean_env


def test_demo_prints_one_linked_trace_through_ray() -> None:
    for _ in range(2):  # one retry: starting Ray on a loaded 2-core machine occasionally fails by itself
        out = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py")], env=clean_env(), cwd=ROOT,
                             capture_output=True, text=True, timeout=400)
        if out.returncode == 0:
            break
    assert out.returncode == 0, out.stdout + out.stderr[-4000:]
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
