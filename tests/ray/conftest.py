"""Feature gates for the Ray matrix (tox envs ray29, ray240; the main venv runs the newest Ray)."""

from __future__ import annotations

import pytest
import ray
from packaging.version import Version

RAY = Version(ray.__version__)
serve_traced = pytest.mark.skipif(RAY < Version("2.40"), reason=f"Serve is traced from Ray 2.40 (this is {RAY})")


def serve_has(cls: str, attr: str) -> bool:
    """Whether the installed Serve has ``cls.attr`` (e.g. ``DeploymentHandle.broadcast``)."""
    try:
        import ray.serve._private.replica as replica
        import ray.serve.handle as handle
    except ImportError:
        return False
    owner = getattr(handle, cls, None) or getattr(replica, cls, None)
    return hasattr(owner, attr)
