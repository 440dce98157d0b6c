"""The plugin matrix has one source: the plugins' ``instruments``. tox.ini's pins must agree with it
(tools/check_matrix.py), and the Makefile derives its env list instead of keeping one."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from skywalking import plugins
from tools import check_matrix

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tox_ini(tmp_path: Path) -> Path:
    copy = tmp_path / "tox.ini"
    shutil.copy(ROOT / "tox.ini", copy)
    return copy


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))


def test_tox_ini_agrees_with_the_plugin_declarations() -> None:
    assert check_matrix.problems() == []


def test_every_plugin_with_a_declared_library_has_its_envs_in_the_matrix() -> None:
    envs = check_matrix.matrix_envs()
    declaring = [name for name in plugins.discover() if plugins.load(name).instruments]  # type: ignore[union-attr]
    assert "sw_requests" in declaring and "sw_ray" in declaring
    for name in declaring:
        assert set(check_matrix.plugin_envs(name)) <= set(envs), name
    assert len(envs) == len(set(envs))


def test_the_parser_reads_tox_ini_as_tox_does() -> None:
    tox = shutil.which("tox", path=str(ROOT / ".venv" / "bin")) or shutil.which("tox")
    if tox is None:
        pytest.skip("tox is not installed")
    listed = subprocess.run([tox, "-l", "-c", str(ROOT / "tox.ini")], capture_output=True, text=True, timeout=60,
                            check=True).stdout.split()
    envlist, envs = check_matrix.read_tox()
    assert envlist == listed
    assert sorted(e for e in listed if e.startswith("plugin-") or e in ("ray29", "ray240", *check_matrix.AGENT_ENVS)) \
        == sorted(check_matrix.matrix_envs())
    assert envs["plugin-grpc-oldest"].pins() == {"grpcio": "1.49.1", "protobuf": "3.20.3"}
    assert "grpcio" in envs["plugin-grpc-newest"].unpinned() and not envs["plugin-grpc-newest"].pins()


def test_an_oldest_pin_off_the_declared_floor_is_reported(tox_ini: Path) -> None:
    edit(tox_ini, "oldest: requests==2.25.1", "oldest: requests==2.26.0")
    assert check_matrix.problems(tox_ini) == [
        "sw_requests: plugin-requests-oldest pins requests==2.26.0 but the plugin declares >=2.25"]


def test_a_raised_declaration_is_reported_against_the_old_pin(tox_ini: Path) -> None:
    decl = check_matrix.declared()
    decl["sw_redis"] = [Requirement("redis>=5.0")]
    found = check_matrix.problems(tox_ini, decl)
    assert "sw_redis: plugin-redis-oldest pins redis==4.2.0 but the plugin declares >=5.0" in found
    assert "sw_redis: env plugin-redis-oldest pins redis==4.2.0, outside >=5.0" in found


def test_a_plugin_without_its_env_pair_is_reported(tox_ini: Path) -> None:
    edit(tox_ini, ", plugin-loguru-{oldest,newest}", "")
    text = tox_ini.read_text()
    section = text.index("[testenv:plugin-loguru-{oldest,newest}]")
    tox_ini.write_text(text[:section] + text[text.index("[testenv:plugin-grpc", section):])
    assert check_matrix.problems(tox_ini) == [
        "sw_loguru: no tox env plugin-loguru-oldest, plugin-loguru-newest (declares loguru>=0.6)"]
    assert not any("loguru" in env for env in check_matrix.matrix_envs(tox_ini))


def test_an_env_naming_a_plugin_that_does_not_exist_is_reported(tox_ini: Path) -> None:
    edit(tox_ini, ", plugin-grpc-{oldest,newest}", ", plugin-grpc-{oldest,newest}, plugin-nosuch-{oldest,newest}")
    tox_ini.write_text(tox_ini.read_text() + "\n[testenv:plugin-nosuch-{oldest,newest}]\ndeps =\n    oldest: x==1\n")
    assert check_matrix.problems(tox_ini) == [
        "tox.ini: env plugin-nosuch-oldest names plugin sw_nosuch, which does not exist",
        "tox.ini: env plugin-nosuch-newest names plugin sw_nosuch, which does not exist"]
    assert "plugin-nosuch-newest" in check_matrix.matrix_envs(tox_ini)


def test_a_section_left_out_of_envlist_and_a_pinned_newest_are_reported(tox_ini: Path) -> None:
    edit(tox_ini, ", plugin-flask-{oldest,newest}", "")
    edit(tox_ini, "newest: loguru\n", "newest: loguru==0.7.0\n")
    found = check_matrix.problems(tox_ini)
    assert "tox.ini: env plugin-flask-oldest has a section but is not in envlist" in found
    assert "sw_loguru: plugin-loguru-newest does not install loguru unpinned" in found


def test_any_env_pinning_outside_a_declared_range_is_reported(tox_ini: Path) -> None:
    edit(tox_ini, "    grpcio==1.49.1\n    protobuf==3.20.3\n    wrapt",
         "    grpcio==1.48.2\n    protobuf==3.20.3\n    wrapt")
    assert check_matrix.problems(tox_ini) == ["sw_grpc: env floors pins grpcio==1.48.2, outside >=1.49"]


def test_ray_keeps_its_own_env_names_and_its_floor_is_checked(tox_ini: Path) -> None:
    edit(tox_ini, "    ray==2.9.3\n", "    ray==2.10.0\n")
    assert check_matrix.problems(tox_ini) == [
        "sw_ray: none of ray29, ray240 pins ray to its floor 2.9 (pins: {'ray29': '2.10.0', 'ray240': '2.40.0'})"]


def test_the_makefile_derives_the_plugin_envs_instead_of_listing_them() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^test-plugins:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe is not None
    lines = recipe.group(1).splitlines()
    assert "\t$(BIN)/python tools/check_matrix.py" in lines  # fails the target when the matrix disagrees
    assert any("tools/check_matrix.py --envs" in line and "tox -e" in line for line in lines)
    assert not re.search(r"plugin-\w+-(oldest|newest)", makefile)  # no hand-kept list left


def test_the_cli_prints_the_env_list_and_exits_nonzero_on_a_problem(tox_ini: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert check_matrix.main(["check_matrix.py", "--envs"]) == 0
    assert capsys.readouterr().out.strip() == ",".join(check_matrix.matrix_envs())
    edit(tox_ini, "oldest: httpx==0.23.0", "oldest: httpx==0.22.0")
    monkeypatch.setattr(check_matrix, "TOX_INI", tox_ini)
    monkeypatch.setattr(check_matrix.problems, "__defaults__", (tox_ini, None))
    assert check_matrix.main(["check_matrix.py"]) == 1
    assert "plugin-httpx-oldest pins httpx==0.22.0" in capsys.readouterr().err
