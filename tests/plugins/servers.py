"""Finding the real servers the plugin tests run against: each ``tools/<name>-server.sh`` prints what to start
(installing Debian's package when the machine has none). Without a server a test skips, or fails when CI or the
server's ``SW_REQUIRE_<NAME>`` variable is set, so that CI cannot pass by skipping."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest


def required(variable: str) -> bool:
    """Whether a missing server fails the tests (CI, or ``variable``, set to anything but a false value)."""
    return any(os.environ.get(name, "").lower() not in ("", "0", "false", "no") for name in ("CI", variable))


def unavailable(what: str, variable: str, why: str) -> NoReturn:
    """Skip the test for want of ``what`` (a server), or fail it when ``required(variable)``."""
    if required(variable):
        pytest.fail(f"no {what} and CI / {variable} is set: {why}", pytrace=False)
    pytest.skip(f"no {what}: {why}")


def server_path(script: Path, what: str, variable: str) -> str:
    """The last line ``script`` prints (a binary or directory); ``unavailable`` when it prints none."""
    try:
        done = subprocess.run([str(script)], capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        why = f"{script.name} did not run: {e}"
    else:
        lines = done.stdout.split()
        if done.returncode == 0 and lines:
            return lines[-1]
        why = (done.stderr.strip().splitlines() or [f"{script.name} exited with {done.returncode}"])[-1]
    unavailable(what, variable, why)
