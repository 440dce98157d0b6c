"""Alias package so that ``python -m sw_python run ...`` behaves like the ``sw-python`` command."""

from skywalking.bootstrap.cli.sw_python import main, start

__all__ = ["main", "start"]
