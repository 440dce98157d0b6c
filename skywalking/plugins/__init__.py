"""The plugin contract.

A plugin is a module ``skywalking/plugins/sw_<name>.py`` that defines ``plugin = <Plugin subclass>()``:

* ``instruments``: the distributions it supports, as PEP 508 requirements (``"requests>=2.20,<3"``),
  checked against what is installed (``importlib.metadata``) before anything is patched; empty for
  the standard library;
* ``modules``: the import names whose import triggers patching (patching waits until then);
* ``_install()``: patch, using ``self.wrap(...)`` so that ``uninstall()`` can restore the originals;
* ``_uninstall()``: optional; the default unwraps everything ``wrap`` recorded;
* ``when_imported(module, fn)``: patch an optional part (e.g. a submodule) only once it is imported.

``install()`` / ``uninstall()`` are idempotent. Failures are graded: library absent → debug; version
outside the declared range → info with the reason; an exception in the plugin → warning with the
traceback. ``agent_disable_plugins`` entries are matched against whole plugin names.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import pkgutil
import re
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any, ClassVar

import wrapt
from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from skywalking import config
from skywalking.loggings import logger
from skywalking.plugins import _imports


class Plugin:
    """Base class of every plugin (see the module docstring)."""

    name: ClassVar[str] = ""
    instruments: ClassVar[tuple[str, ...]] = ()
    modules: ClassVar[tuple[str, ...]] = ()
    note: ClassVar[str] = ""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._enabled = False  # install() asked for it and the versions fit
        self._patched = False  # _install() ran and succeeded
        self._hooked: set[str] = set()
        self._wrapped: list[tuple[Any, str, Any, bool]] = []  # (parent, attribute, original, parent's own)
        self._late: set[str] = set()  # modules whose when_imported() part ran

    # -- version check ----------------------------------------------------------------------------

    def check_versions(self) -> tuple[bool, str]:
        """(ok, reason). Not ok when a declared distribution is absent or outside its range."""
        for spec in self.instruments:
            try:
                req = Requirement(spec)
            except InvalidRequirement as e:
                return False, f"bad requirement {spec!r} in plugin: {e}"
            try:
                installed = importlib.metadata.version(req.name)
            except importlib.metadata.PackageNotFoundError:
                return False, f"{req.name} is not installed"
            try:
                if req.specifier and not req.specifier.contains(Version(installed), prereleases=True):
                    return False, f"{req.name} {installed} is outside the supported range {req.specifier}"
            except InvalidVersion:
                return False, f"{req.name} has an unparsable version {installed!r}"
        return True, ""

    # -- lifecycle --------------------------------------------------------------------------------

    def install(self) -> bool:
        """Enable the plugin: patch now if its modules are imported, else when they are."""
        with self._lock:
            if self._enabled:
                return True
            ok, reason = self.check_versions()
            if not ok:
                level = logging.DEBUG if reason.endswith("is not installed") else logging.INFO
                logger.log(level, "plugin %s not installed: %s", self.name, reason)
                return False
            self._enabled = True
            targets = self.modules or ()
            if not targets or any(mod in sys.modules for mod in targets):
                self._patch()
            for mod in targets:
                if mod not in self._hooked:  # _patch() checks _enabled
                    self._hooked.add(mod)
                    _imports.when_imported(mod, self._on_import)
            return self._enabled

    def _on_import(self, module: ModuleType) -> None:
        _bind_to_parents(module.__name__)
        self._patch()

    def _patch(self) -> None:
        with self._lock:
            if not self._enabled or self._patched:
                return
            try:
                self._install()
                self._patched = True
                logger.debug("plugin %s installed", self.name)
            except Exception:
                self._restore()
                self._enabled = False
                logger.warning("plugin %s failed to install", self.name, exc_info=True)

    def uninstall(self) -> None:
        """Restore every original; a later import of the target module patches nothing."""
        with self._lock:
            self._enabled = False
            if not self._patched:
                return
            try:
                self._uninstall()
            except Exception:
                logger.warning("plugin %s failed to uninstall", self.name, exc_info=True)
            self._patched = False

    @property
    def installed(self) -> bool:
        return self._patched

    @property
    def enabled(self) -> bool:
        """``install()`` succeeded and ``uninstall()`` was not called since (patched or waiting for the import)."""
        return self._enabled

    # -- for subclasses ---------------------------------------------------------------------------

    def _install(self) -> None:
        raise NotImplementedError

    def _uninstall(self) -> None:
        self._restore()

    def wrap(self, target: ModuleType | type | str, name: str,
             wrapper: Callable[[Any, Any, tuple[Any, ...], dict[str, Any]], Any]) -> None:
        """``wrapt`` function wrapper on ``target.name`` (``name`` may be dotted: ``Class.method``),
        recorded so that ``uninstall()`` restores the original."""
        if isinstance(target, str):
            target = sys.modules[target] if target in sys.modules else importlib.import_module(target)
        parent, attribute, original = wrapt.resolve_path(target, name)
        own = attribute in vars(parent)  # False: inherited from a base class (restored by deleting ours)
        wrapped = wrapt.FunctionWrapper(original, wrapper)
        setattr(parent, attribute, wrapped)
        self._wrapped.append((parent, attribute, original, own))

    def when_imported(self, module: str, install: Callable[[], None]) -> None:
        """Call ``install`` (more ``wrap`` calls) now if ``module`` is imported, else once it is, while this
        plugin is installed. It fails on its own: its wraps are rolled back, the rest of the plugin stays."""
        def run(_: ModuleType | None = None) -> None:
            _bind_to_parents(module)
            with self._lock:
                if not self._enabled or module in self._late:
                    return
                self._late.add(module)
                mark = len(self._wrapped)
                try:
                    install()
                except Exception:
                    self._restore(mark)
                    logger.warning("plugin %s: patching %s failed; the rest of the plugin stays", self.name, module,
                                   exc_info=True)

        if module in sys.modules:
            run()
        elif f"late:{module}" not in self._hooked:  # run() checks _enabled
            self._hooked.add(f"late:{module}")
            _imports.when_imported(module, run)

    def _restore(self, mark: int = 0) -> None:
        while len(self._wrapped) > mark:
            parent, attribute, original, own = self._wrapped.pop()
            if own:
                setattr(parent, attribute, original)
            else:
                delattr(parent, attribute)
        if not mark:
            self._late.clear()


def _bind_to_parents(name: str) -> None:
    """Post-import hooks run before the import system sets ``pkg.mod`` on ``pkg``; set it (as the import
    system is about to) so that ``import pkg.mod`` inside a hook can use ``pkg.mod``."""
    while "." in name:
        parent_name, _, child = name.rpartition(".")
        parent, module = sys.modules.get(parent_name), sys.modules.get(name)
        if parent is None or module is None:
            return
        if getattr(parent, child, None) is not module:
            setattr(parent, child, module)
        name = parent_name


def _is_disabled(name: str) -> bool:
    for pattern in config.agent_disable_plugins:
        try:
            if re.fullmatch(pattern, name):
                return True
        except re.error:
            if pattern == name:
                return True
    return False


def discover() -> list[str]:
    """Names of the plugin modules shipped in this package, sorted."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("sw_"))


