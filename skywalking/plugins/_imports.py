"""Post-import hooks: run a callback once a module has been imported for the first time.

A finder placed first on ``sys.meta_path`` sees every import that is not already in ``sys.modules``. For a
module nobody waits for it costs one dict lookup and no lock, so an application that attempts an import on
every request (httpcore tries ``import sniffio`` several times per HTTP call, and fails when it is absent)
pays nothing measurable for it. For a watched module it asks the other finders for the spec, lets the real
loader execute the module, puts that loader back on the module, then runs the callbacks.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from collections.abc import Callable
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from importlib.abc import Loader as _LoaderBase
else:  # at run time unknown attributes go to the real loader (``__getattr__``), none come from Loader
    _LoaderBase = object

Hook = Callable[[ModuleType], None]

_hooks: dict[str, list[Hook]] = {}  # module name -> callbacks still to run
_lock = threading.Lock()
_finder: _Finder | None = None


def when_imported(name: str, hook: Hook) -> None:
    """Call ``hook(module)`` now if ``name`` is imported, else right after its first import."""
    global _finder
    with _lock:
        module = sys.modules.get(name)
        if module is None:
            _hooks.setdefault(name, []).append(hook)
            if _finder is None or _finder not in sys.meta_path:
                _finder = _finder or _Finder()
                sys.meta_path.insert(0, _finder)
            return
    hook(module)


def _run(name: str, module: ModuleType) -> None:
    with _lock:
        hooks = _hooks.pop(name, [])
    for hook in hooks:
        try:
            hook(module)
        except Exception:  # never into the application's import
            from skywalking.loggings import logger

            logger.warning("a post-import hook for %s failed", name, exc_info=True)


class _Finder:
    """See the module docstring."""

    def __init__(self) -> None:
        self._busy: set[str] = set()  # names being looked up by the other finders (no recursion)

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        if fullname not in _hooks or fullname in self._busy:
            return None
        self._busy.add(fullname)
        try:
            spec = importlib.util.find_spec(fullname)
        except (ImportError, ValueError):
            return None
        finally:
            self._busy.discard(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec  # nothing to wrap: a hook that cannot run now runs with the next registration
        spec.loader = _Loader(spec.loader, fullname)
        return spec

    def invalidate_caches(self) -> None:
        pass


class _Loader(_LoaderBase):
    """The real loader, then the hooks; the module keeps the real loader."""

    def __init__(self, loader: Any, name: str) -> None:
        self._loader = loader
        self._name = name

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        _run(self._name, sys.modules.get(self._name, module))

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._loader, attr)
