"""The plugin contract: version checks against installed distributions, lazy patching on import,
idempotent install, uninstall restoring the originals, graded failures, disable by whole name."""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from skywalking import config, plugins
from skywalking.plugins import Plugin
from skywalking.reporter.memory import MemoryReporter
from skywalking.trace.context import get_context

HYPOTHESIS = importlib.metadata.version("hypothesis")


@pytest.fixture
def target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real, not yet imported module ``name`` with a function and a class method."""
    name = f"sw_target_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "def hello(who):\n    return 'hello ' + who\n\n"
        "class Greeter:\n    def greet(self, who):\n        return 'hi ' + who\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    log = logging.getLogger("skywalking")
    log.addHandler(caplog.handler)
    old = log.level
    log.setLevel(logging.DEBUG)
    yield caplog
    log.setLevel(old)
    log.removeHandler(caplog.handler)


def make_plugin(module: str, instruments: tuple[str, ...] = (f"hypothesis>={HYPOTHESIS}",),
                fail: bool = False) -> Plugin:
    class TargetPlugin(Plugin):
        name = "sw_target"
        modules = (module,)

        def _install(self) -> None:
            def traced(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
                with get_context().new_exit_span(op=f"call/{wrapped.__name__}", peer="local"):
                    return wrapped(*args, **kwargs)

            self.wrap(module, "hello", traced)
            self.wrap(module, "Greeter.greet", traced)
            if fail:
                raise RuntimeError("plugin bug")

    TargetPlugin.instruments = instruments
    return TargetPlugin()


def test_patching_waits_for_the_import_then_traces(target: str, reporter: MemoryReporter) -> None:
    plugin = make_plugin(target)
    assert plugin.install()
    assert target not in sys.modules and not plugin.installed  # nothing imported by install()
    mod = importlib.import_module(target)
    assert plugin.installed
    assert mod.hello("a") == "hello a" and mod.Greeter().greet("b") == "hi b"
    assert [seg.spans[0].op for seg in reporter.segments] == ["call/hello", "call/greet"]


def test_already_imported_module_is_patched_at_once(target: str, reporter: MemoryReporter) -> None:
    mod = importlib.import_module(target)
    plugin = make_plugin(target)
    plugin.install()
    assert plugin.installed
    mod.hello("x")
    assert reporter.count == 1


def test_install_is_idempotent_and_uninstall_restores(target: str, reporter: MemoryReporter) -> None:
    mod = importlib.import_module(target)
    original_hello, original_greet = mod.hello, mod.Greeter.__dict__["greet"]
    plugin = make_plugin(target)
    plugin.install()
    plugin.install()
    mod.hello("x")
    assert reporter.count == 1  # one span, not two: patched once
    plugin.uninstall()
    assert mod.hello is original_hello and mod.Greeter.__dict__["greet"] is original_greet
    mod.hello("y")
    assert reporter.count == 1
    plugin.uninstall()  # idempotent
    plugin.install()  # and back
    mod.hello("z")
    assert reporter.count == 2


def test_uninstalled_before_import_patches_nothing(target: str) -> None:
    plugin = make_plugin(target)
    plugin.install()
    plugin.uninstall()
    mod = importlib.import_module(target)
    assert not plugin.installed and not hasattr(mod.hello, "__wrapped__")


def test_optional_part_is_patched_when_its_module_is_imported(target: str, tmp_path: Path,
                                                              reporter: MemoryReporter) -> None:
    extra = f"{target}_extra"
    (tmp_path / f"{extra}.py").write_text("def hello(who):\n    return 'extra ' + who\n")

    class WithExtra(Plugin):
        name = "sw_target"
        modules = (target,)

        def _install(self) -> None:
            self.when_imported(extra, lambda: self.wrap(extra, "hello", traced_hello))

    def traced_hello(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        with get_context().new_exit_span(op="call/extra", peer="local"):
            return wrapped(*args, **kwargs)

    try:
        plugin = WithExtra()
        importlib.import_module(target)
        plugin.install()
        assert plugin.installed and extra not in sys.modules  # the optional part waits for its import
        mod = importlib.import_module(extra)
        assert mod.hello("a") == "extra a" and reporter.count == 1
        plugin.uninstall()
        assert not hasattr(mod.hello, "__wrapped__")
        plugin.install()  # already imported: patched at once, once
        mod.hello("b")
        assert reporter.count == 2
    finally:
        sys.modules.pop(extra, None)


def test_submodule_imported_after_install_is_reachable_from_its_package(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        reporter: MemoryReporter) -> None:
    """Import hooks run before ``pkg.sub`` is set on ``pkg``; a plugin doing ``import pkg.sub`` and using
    ``pkg.sub.x`` (as real plugins do) must still patch, for its trigger module and for optional parts."""
    pkg = f"sw_pkg_{uuid.uuid4().hex[:8]}"
    (tmp_path / pkg).mkdir()
    (tmp_path / pkg / "__init__.py").write_text("")
    for sub in ("core", "extra"):
        (tmp_path / pkg / f"{sub}.py").write_text(f"def hello(who):\n    return '{sub} ' + who\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def traced(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        with get_context().new_exit_span(op=f"call/{wrapped.__module__}", peer="local"):
            return wrapped(*args, **kwargs)

    class SubPlugin(Plugin):
        name = "sw_pkg"
        modules = (f"{pkg}.core",)

        def _install(self) -> None:
            core = importlib.import_module(pkg)  # the package, as ``import pkg.core`` binds it
            self.wrap(core.core, "hello", traced)
            self.when_imported(f"{pkg}.extra", lambda: self.wrap(importlib.import_module(pkg).extra, "hello", traced))

    plugin = SubPlugin()
    try:
        assert plugin.install()
        core = importlib.import_module(f"{pkg}.core")
        extra = importlib.import_module(f"{pkg}.extra")
        assert plugin.installed
        assert core.hello("a") == "core a" and extra.hello("b") == "extra b"
        assert sorted(seg.spans[0].op for seg in reporter.segments) == [f"call/{pkg}.core", f"call/{pkg}.extra"]
    finally:
        plugin.uninstall()
        for name in (pkg, f"{pkg}.core", f"{pkg}.extra"):
            sys.modules.pop(name, None)


def test_failing_optional_part_leaves_the_rest_installed(target: str, tmp_path: Path,
                                                          logs: pytest.LogCaptureFixture) -> None:
    class BrokenExtra(Plugin):
        name = "sw_target"
        modules = (target,)

        def _install(self) -> None:
            self.wrap(target, "hello", lambda wrapped, instance, args, kwargs: "patched")
            self.when_imported(target, self._extra)

        def _extra(self) -> None:
            self.wrap(target, "Greeter.greet", lambda wrapped, instance, args, kwargs: "patched")
            raise RuntimeError("optional part bug")

    mod = importlib.import_module(target)
    plugin = BrokenExtra()
    plugin.install()
    assert plugin.installed and mod.hello("x") == "patched"
    assert mod.Greeter().greet("y") == "hi y"  # its own wrap rolled back
    assert "optional part bug" in logs.text
    plugin.uninstall()


def test_absent_library_is_a_debug_line(target: str, logs: pytest.LogCaptureFixture) -> None:
    plugin = make_plugin(target, ("not-a-real-distribution-sw>=1",))
    assert not plugin.install()
    (record,) = [r for r in logs.records if "sw_target" in r.getMessage()]
    assert record.levelno == logging.DEBUG and "not installed" in record.getMessage()


def test_version_outside_range_is_an_info_line_with_the_reason(target: str, logs: pytest.LogCaptureFixture) -> None:
    plugin = make_plugin(target, ("hypothesis<1",))
    assert not plugin.install()
    importlib.import_module(target)
    assert not plugin.installed
    (record,) = [r for r in logs.records if "sw_target" in r.getMessage()]
    assert record.levelno == logging.INFO
    assert f"hypothesis {HYPOTHESIS} is outside the supported range <1" in record.getMessage()


def test_plugin_bug_is_a_warning_with_traceback_and_leaves_no_patch(target: str,
                                                                     logs: pytest.LogCaptureFixture) -> None:
    mod = importlib.import_module(target)
    original = mod.hello
    plugin = make_plugin(target, fail=True)
    plugin.install()
    assert not plugin.installed and mod.hello is original  # the half-done patch was rolled back
    (record,) = [r for r in logs.records if r.levelno == logging.WARNING]
    assert "sw_target failed to install" in record.getMessage() and record.exc_info is not None


def test_bad_requirement_string_is_reported(target: str) -> None:
    ok, reason = make_plugin(target, ("hypothesis >=>= 1",)).check_versions()
    assert not ok and "bad requirement" in reason


@pytest.mark.parametrize(("setting", "name", "disabled"), [
    ("sw_http", "sw_httpx", False),  # upstream's prefix match disabled sw_httpx too
    ("sw_http", "sw_http", True),
    ("sw_http,sw_grpc", "sw_grpc", True),
    ("sw_.*", "sw_redis", True),
    ("sw_(", "sw_(", True),  # not a regex: plain name
    ("", "sw_redis", False),
])
def test_disable_plugins_matches_whole_names(setting: str, name: str, disabled: bool) -> None:
    config.init(agent_disable_plugins=setting)
    assert plugins._is_disabled(name) is disabled


def test_every_shipped_plugin_follows_the_contract() -> None:
    for name in plugins.discover():
        plugin = plugins.load(name)
        assert isinstance(plugin, Plugin), name
        assert plugin.name == name and plugin.modules, name
        for spec in plugin.instruments:
            assert plugin.check_versions()[1] != f"bad requirement {spec!r}", name


# -- post-import hooks (skywalking.plugins._imports) ----------------------------------------------

def test_a_post_import_hook_runs_once_after_the_first_import(target: str) -> None:
    from skywalking.plugins import _imports

    seen: list[Any] = []
    _imports.when_imported(target, seen.append)
    assert seen == [] and target in _imports._hooks
    module = importlib.import_module(target)
    assert seen == [module] and module.hello("x") == "hello x"
    assert target not in _imports._hooks  # one shot: the finder is back to a dict miss for it
    assert type(module.__loader__).__name__ == "SourceFileLoader" and module.__spec__.loader is module.__loader__
    _imports.when_imported(target, seen.append)  # already imported: at once
    assert seen == [module, module]


def test_a_failing_hook_or_a_missing_module_never_breaks_an_import(target: str, logs: pytest.LogCaptureFixture) -> None:
    from skywalking.plugins import _imports

    def boom(_: Any) -> None:
        raise RuntimeError("hook failed")

    _imports.when_imported(target, boom)
    _imports.when_imported(f"{target}_absent", boom)
    assert importlib.import_module(target).hello("y") == "hello y"
    assert "a post-import hook for" in logs.text
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(f"{target}_absent")  # what a watched name that does not exist does untraced
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(f"{target}_other")
    _imports._hooks.pop(f"{target}_absent", None)
