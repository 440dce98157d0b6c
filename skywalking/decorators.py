"""Decorators: ``@trace`` (a local span around a function) and ``@runnable`` (continue the trace
in another thread)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from skywalking import Component, Layer
from skywalking.trace.context import get_context
from skywalking.trace.snapshot import Snapshot
from skywalking.trace.tags import Tag

F = TypeVar("F", bound=Callable[..., Any])


def _decorate(span: Any, layer: Layer, component: Component, tags: list[Tag] | None) -> None:
    span.layer = layer
    span.component = component
    for tag in tags or ():
        span.tag(tag)


def trace(op: str | None = None, layer: Layer = Layer.Unknown, component: Component = Component.Unknown,
          tags: list[Tag] | None = None) -> Callable[[F], F]:
    """Wrap a function (sync, ``async def``, generator or async generator) in a local span named
    ``op`` (default: the function's qualified name). The result is returned unchanged."""

    def decorator(func: F) -> F:
        name = op or func.__qualname__

        if inspect.isasyncgenfunction(func):
            @functools.wraps(func)
            async def agen_wrapper(*args: Any, **kwargs: Any) -> Any:
                with get_context().new_local_span(op=name) as span:
                    _decorate(span, layer, component, tags)
                    async for item in func(*args, **kwargs):
                        yield item
            return agen_wrapper  # type: ignore[return-value]

        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with get_context().new_local_span(op=name) as span:
                    _decorate(span, layer, component, tags)
                    return await func(*args, **kwargs)
            return async_wrapper  # type: ignore[return-value]

        if inspect.isgeneratorfunction(func):
            @functools.wraps(func)
            def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
                with get_context().new_local_span(op=name) as span:
                    _decorate(span, layer, component, tags)
                    return (yield from func(*args, **kwargs))
            return gen_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with get_context().new_local_span(op=name) as span:
                _decorate(span, layer, component, tags)
                return func(*args, **kwargs)
        return wrapper  # type: ignore[return-value]

    return decorator


class _Runnable:
    """A callable that runs ``func`` in a local span continuing ``snapshot``'s trace."""

    def __init__(self, func: Callable[..., Any], snapshot: Snapshot | None, op: str, layer: Layer,
                 component: Component, tags: list[Tag] | None) -> None:
        functools.update_wrapper(self, func)
        self._func = func
        self._snapshot = snapshot
        self._args = (op, layer, component, tags)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        op, layer, component, tags = self._args
        with get_context().new_local_span(op=op) as span:
            _decorate(span, layer, component, tags)
            span.context.continued(self._snapshot)
            return self._func(*args, **kwargs)

    def continue_tracing(self) -> _Runnable:
        """A copy bound to the trace active now: ``Thread(target=fn.continue_tracing())``."""
        return _Runnable(self._func, get_context().capture(), *self._args)


def runnable(op: str | None = None, layer: Layer = Layer.Unknown, component: Component = Component.Unknown,
             tags: list[Tag] | None = None) -> Callable[[Callable[..., Any]], _Runnable]:
    """Continue the current trace in another thread. Decorating inside a traced request binds the
    function to that request; a function decorated at module level is bound with
    ``.continue_tracing()`` where the thread is started. Return values are kept."""

    def decorator(func: Callable[..., Any]) -> _Runnable:
        return _Runnable(func, get_context().capture(), op or f"Thread/{func.__name__}", layer, component, tags)

    return decorator
