"""Switching the agent on without code: the runtime_env that ``ray.init()`` passes on, and the start-up check
of ``company_skywalking.pth``."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from skywalking import config
from skywalking.bootstrap import autostart, ray_system_process
from skywalking.plugins.sw_ray.activation import HOOK, SETUP_HOOK, USER_HOOK_ENV, with_tracing

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def configured() -> Any:
    saved = (config.agent_name, config.agent_collector_backend_services)
    config.agent_name, config.agent_collector_backend_services = "job", "oap:11800"
    yield
    config.agent_name, config.agent_collector_backend_services = saved


def test_runtime_env_gets_the_hook_and_the_configuration(configured: Any) -> None:
    env = with_tracing({"pip": ["x"]}, {})
    assert env[HOOK] == SETUP_HOOK and env["pip"] == ["x"]
    assert env["env_vars"]["SW_AGENT_NAME"] == "job"
    assert env["env_vars"]["SW_AGENT_COLLECTOR_BACKEND_SERVICES"] == "oap:11800"


def test_a_submitted_jobs_values_win_and_nothing_conflicts(configured: Any) -> None:
    """Ray refuses ``ray.init()`` when the driver's runtime_env repeats a field or variable of the job's."""
    job = {"env_vars": {"SW_AGENT_COLLECTOR_BACKEND_SERVICES": "oap:11800", "OTHER": "1"}, HOOK: SETUP_HOOK}
    env = with_tracing(None, job)
    assert HOOK not in env  # the job already runs it
    assert env["env_vars"] == {"SW_AGENT_NAME": "job"}  # only what the job did not set
    foreign = with_tracing(None, {HOOK: "their.hook"})
    assert HOOK not in foreign and USER_HOOK_ENV not in foreign.get("env_vars", {})


def test_the_callers_own_values_win(configured: Any) -> None:
    env = with_tracing({"env_vars": {"SW_AGENT_NAME": "mine"}, HOOK: "my.hook"}, {})
    assert env["env_vars"]["SW_AGENT_NAME"] == "mine"
    assert (env[HOOK], env["env_vars"][USER_HOOK_ENV]) == (SETUP_HOOK, "my.hook")  # ours first, then theirs


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, False),
    ({"SW_AGENT_AUTOSTART": "true"}, True),
    ({"SW_AGENT_AUTOSTART": "false"}, False),
    ({autostart.JOB_CONFIG_ENV: json.dumps({"runtime_env": {HOOK: SETUP_HOOK}})}, True),
    ({autostart.JOB_CONFIG_ENV: json.dumps({"runtime_env": {"env_vars": {"X": SETUP_HOOK}}})}, False),
    ({autostart.JOB_CONFIG_ENV: "not json " + SETUP_HOOK}, False),
    ({"SW_AGENT_AUTOSTART": "false", autostart.JOB_CONFIG_ENV: json.dumps({"runtime_env": {HOOK: SETUP_HOOK}})},
     False),
])
def test_autostart_decision(environ: dict[str, str], expected: bool) -> None:
    assert autostart.wanted(environ) is expected


def _started_in_child(**env: str) -> bool:
    code = "import sys; m = sys.modules.get('skywalking.agent'); print(bool(m and m.started()))"
    base = {"PATH": "/usr/bin:/bin", "SW_AGENT_COLLECTOR_BACKEND_SERVICES": "127.0.0.1:1"}
    out = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True,
                         timeout=60, cwd="/")
    return out.stdout.strip() == "True"


def test_the_pth_starts_the_agent_at_interpreter_start_up_only_when_asked() -> None:
    """``make venv`` puts the .pth where a wheel install puts it; a plain interpreter stays untouched."""
    assert _started_in_child(SW_AGENT_AUTOSTART="true")
    assert not _started_in_child()


def test_the_wheel_puts_the_pth_at_the_root_of_site_packages(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                          str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    (wheel,) = tmp_path.glob("company_skywalking-*.whl")
    with zipfile.ZipFile(wheel) as whl:
        assert whl.read("company_skywalking.pth") == (ROOT / "skywalking/bootstrap/company_skywalking.pth").read_bytes()


def test_rays_own_programs_are_told_from_workers_and_user_scripts() -> None:
    ray_dir = Path(pytest.importorskip("ray").__file__).parent
    assert ray_system_process(str(ray_dir / "dashboard" / "dashboard.py"))
    assert ray_system_process(str(ray_dir / "_private" / "runtime_env" / "agent" / "main.py"))
    assert not ray_system_process(str(ray_dir / "_private" / "workers" / "default_worker.py"))
    assert not ray_system_process(str(ROOT / "examples" / "demo.py"))
    assert not ray_system_process("-c")


def test_a_script_is_no_ray_program_where_ray_is_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """`sw-python run python app.py` without Ray: the check used to raise AttributeError (found by mypy)."""
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    assert not ray_system_process(str(ROOT / "examples" / "demo.py"))