def load(name: str) -> Plugin | None:
    """Import one plugin module and return its ``plugin`` object (None with a warning if broken)."""
    try:
        module = importlib.import_module(f"{__name__}.{name}")
        plugin = module.plugin
    except Exception:
        logger.warning("plugin module %s is broken", name, exc_info=True)
        return None
    if not isinstance(plugin, Plugin):
        logger.warning("plugin module %s has no Plugin instance named 'plugin'", name)
        return None
    if not plugin.name:
        plugin.name = name  # type: ignore[misc]
    return plugin


_loaded: dict[str, Plugin] = {}


def install() -> list[str]:
    """Install every shipped plugin not disabled by ``agent_disable_plugins``; idempotent.
    Returns the names of the plugins that are enabled."""
    enabled = []
    for name in discover():
        if _is_disabled(name):
            logger.debug("plugin %s disabled by agent_disable_plugins", name)
            continue
        plugin = _loaded.get(name) or load(name)
        if plugin is None:
            continue
        _loaded[name] = plugin
        if plugin.install():
            enabled.append(name)
    return enabled


def uninstall() -> None:
    """Uninstall every plugin installed by ``install()``."""
    for plugin in _loaded.values():
        plugin.uninstall()


def check(rule_unit: str, version: str) -> bool:
    """Upstream name: whether ``version`` satisfies ``rule_unit`` (a specifier such as ``>=2.0`` or ``<3``; a bare
    version means ``==``). A version or rule that cannot be parsed does not satisfy it."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    rule = rule_unit.strip()
    try:
        spec = SpecifierSet(rule if rule[:1] in "<>=!~" else f"=={rule}")
        return Version(version) in spec
    except (InvalidSpecifier, InvalidVersion):
        return False


def pkg_version_check(plugin: Plugin) -> bool:
    """Upstream name: True if the plugin's declared distributions are installed and in range."""
    return plugin.check_versions()[0]
