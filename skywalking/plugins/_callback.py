"""Consumer callbacks run inside the entry span of the message they are handed (RabbitMQ clients, Pulsar
listeners): ``traced_callback(callback, span_for, marker)`` returns ``callback`` wrapped so that each call runs
inside the started span ``span_for(*args, **kwargs)`` makes (untraced when it makes None), ending when the call
returns; an exception marks the span as an error and reaches the caller unchanged. ``marker`` names the attribute
that tells a callback is wrapped already (wrapping twice gives the same object back)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from skywalking.trace.span import Span

SpanFor = Callable[..., Span | None]


def _mark(traced: Any, callback: Any, marker: str) -> Any:
    setattr(traced, marker, True)
    traced.__wrapped__ = callback
    return traced


def traced_callback(callback: Any, span_for: SpanFor, marker: str) -> Any:
    """A plain callback in the span of each call (see the module docstring)."""
    if not callable(callback) or getattr(callback, marker, False):
        return callback

    def traced(*args: Any, **kwargs: Any) -> Any:
        span = span_for(*args, **kwargs)
        if span is None:
            return callback(*args, **kwargs)
        try:
            return callback(*args, **kwargs)
        except Exception:
            span.raised()
            raise
        finally:
            span.stop()

    return _mark(traced, callback, marker)


def traced_async_callback(callback: Any, span_for: SpanFor, marker: str) -> Any:
    """A callback whose result may be awaitable (awaited inside the span): the wrapper is a coroutine function."""
    if not callable(callback) or getattr(callback, marker, False):
        return callback

    async def traced(*args: Any, **kwargs: Any) -> Any:
        span = span_for(*args, **kwargs)
        if span is None:
            result = callback(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result
        try:
            result = callback(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result
        except Exception:
            span.raised()
            raise
        finally:
            span.stop()

    return _mark(traced, callback, marker)
