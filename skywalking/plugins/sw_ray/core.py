"""Ray Core: tasks and actors.

Caller side, ``f.remote()`` / ``actor.m.remote()`` / ``Actor.remote()`` open an exit span that ends when
the call's result is ready (not when ``.remote()`` returns); the context travels in our own keyword
parameter ``_skywalking_ctx`` as a handoff (``skywalking.trace.handoff``: the caller named by its identity,
so neither side waits for the OAP). Callee side, each task function and actor method is wrapped (sync, async,
generator, async generator) to pop that parameter and run the user code inside an entry span. The
parameter is added to the callee's signature (Ray validates calls against it) and injected only when the
callee's signature carries it, so a callee without the plugin never sees it. Ray's own functions (module
``ray.*``) are left alone, and Ray's ``_ray_trace_ctx`` is never touched.

Wrappers are pickled by value with the user's function: they call module-level helpers only (pickled by
reference), never a ContextVar, lock or agent object.
"""

from __future__ import annotations

import functools
import inspect
import os
import threading
from collections.abc import Callable
from typing import Any

from skywalking import Component, Layer, agent, config
from skywalking.loggings import logger
from skywalking.trace import handoff
from skywalking.trace.context import get_context
from skywalking.trace.noop import NoopSpan

KEY = "_skywalking_ctx"
PEER = "ray"
_WRAPPED = "__skywalking_ray_wrapped__"
_pending: dict[int, Any] = {}  # object refs held until their completion callback ran
_pending_lock = threading.Lock()


def _with_key(signature: inspect.Signature) -> inspect.Signature:
    params = list(signature.parameters.values())
    if any(p.name == KEY for p in params):
        return signature
    at = next((i for i, p in enumerate(params) if p.kind is inspect.Parameter.VAR_KEYWORD), len(params))
    params.insert(at, inspect.Parameter(KEY, inspect.Parameter.KEYWORD_ONLY, default=None))
    return signature.replace(parameters=params)


def _accepts_key(params: Any) -> bool:
    return bool(params) and any(getattr(p, "name", None) == KEY for p in params)


_cluster_wide = False  # set by node-level preloading (set_cluster_wide): every worker wraps the callees it loads


def set_cluster_wide() -> None:
    global _cluster_wide
    _cluster_wide = True


def cluster_wide() -> bool:
    return _cluster_wide


def _callee_accepts(owner: Any, attr: str, key: Any = None) -> bool:
    """Whether a call may carry our parameter. Under node-level preloading a callee exported by an
    uninstrumented driver is wrapped where it runs, so its recorded signature gains the parameter here
    (Ray validates calls against it)."""
    params = getattr(owner, attr, None) if key is None else (getattr(owner, attr, None) or {}).get(key)
    if _accepts_key(params):
        return True
    if not _cluster_wide or params is None:
        return False
    extended = list(_with_key(inspect.Signature(params)).parameters.values())
    if key is None:
        setattr(owner, attr, extended)
    else:
        getattr(owner, attr)[key] = extended
    return True


def is_ray_internal(func: Any) -> bool:
    module = getattr(func, "__module__", None) or ""
    return module == "ray" or module.startswith("ray.")


SPOOL_DIR = "skywalking-spool"  # in the Ray session directory: node-local, shared by the session's workers
_spool_attached = False


def ensure_spool(write_ahead: bool = True) -> None:
    """Attach the node's spool to the reporter once (``plugin_ray_spool``): a worker writes its segments ahead
    to it, a driver on a node of the cluster (``write_ahead=False``: Ray does not kill drivers) only delivers
    what killed workers left there. Never raises."""
    global _spool_attached
    if _spool_attached:
        return
    _spool_attached = True
    reporter = agent.agent.reporter
    if not config.plugin_ray_spool or reporter is None or not hasattr(reporter, "attach_spool"):
        return
    try:
        from ray._private import worker as ray_worker  # no public API names the session directory

        from skywalking.reporter.spool import Spool

        node = getattr(ray_worker.global_worker, "node", None)
        if node is None:  # a driver connected to a remote cluster (Ray Client): no node-local directory
            return
        session = node.get_session_dir_path()
        reporter.attach_spool(Spool(os.path.join(session, SPOOL_DIR)), write_ahead)
    except Exception:
        logger.warning("sw_ray: no segment spool in this worker; a force-killed worker may lose up to 0.2 s of "
                       "segments", exc_info=True)


# -- callee side ------------------------------------------------------------------------------

