"""``sw-python`` CLI and ``sitecustomize`` loader, exercised through real subprocesses."""

from __future__ import annotations

import json
import os
import platform
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from skywalking.bootstrap.cli import sw_python

REPO_ROOT = Path(__file__).resolve().parents[2]
LOADER_DIR = REPO_ROOT / "skywalking" / "bootstrap" / "loader"
TIMEOUT = 60
WARNING = "sw-python: warning:"

# Child program: prints whether the agent runs in it, keeps its own output and exit code.
AGENT_PROBE = textwrap.dedent(
    """
    import sys
    from skywalking import agent
    print("started:", agent.started())
    print("probe-stderr", file=sys.stderr)
    sys.exit(3)
    """
)


def make_env(pythonpath: list[str | Path] | None = None, **extra: str) -> dict[str, str]:
    """A clean environment: no inherited SW_*/UWSGI_*/PYTHONPATH, a collector that fails fast."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SW_", "UWSGI_")) and k not in ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME")
    }
    env["SW_AGENT_COLLECTOR_BACKEND_SERVICES"] = "127.0.0.1:1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    paths = [REPO_ROOT] if pythonpath is None else pythonpath
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in paths)
    env.update(extra)
    return env


def run(args: list[str], env: dict[str, str], cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, check=False)


def sw_python_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "sw_python", *args]


def warnings_in(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(WARNING)]


def write_executable(path: Path, source: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\n{textwrap.dedent(source)}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


ENV_DUMP = """
import json, os, sys
keys = [k for k in os.environ if k.startswith(("SW_", "UWSGI_")) or k == "PYTHONPATH"]
print(json.dumps({"argv": sys.argv[1:], "env": {k: os.environ[k] for k in keys},
                  "agent_imported": "skywalking.agent" in sys.modules}))
