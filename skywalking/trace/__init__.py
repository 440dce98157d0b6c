"""Tracing core: ids, spans, segments, contexts, carriers."""

from skywalking.trace.ids import ID

__all__ = ["ID"]
