"""Running a Ray driver script as a process, with retries: starting Ray on a loaded 2-core machine occasionally
fails for reasons outside the code under test (the GCS or the raylet misses Ray's 30 s start-up wait). Every
attempt's output is shown if all fail."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.protocol.procs import ROOT, clean_env

# the GCS port wait is Ray's one start-up timeout that can be raised (the raylet's 30 s is fixed)
RAY_START_ENV = {"RAY_gcs_server_port_wait_time_s": "120"}
ATTEMPTS = 3


def _run(cmd: Sequence[str], env: dict[str, str], timeout: float) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run ``cmd`` (a process that starts Ray) to its end; its result and its pid."""
    proc = subprocess.Popen(list(cmd), env={**RAY_START_ENV, **env}, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        err += f"\n(killed after {timeout} s)"
    return subprocess.CompletedProcess(list(cmd), proc.returncode, out, err), proc.pid


def _kill_group(pid: int) -> None:
    """Kill what is left of a failed attempt: Ray makes the driver a process group leader and reaps the group on
    its own, but asynchronously, and the next attempt must not meet this one's GCS, raylet or dashboard."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # it never led a group (Ray did not start), or the group is gone already


def run_with_retries(cmd: Sequence[str], env: dict[str, str], timeout: float,
                     done: Callable[[subprocess.CompletedProcess[str]], bool],
                     attempts: int = ATTEMPTS) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` until ``done(result)``; AssertionError with every attempt's output otherwise."""
    failures = []
    for attempt in range(attempts):
        if attempt:
            time.sleep(3)
        out, pid = _run(cmd, env, timeout)
        if done(out):
            return out
        _kill_group(pid)
        failures.append(f"exit {out.returncode}\n{out.stdout[-2000:]}\n{out.stderr[-5000:]}")
    raise AssertionError("\n----- next attempt -----\n".join(failures))


def json_lines(out: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in out.stdout.splitlines() if line.startswith(("{", "["))]


def run_driver(script: Path, *args: str, timeout: float = 400, attempts: int = ATTEMPTS, **env: str) -> Any:
    """Run ``script`` with ``args`` (and extra environment ``env``); return the JSON of its last JSON line."""
    out = run_with_retries([sys.executable, str(script), *args], clean_env(**env), timeout,
                           lambda out: out.returncode == 0 and bool(json_lines(out)), attempts)
    return json.loads(json_lines(out)[-1])
