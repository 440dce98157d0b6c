"""Ray Serve ``@serve.batch``: one batch serves several requests, each with its own trace.

Serve queues each call of a batched method (``_BatchQueue.put``, in the request's task: we take a snapshot of
its active span there) and runs the user's function once per batch in a task of its own, which inherited the
context of whichever request started the queue. The function runs inside a local span
``Ray/Serve/batch/<function>`` in a fresh segment with a CrossThread ref to every request of the batch, so the
calls it makes are children of the batch, not of one request. The segment joins each request's trace (the
first request's is primary: OAP 6.6.0 files a segment under one trace; the others reach it through the refs).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from skywalking import Component
from skywalking.loggings import logger
from skywalking.trace.context import get_context, peek
from skywalking.trace.snapshot import Snapshot
from skywalking.trace.span import _active
from skywalking.trace.tags import Tag

ATTR = "_skywalking_snapshot"  # set on Serve's _SingleRequest
_batch: ContextVar[list[Snapshot | None] | None] = ContextVar("skywalking_serve_batch", default=None)


class TagRayBatchSize(Tag):
    key = "ray.batch_size"


def _put(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``_BatchQueue.put(request)``: remember which request (span) this is."""
    try:
        request = args[0] if args else kwargs.get("request")
        if isinstance(request, tuple):  # annotated as a (request, future) tuple in some releases
            request = request[0]
        span = peek()  # the request's span; Serve may run user code on a thread of its own
        setattr(request, ATTR, span.context.capture() if span is not None else None)
    except Exception:
        logger.debug("sw_ray: cannot note the request of a batch", exc_info=True)
    return wrapped(*args, **kwargs)


def _snapshots(batch: Any) -> list[Snapshot | None]:
    return [getattr(request, ATTR, None) for request in batch or ()]


async def _process_batch_inner(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """2.48+: ``_BatchQueue._process_batch_inner(func, batch)`` runs one batch in a task of its own."""
    batch = args[1] if len(args) > 1 else kwargs.get("batch")
    token = _batch.set(_snapshots(batch))
    try:
        return await wrapped(*args, **kwargs)
    finally:
        _batch.reset(token)


async def _wait_for_batch(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Before 2.48: ``_process_batch`` awaits ``wait_for_batch()`` and then calls the function, in one task."""
    batch = await wrapped(*args, **kwargs)
    try:
        _batch.set(_snapshots(batch))
    except Exception:
        logger.debug("sw_ray: cannot note a batch", exc_info=True)
    return batch


@contextmanager
def _batch_span(name: str) -> Any:
    snapshots = _batch.get() or []
    token = _active.set(None)  # not the span of the request that started Serve's batch task
    try:
        ctx = get_context()
        with ctx.new_local_span(f"Ray/Serve/batch/{name}") as span:
            span.component = Component.Ray
            span.tag(TagRayBatchSize(len(snapshots)))
            ctx.join(snapshots)  # type: ignore[union-attr]
            yield span
    finally:
        _active.reset(token)


def traced_batch_function(func: Callable[..., Any]) -> Callable[..., Any]:
    """The user's batch function (async or async generator) run inside the batch span."""
    name = getattr(func, "__qualname__", "batch")
    if getattr(func, "__skywalking_batch__", False):
        return func
    if inspect.isasyncgenfunction(func):
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            with _batch_span(name):
                async for item in func(*args, **kwargs):
                    yield item
    elif inspect.iscoroutinefunction(func):
        async def wrapper(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            with _batch_span(name):
                return await func(*args, **kwargs)
    else:
        return func  # Serve requires async batch functions
    functools.update_wrapper(wrapper, func)
    wrapper.__skywalking_batch__ = True  # type: ignore[attr-defined]
    return wrapper


def _queue_init(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``_BatchQueue.__init__(..., handle_batch_func=...)``: run the function in the batch span."""
    try:
        bound = inspect.signature(wrapped).bind(*args, **kwargs)
        func = bound.arguments.get("handle_batch_func")
        if func is not None:
            bound.arguments["handle_batch_func"] = traced_batch_function(func)
            return wrapped(*bound.args, **bound.kwargs)
    except Exception:
        logger.debug("sw_ray: cannot trace a batch function", exc_info=True)
    return wrapped(*args, **kwargs)


def install(plugin: Any) -> None:
    try:
        import ray.serve.batching as batching
    except ImportError:
        return
    queue = getattr(batching, "_BatchQueue", None)
    if queue is None or not hasattr(queue, "put"):
        logger.info("sw_ray: this Ray Serve has no _BatchQueue: @serve.batch calls join the first request's trace")
        return
    plugin.wrap(batching, "_BatchQueue.__init__", _queue_init)
    plugin.wrap(batching, "_BatchQueue.put", _put)
    if hasattr(queue, "_process_batch_inner"):
        plugin.wrap(batching, "_BatchQueue._process_batch_inner", _process_batch_inner)
    else:
        plugin.wrap(batching, "_BatchQueue.wait_for_batch", _wait_for_batch)
