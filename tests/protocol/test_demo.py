"""The README's demo command works: two services, one trace, nothing OAP 6.6.0 would drop."""

from __future__ import annotations

import subprocess
import sys

from tests.protocol.procs import ROOT, clean_env


def test_demo_prints_one_linked_trace() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py")], env=clean_env(), cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    tree = [line.strip() for line in lines if line.startswith("  ")]
    assert [line.split()[:3] for line in tree] == [
        ["python-gateway", "Entry", "/chat"], ["python-gateway", "Exit", "/generate"],
        ["llm-backend", "Entry", "/generate"], ["llm-backend", "Local", "llm/generate"]]
    assert "(2 segments; services: llm-backend, python-gateway)" in out.stdout
    assert "segments OAP 6.6.0 would drop: 0" in out.stdout