"""


def dump_env_via_cli(cli_args: list[str], env: dict[str, str]) -> dict:
    proc = run(sw_python_cmd(*cli_args), env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- pure functions (in-process) ------------------------------------------------------------


def test_parse_args() -> None:
    inv = sw_python.parse_args(["-d", "run", "-p", "gunicorn", "-w", "2", "app:app"])
    assert inv.debug and inv.prefork
    assert inv.command == ["gunicorn", "-w", "2", "app:app"]
    inv = sw_python.parse_args(["run", "--", "-weird-name", "-p"])
    assert inv.command == ["-weird-name", "-p"] and not inv.prefork and not inv.debug
    assert sw_python.parse_args(["run", "python", "-d"]).command == ["python", "-d"]
    assert sw_python.parse_args(["--help"]).show_help


def test_prepend_pythonpath_keeps_user_entries_without_duplicates() -> None:
    sep = os.pathsep
    loader = str(LOADER_DIR)
    assert sw_python.prepend_pythonpath(None, loader) == loader
    assert sw_python.prepend_pythonpath("", loader) == loader
    assert sw_python.prepend_pythonpath(f"/a{sep}{loader}{sep}/b", loader) == f"{loader}{sep}/a{sep}/b"


def test_main_usage_error_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert sw_python.main(["run"]) == 2
    assert "usage:" in capsys.readouterr().err


# -- CLI through subprocesses -----------------------------------------------------------------


def test_child_sees_agent_started_and_keeps_output_and_exit_code() -> None:
    proc = run(sw_python_cmd("run", sys.executable, "-c", AGENT_PROBE), make_env())
    assert proc.returncode == 3, proc.stderr
    assert "started: True" in proc.stdout
    assert "probe-stderr" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert warnings_in(proc.stderr) == []


def test_output_and_exit_code_preserved() -> None:
    program = "import sys; print('out-marker'); print('err-marker', file=sys.stderr); sys.exit(7)"
    proc = run(sw_python_cmd("run", sys.executable, "-c", program), make_env())
    assert proc.returncode == 7
    assert proc.stdout.splitlines()[-1] == "out-marker"
    assert "err-marker" in proc.stderr


def test_console_script_if_installed() -> None:
    script = Path(sys.executable).with_name("sw-python")
    if not script.exists():
        pytest.skip("sw-python console script not installed next to sys.executable")
    program = "import os; print(os.environ['PYTHONPATH'].split(os.pathsep)[0]); print('console-ok')"
    proc = run([str(script), "run", sys.executable, "-c", program], make_env())
    assert proc.returncode == 0, proc.stderr
    first_entry, marker = proc.stdout.strip().splitlines()[-2:]
    assert marker == "console-ok"
    assert Path(first_entry).parts[-3:] == ("skywalking", "bootstrap", "loader")


def test_environment_layout() -> None:
    sep = os.pathsep
    user = "/some/user/dir"
    env = make_env([REPO_ROOT, LOADER_DIR, user])
    data = dump_env_via_cli(["run", sys.executable, "-c", ENV_DUMP], env)
    assert data["env"]["PYTHONPATH"] == f"{LOADER_DIR}{sep}{REPO_ROOT}{sep}{user}"
    assert data["env"]["SW_PYTHON_PREFIX"] == os.path.realpath(sys.prefix)
    assert data["env"]["SW_PYTHON_VERSION"] == platform.python_version()
    assert "SW_AGENT_LOGGING_LEVEL" not in data["env"]
    assert "SW_PYTHON_PREFORK" not in data["env"]


def test_debug_flag() -> None:
    proc = run(sw_python_cmd("-d", "run", sys.executable, "-c", ENV_DUMP), make_env())
    assert proc.returncode == 0, proc.stderr
    env = json.loads(proc.stdout.strip().splitlines()[-1])["env"]
    assert env["SW_AGENT_SW_PYTHON_CLI_DEBUG_ENABLED"] == "True"
    assert env["SW_AGENT_LOGGING_LEVEL"] == "DEBUG"
    assert "[sw-python] DEBUG" in proc.stderr
    assert "[sw-python loader] DEBUG" in proc.stderr


def test_user_sitecustomize_still_runs(tmp_path: Path) -> None:
    user_dir = tmp_path / "user"
    user_dir.mkdir()
    # The CLI's own interpreter runs it too (same pid after exec); only the child has SW_PYTHON_VERSION.
    (user_dir / "sitecustomize.py").write_text(
        "import os\nprint('USER-SITE', 'SW_PYTHON_VERSION' in os.environ)\nUSER_MARK = 42\n"
    )
    program = "import sitecustomize; print('PROGRAM', getattr(sitecustomize, 'USER_MARK', None))"
    proc = run(sw_python_cmd("run", sys.executable, "-c", program), make_env([REPO_ROOT, user_dir]))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["USER-SITE False", "USER-SITE True", "PROGRAM 42"]


def test_failing_user_sitecustomize_warns_and_program_runs(tmp_path: Path) -> None:
    user_dir = tmp_path / "user"
    user_dir.mkdir()
    (user_dir / "sitecustomize.py").write_text("raise ValueError('user site broke')\n")
    proc = run(sw_python_cmd("run", sys.executable, "-c", "print('ran')"), make_env([REPO_ROOT, user_dir]))
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[-1] == "ran"
    assert any("user site broke" in w for w in warnings_in(proc.stderr))
    assert "Traceback" not in proc.stderr


def test_two_loader_copies_chain_once(tmp_path: Path) -> None:
    copy_dir = tmp_path / "loader-copy"
    copy_dir.mkdir()
    shutil.copy(LOADER_DIR / "sitecustomize.py", copy_dir / "sitecustomize.py")
    user_dir = tmp_path / "user"
    user_dir.mkdir()
    (user_dir / "sitecustomize.py").write_text("print('USER-SITECUSTOMIZE-RAN')\n")
    env = make_env([LOADER_DIR, copy_dir, REPO_ROOT, user_dir])
    proc = run([sys.executable, "-c", "print('ran')"], env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["USER-SITECUSTOMIZE-RAN", "ran"]
    assert "Traceback" not in proc.stderr and "RecursionError" not in proc.stderr


GRANDCHILD_PROBE = textwrap.dedent(
    """
    import os, subprocess, sys
    print("PYTHONPATH=" + os.environ.get("PYTHONPATH", ""))
    grandchild = "import sys; print('grandchild-loader', 'sitecustomize' in sys.modules"
    grandchild += " and 'bootstrap' in (getattr(sys.modules['sitecustomize'], '__file__', '') or ''))"
    out = subprocess.run([sys.executable, "-c", grandchild], capture_output=True, text=True, timeout=60)
    print(out.stdout.strip())
    """
)


def test_propagate_false_strips_loader_from_child_pythonpath() -> None:
    env = make_env(SW_AGENT_SW_PYTHON_BOOTSTRAP_PROPAGATE="False")
    proc = run(sw_python_cmd("run", sys.executable, "-c", GRANDCHILD_PROBE), env)
    assert proc.returncode == 0, proc.stderr
    pythonpath = next(line for line in proc.stdout.splitlines() if line.startswith("PYTHONPATH="))
    entries = pythonpath.removeprefix("PYTHONPATH=").split(os.pathsep)
    assert str(LOADER_DIR) not in entries
    assert str(REPO_ROOT) in entries
    assert "grandchild-loader False" in proc.stdout


def test_propagate_default_reaches_grandchildren() -> None:
    proc = run(sw_python_cmd("run", sys.executable, "-c", GRANDCHILD_PROBE), make_env())
    assert proc.returncode == 0, proc.stderr
    assert "grandchild-loader True" in proc.stdout


def test_propagate_false_child_itself_instrumented() -> None:
    env = make_env(SW_AGENT_SW_PYTHON_BOOTSTRAP_PROPAGATE="false")
    proc = run(sw_python_cmd("run", sys.executable, "-c", AGENT_PROBE), env)
    assert proc.returncode == 3, proc.stderr
    assert "started: True" in proc.stdout


def test_prefork_gunicorn_sets_fork_support(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    write_executable(bin_dir / "gunicorn", ENV_DUMP)
    env = make_env(PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    data = dump_env_via_cli(["run", "-p", "gunicorn", "--workers", "2", "app:app"], env)
    assert data["argv"] == ["--workers", "2", "app:app"]
    assert data["env"]["SW_AGENT_EXPERIMENTAL_FORK_SUPPORT"] == "True"
    assert data["env"]["SW_PYTHON_PREFORK"] == "gunicorn"

    data = dump_env_via_cli(["run", "gunicorn", "app:app"], env)
    assert "SW_AGENT_EXPERIMENTAL_FORK_SUPPORT" not in data["env"]
    assert "SW_PYTHON_PREFORK" not in data["env"]


def test_prefork_uwsgi_installs_hook_and_skips_master(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    write_executable(bin_dir / "uwsgi", ENV_DUMP)
    env = make_env(PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", UWSGI_SHARED_PYTHON_IMPORT="mine")
    data = dump_env_via_cli(["run", "-p", str(bin_dir / "uwsgi"), "--http", ":9090"], env)
    got = data["env"]
    assert data["argv"] == ["--http", ":9090"]
    assert got["SW_PYTHON_PREFORK"] == "uwsgi"
    assert got["UWSGI_MASTER"] == "true" and got["UWSGI_ENABLE_THREADS"] == "true"
    assert got["UWSGI_SHARED_PYTHON_IMPORT"] == "mine"
    assert got["UWSGI_SHARED_IMPORT"] == sw_python.UWSGI_HOOK_MODULE
    assert "SW_AGENT_EXPERIMENTAL_FORK_SUPPORT" not in got
    assert data["agent_imported"] is False  # the master must not start the agent


def test_uwsgi_hook_is_inert_outside_uwsgi() -> None:
    program = "import skywalking.bootstrap.hooks.uwsgi_hook as h; print(h.register())"
    proc = run([sys.executable, "-c", program], make_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_uwsgi_hook_starts_agent_in_worker(tmp_path: Path) -> None:
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "uwsgidecorators.py").write_text("HOOKS = []\ndef postfork(f):\n    HOOKS.append(f)\n    return f\n")
    program = textwrap.dedent(
        """
        import os
        import uwsgidecorators
        import skywalking.bootstrap.hooks.uwsgi_hook
        for hook in uwsgidecorators.HOOKS:
            hook()
        from skywalking import agent, config
        print(len(uwsgidecorators.HOOKS), agent.started(),
              config.agent_instance_name.endswith(f"-child({os.getpid()})"))
        """
    )
    proc = run([sys.executable, "-c", program], make_env([REPO_ROOT, fake]))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "1 True True"


def test_missing_command_exits_127() -> None:
    for command in ("definitely-not-a-command-4242", "/nonexistent/dir/prog"):
        proc = run(sw_python_cmd("run", command, "--flag"), make_env())
        assert proc.returncode == 127
        assert f"command not found: {command}" in proc.stderr
        assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "args",
    [[], ["run"], ["-d"], ["walk", "python"], ["--nope", "run", "python"], ["run", "-x", "python"]],
)
def test_bad_usage_exits_2(args: list[str]) -> None:
    proc = run(sw_python_cmd(*args), make_env())
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: sw-python")
    assert "Traceback" not in proc.stderr


def test_help_exits_0() -> None:
    proc = run(sw_python_cmd("-h"), make_env())
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: sw-python")


# -- loader run directly ----------------------------------------------------------------------


def test_interpreter_mismatch_warns_once_and_runs() -> None:
    env = make_env(
        [LOADER_DIR, REPO_ROOT],
        SW_PYTHON_PREFIX=os.path.realpath(sys.prefix),
        SW_PYTHON_VERSION="0.0.bogus",
    )
    proc = run([sys.executable, "-c", "print('program ran')"], env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "program ran"
    mismatches = [w for w in warnings_in(proc.stderr) if "mismatch" in w]
    assert len(mismatches) == 1
    assert "0.0.bogus" in mismatches[0]
    assert "Traceback" not in proc.stderr


BROKEN_PACKAGES = {
    "not-importable": {
        "__init__.py": "raise ModuleNotFoundError(\"No module named 'skywalking'\", name='skywalking')\n",
    },
    "import-explodes": {"__init__.py": "raise RuntimeError('skywalking import exploded')\n"},
    "start-explodes": {
        "__init__.py": "",
        "agent.py": "def start():\n    raise RuntimeError('agent start exploded')\n",
    },
}


@pytest.mark.parametrize("variant", sorted(BROKEN_PACKAGES))
def test_broken_environment_warns_and_runs(tmp_path: Path, variant: str) -> None:
    loader_copy = tmp_path / "loader"
    loader_copy.mkdir()
    shutil.copy(LOADER_DIR / "sitecustomize.py", loader_copy / "sitecustomize.py")
    # A shadowing 'skywalking' package, so the real one (repo or installed) is never reached.
    shadow = tmp_path / "shadow" / "skywalking"
    shadow.mkdir(parents=True)
    for name, source in BROKEN_PACKAGES[variant].items():
        (shadow / name).write_text(source)
    env = make_env([loader_copy, shadow.parent])
    proc = run([sys.executable, "-c", "import sys; print('program ran'); sys.exit(5)"], env, cwd=tmp_path)
    assert proc.returncode == 5
    assert proc.stdout.splitlines() == ["program ran"]
    warnings = warnings_in(proc.stderr)
    assert len(warnings) == 1, proc.stderr
    assert "agent" in warnings[0]
    assert "Traceback" not in proc.stderr
