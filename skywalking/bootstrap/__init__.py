"""Bootstrapping helpers: the ``sw-python`` CLI, the ``sitecustomize`` loader and pre-fork hooks."""
