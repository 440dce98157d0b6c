"""Running a Ray driver script as a process, with one retry: starting Ray on a loaded 2-core machine
occasionally fails for reasons outside the code under test (both outputs are shown if both fail)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.protocol.procs import ROOT, clean_env


def run_driver(script: Path, *args: str, timeout: float = 400, attempts: int = 2, **env: str) -> Any:
    """Run ``script`` with ``args`` (and extra environment ``env``); return the JSON of its last JSON line."""
    failures = []
    for _ in range(attempts):
        out = subprocess.run([sys.executable, str(script), *args], env=clean_env(**env), cwd=ROOT,
                             capture_output=True, text=True, timeout=timeout)
        lines = [line for line in out.stdout.splitlines() if line.startswith(("{", "["))]
        if out.returncode == 0 and lines:
            return json.loads(lines[-1])
        failures.append(f"exit {out.returncode}\n{out.stdout[-2000:]}\n{out.stderr[-5000:]}")
    raise AssertionError("\n----- next attempt -----\n".join(failures))