def _enter(op: str, kwargs: dict[str, Any]) -> Any:
    if not _spool_attached:
        ensure_spool()
    value = kwargs.pop(KEY, None)
    if value == handoff.SKIP:
        return NoopSpan()  # the caller did not trace this call: nothing under it is traced
    span = get_context().new_entry_span(op=op, carrier=handoff.HandoffCarrier(value) if value else None)
    span.layer, span.component = Layer.RPCFramework, Component.Ray
    return span


def _traced_callee(func: Callable[..., Any], op: str) -> Callable[..., Any]:
    """A wrapper of the same kind as ``func`` that runs it in an entry span continuing the caller."""
    if inspect.isasyncgenfunction(func):
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            with _enter(op, kwargs):
                async for item in func(*args, **kwargs):
                    yield item
    elif inspect.iscoroutinefunction(func):
        async def wrapper(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            with _enter(op, kwargs):
                return await func(*args, **kwargs)
    elif inspect.isgeneratorfunction(func):
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with _enter(op, kwargs):
                # not `yield from`: Ray's executor sends values that a user's inner iterator cannot take
                for item in func(*args, **kwargs):  # noqa: UP028
                    yield item
    else:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with _enter(op, kwargs):
                return func(*args, **kwargs)
    functools.update_wrapper(wrapper, func)
    wrapper.__signature__ = _with_key(inspect.signature(func))  # type: ignore[attr-defined]
    setattr(wrapper, _WRAPPED, True)
    return wrapper


def inject_function(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Ray's ``_inject_tracing_into_function``, then our wrapper (runs once per RemoteFunction)."""
    func = wrapped(*args, **kwargs)
    if is_ray_internal(func) or getattr(func, _WRAPPED, False):
        return func
    return _traced_callee(func, f"Ray/Task/{getattr(func, '__qualname__', func)}")


def inject_class(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Ray's ``_inject_tracing_into_class``, then our wrappers on every user method of the class."""
    result = wrapped(*args, **kwargs)
    cls = args[0] if args else kwargs.get("_cls")
    try:
        _wrap_class(cls)
    except Exception:
        logger.debug("sw_ray: cannot wrap the methods of %r", cls, exc_info=True)
    return result


def _wrap_class(cls: type) -> list[str]:
    """Wrap the user methods of an actor class; returns the names newly wrapped."""
    name = getattr(cls, "__ray_actor_class__", cls).__name__
    done = []
    for attr, member in inspect.getmembers(cls, inspect.isfunction):
        raw = inspect.getattr_static(cls, attr)
        if isinstance(raw, staticmethod | classmethod) or attr == "__del__" or is_ray_internal(member) \
                or (attr.startswith("__") and attr != "__init__"):
            continue
        if getattr(member, _WRAPPED, False):
            continue
        wrapper = _traced_callee(member, f"Ray/Actor/{name}.{attr}")
        inspect.unwrap(member).__signature__ = wrapper.__signature__  # type: ignore[attr-defined]
        setattr(cls, attr, wrapper)
        done.append(attr)
    return done


def execution_info(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Worker side, ``FunctionActorManager.get_execution_info``: a task function exported by an
    uninstrumented driver (node-level preloading) is wrapped once, where it runs."""
    info = wrapped(*args, **kwargs)
    func = getattr(info, "function", None)
    if func is None or getattr(func, _WRAPPED, False):
        return info
    try:
        descriptor = args[1] if len(args) > 1 else kwargs["function_descriptor"]
        if descriptor.is_actor_method() or is_ray_internal(func):
            return info
        info = info._replace(function=_traced_callee(func, f"Ray/Task/{getattr(func, '__qualname__', func)}"))
        instance._function_execution_info[descriptor.function_id] = info
    except Exception:
        logger.debug("sw_ray: cannot wrap a task function in the worker", exc_info=True)
    return info


def _late_wrap(meta: Any) -> None:
    """An actor class decorated before the plugin was installed (e.g. at module level, before
    ``agent.start()``): wrap it now, before its first actor exports it, and add our parameter to the
    method signatures Ray recorded at decoration time (handles validate calls against them)."""
    cls = getattr(meta, "modified_class", None)
    signatures = getattr(getattr(meta, "method_meta", None), "signatures", None)
    if cls is None or not isinstance(signatures, dict) or getattr(cls, "__skywalking_ray_class__", False):
        return
    for attr in _wrap_class(cls):
        params = signatures.get(attr)
        if params is not None and not _accepts_key(params):
            signatures[attr] = list(_with_key(inspect.Signature(params)).parameters.values())
    cls.__skywalking_ray_class__ = True


# -- caller side ------------------------------------------------------------------------------

def _split(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any, list[Any], dict[str, Any]]:
    """``_remote(self, args=None, kwargs=None, ...)`` arguments → (call args, call kwargs, rest, options)."""
    rest, options = list(args), dict(kwargs)
    call_args = rest.pop(0) if rest else options.pop("args", None)
    call_kwargs = rest.pop(0) if rest else options.pop("kwargs", None)
    return call_args, call_kwargs, rest, options


def _finish_when_done(result: Any, finish: Callable[[], object]) -> None:
    """Call ``finish`` once the call's result exists; callbacks run on Ray's threads."""
    try:
        ref = result[-1] if isinstance(result, list) and result else result
        if hasattr(ref, "completed") and not hasattr(ref, "_on_completed"):  # a streaming generator
            ref = ref.completed()
        if hasattr(ref, "_on_ready"):  # does not fetch the value; keep the ref until it fires
            key = id(ref)
            with _pending_lock:
                _pending[key] = ref

            def ready(*_: Any) -> None:
                with _pending_lock:
                    _pending.pop(key, None)
                finish()

            ref._on_ready(ready)
        elif hasattr(ref, "_on_completed"):
            ref._on_completed(lambda *_: finish())
        else:
            finish()
    except Exception:
        logger.debug("sw_ray: no completion callback; ending the exit span now", exc_info=True)
        finish()


def _traced_call(op: str, wrapped: Any, args: Any, kwargs: Any, inject: bool) -> Any:
    call_args, call_kwargs, rest, options = _split(args, kwargs)
    span = get_context().new_exit_span(op=op, peer=PEER, component=Component.Ray)
    with span:
        span.layer = Layer.RPCFramework
        if inject:
            value = handoff.capture(span)
            if value is not None:
                call_kwargs = {**(call_kwargs or {}), KEY: value}
        result = wrapped(*rest, args=call_args, kwargs=call_kwargs, **options)
        if not config.plugin_ray_exit_until_ready or type(span) is NoopSpan:
            return result
        span.prepare_async()
    _finish_when_done(result, span.async_finish)
    return result


def task_remote(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    func = getattr(instance, "_function", None)
    if getattr(instance, "_is_cross_language", False) or is_ray_internal(func):
        return wrapped(*args, **kwargs)
    # None before the first call: it will be wrapped (and get KEY) now
    inject = instance._function_signature is None or _callee_accepts(instance, "_function_signature")
    return _traced_call(f"Ray/Task/{getattr(func, '__qualname__', 'task')}", wrapped, args, kwargs, inject)


def actor_method_remote(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    name = getattr(instance, "_method_name", "method")
    actor = getattr(instance, "_actor", None)
    if actor is None and callable(getattr(instance, "_actor_ref", None)):  # Ray <= 2.47: a weakref
        actor = instance._actor_ref()
    descriptor = getattr(actor, "_ray_actor_creation_function_descriptor", None)
    module = getattr(descriptor, "module_name", "") or ""
    if module == "ray" or module.startswith("ray."):  # Serve's controller, proxies, replicas: Ray's own
        return wrapped(*args, **kwargs)
    if isinstance(getattr(actor, "_ray_method_signatures", None), dict):
        inject = _callee_accepts(actor, "_ray_method_signatures", name)
    else:
        inject = _accepts_key(getattr(instance, "_signature", None))
    cls_name = getattr(descriptor, "class_name", "")
    op = f"Ray/Actor/{cls_name.rsplit('.', 1)[-1] or 'actor'}.{name}"
    return _traced_call(op, wrapped, args, kwargs, inject)


def actor_create_remote(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    meta = getattr(instance, "__ray_metadata__", None)
    descriptor = getattr(meta, "actor_creation_function_descriptor", None)
    module = getattr(descriptor, "module_name", "") or getattr(getattr(meta, "modified_class", None), "__module__", "")
    if module == "ray" or module.startswith("ray."):
        return wrapped(*args, **kwargs)
    try:
        _late_wrap(meta)
    except Exception:
        logger.debug("sw_ray: cannot wrap an actor class decorated before the plugin", exc_info=True)
    cls = getattr(meta, "modified_class", None) or getattr(meta, "class_name", "actor")
    name = getattr(cls, "__name__", str(cls)).replace("ActorClass(", "").rstrip(")")
    signatures = getattr(getattr(meta, "method_meta", None), "signatures", {}) or {}
    return _traced_call(f"Ray/Actor/{name}.__init__", wrapped, args, kwargs,
                        _accepts_key(signatures.get("__init__")))
