"""Ray: Core tasks and actors, and Serve handle calls and HTTP ingress, traced across processes and nodes.

Core. Caller side, ``f.remote()`` / ``actor.m.remote()`` / ``Actor.remote()`` open an exit span that ends when
the call's result is ready (not when ``.remote()`` returns); the headers travel in our own keyword
parameter ``_skywalking_ctx``. Callee side, each task function and actor method is wrapped (sync,
async, generator, async generator) to pop that parameter and run the user code inside an entry span.
The parameter is added to the callee's signature (Ray validates calls against it) and injected only
when the callee's signature carries it, so a callee without the plugin never sees it. Ray's own
functions (module ``ray.*``) are left alone, and Ray's ``_ray_trace_ctx`` is never touched.

Serve (2.48+). ``DeploymentHandle.remote`` opens an exit span that ends when the replica's result is
done; the headers ride on Serve's ``RequestMetadata`` (pickled apart from user arguments), and the
replica opens its entry span around ``Replica._wrap_request``, which wraps unary, streaming and HTTP
requests. For HTTP through the proxy the headers come from the ASGI scope. Each deployment reports as its
own service (``plugin_ray_serve_service_name``).

Activation: ``ray.init()`` in a process where the agent is started adds a
``runtime_env`` worker setup hook (``setup_worker``) and the agent's configuration as ``SW_*`` env
vars, so every worker of the job, on every node, starts the agent too. See docs/ray.md.
"""

from __future__ import annotations

import functools
import inspect
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from skywalking import Component, Layer, agent, config
from skywalking.loggings import logger
from skywalking.plugins import Plugin
from skywalking.plugins._http import raw_headers
from skywalking.trace.carrier import inbound_carrier
from skywalking.trace.context import get_context
from skywalking.trace.tags import Tag

KEY = "_skywalking_ctx"
SETUP_HOOK = "skywalking.plugins.sw_ray.setup_worker"
USER_HOOK_ENV = "SW_RAY_USER_SETUP_HOOK"
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


_cluster_wide = False  # set by node-level preloading: every worker wraps the callees it loads


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


def _is_ray_internal(func: Any) -> bool:
    module = getattr(func, "__module__", None) or ""
    return module == "ray" or module.startswith("ray.")


# -- callee side ------------------------------------------------------------------------------

def _enter(op: str, kwargs: dict[str, Any]) -> Any:
    headers = kwargs.pop(KEY, None) or {}
    span = get_context().new_entry_span(op=op, carrier=inbound_carrier(headers.get))
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
        def wrapper(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            with _enter(op, kwargs):
                # not `yield from`: Ray's executor sends values that a user's inner iterator cannot take
                for item in func(*args, **kwargs):  # noqa: UP028
                    yield item
    else:
        def wrapper(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            with _enter(op, kwargs):
                return func(*args, **kwargs)
    functools.update_wrapper(wrapper, func)
    wrapper.__signature__ = _with_key(inspect.signature(func))  # type: ignore[attr-defined]
    setattr(wrapper, _WRAPPED, True)
    return wrapper


def _inject_function(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Ray's ``_inject_tracing_into_function``, then our wrapper (runs once per RemoteFunction)."""
    func = wrapped(*args, **kwargs)
    if _is_ray_internal(func) or getattr(func, _WRAPPED, False):
        return func
    return _traced_callee(func, f"Ray/Task/{getattr(func, '__qualname__', func)}")


def _inject_class(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
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
        if isinstance(raw, staticmethod | classmethod) or attr == "__del__" or _is_ray_internal(member) \
                or (attr.startswith("__") and attr != "__init__"):
            continue
        if getattr(member, _WRAPPED, False):
            continue
        wrapper = _traced_callee(member, f"Ray/Actor/{name}.{attr}")
        inspect.unwrap(member).__signature__ = wrapper.__signature__  # type: ignore[attr-defined]
        setattr(cls, attr, wrapper)
        done.append(attr)
    return done


def _execution_info(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Worker side, ``FunctionActorManager.get_execution_info``: a task function exported by an
    uninstrumented driver (node-level preloading) is wrapped once, where it runs."""
    info = wrapped(*args, **kwargs)
    func = getattr(info, "function", None)
    if func is None or getattr(func, _WRAPPED, False):
        return info
    try:
        descriptor = args[1] if len(args) > 1 else kwargs["function_descriptor"]
        if descriptor.is_actor_method() or _is_ray_internal(func):
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
    cls.__skywalking_ray_class__ = True  # type: ignore[attr-defined]


# -- caller side ------------------------------------------------------------------------------

def _split(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any, list[Any], dict[str, Any]]:
    """``_remote(self, args=None, kwargs=None, ...)`` arguments → (call args, call kwargs, rest, options)."""
    rest, options = list(args), dict(kwargs)
    call_args = rest.pop(0) if rest else options.pop("args", None)
    call_kwargs = rest.pop(0) if rest else options.pop("kwargs", None)
    return call_args, call_kwargs, rest, options


def _finish_when_done(result: Any, finish: Callable[[], None]) -> None:
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
            headers = {item.key: item.val for item in span.inject()}
            if headers:
                call_kwargs = {**(call_kwargs or {}), KEY: headers}
        result = wrapped(*rest, args=call_args, kwargs=call_kwargs, **options)
        if not config.plugin_ray_exit_until_ready:
            return result
        span.prepare_async()
    _finish_when_done(result, span.async_finish)
    return result


def _task_remote(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    func = getattr(instance, "_function", None)
    if getattr(instance, "_is_cross_language", False) or _is_ray_internal(func):
        return wrapped(*args, **kwargs)
    # None before the first call: it will be wrapped (and get KEY) now
    inject = instance._function_signature is None or _callee_accepts(instance, "_function_signature")
    return _traced_call(f"Ray/Task/{getattr(func, '__qualname__', 'task')}", wrapped, args, kwargs, inject)


def _actor_method_remote(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
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


def _actor_create_remote(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
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


# -- activation -------------------------------------------------------------------------------

def _config_env() -> dict[str, str]:
    """The driver's configuration as SW_* variables (only what differs from the defaults)."""
    env = {}
    for opt in config.OPTIONS:
        if opt.name == "agent_instance_name":
            continue  # every worker is its own instance
        value = getattr(config, opt.name)
        if value == opt.default:
            continue
        if isinstance(value, bool):
            env[opt.env_var] = "true" if value else "false"
        elif isinstance(value, list):
            env[opt.env_var] = ",".join(value)
        elif value is not None:
            env[opt.env_var] = str(value)
    return env


def _ray_init(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    if agent.started() and config.plugin_ray_propagate:
        try:
            kwargs = dict(kwargs)
            runtime_env = dict(kwargs.get("runtime_env") or {})
            env_vars = {**_config_env(), **(runtime_env.get("env_vars") or {})}
            user_hook = runtime_env.get("worker_process_setup_hook")
            if isinstance(user_hook, str) and user_hook != SETUP_HOOK:
                env_vars[USER_HOOK_ENV] = user_hook  # ours runs first, then the user's
            if user_hook is None or isinstance(user_hook, str):
                runtime_env["worker_process_setup_hook"] = SETUP_HOOK
            else:
                logger.info("sw_ray: runtime_env has its own callable worker_process_setup_hook; call "
                            "skywalking.plugins.sw_ray.setup_worker() from it to trace the workers")
            runtime_env["env_vars"] = env_vars
            kwargs["runtime_env"] = runtime_env
        except Exception:
            logger.warning("sw_ray: could not add the worker setup hook", exc_info=True)
    return wrapped(*args, **kwargs)


def _main_loop(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """A worker's task loop ends (actor out of scope, SIGTERM, job end) with ``sys.exit``: flush while
    the interpreter can still start threads (CPython 3.12.0/3.12.1 cannot at exit; gRPC needs one)."""
    try:
        return wrapped(*args, **kwargs)
    finally:
        agent.stop()


def start_in_worker(preloaded: bool = False) -> None:
    """Start the agent in this Ray worker, named ``<service>-<node id prefix>-<pid>``, unless it already
    runs (node-level preloading and the job's setup hook may both ask). ``preloaded``: every worker of
    the cluster runs this (``skywalking.bootstrap.ray_worker``). Never raises."""
    global _cluster_wide
    try:
        if preloaded:
            _cluster_wide = True
        if agent.started():
            return
        import ray

        node = ray.get_runtime_context().get_node_id() or "node"
        config.agent_instance_name = f"{config.agent_name}-{node[:8]}-{os.getpid()}"
        agent.start()
    except Exception:
        logger.warning("sw_ray: the agent did not start in this worker", exc_info=True)


def setup_worker() -> None:
    """``runtime_env`` worker setup hook: start the agent in a Ray worker. Our part never raises (a raising
    hook makes Ray exit the worker); a chained user hook keeps its own behaviour."""
    start_in_worker()
    user_hook = os.environ.get(USER_HOOK_ENV)
    if user_hook:
        from importlib import import_module

        module, _, attr = user_hook.rpartition(".")
        getattr(import_module(module), attr)()  # the user's hook keeps its own failure semantics


# -- Ray Serve ----------------------------------------------------------------------------------

META_ATTR = "_skywalking_ctx"  # attribute added to Serve's RequestMetadata (pickled on its own, not user args)
_serve_headers: ContextVar[dict[str, str] | None] = ContextVar("skywalking_serve_headers", default=None)


class TagRayApp(Tag):
    key = "ray.app"


class TagRayDeployment(Tag):
    key = "ray.deployment"


class TagRayMethod(Tag):
    key = "ray.method"


class TagRayReplica(Tag):
    key = "ray.replica"


class TagRayStream(Tag):
    key = "ray.stream"


class TagRayBroadcast(Tag):
    key = "ray.broadcast"


def _deployment(obj: Any) -> tuple[str, str]:
    dep = getattr(obj, "deployment_id", None) or getattr(obj, "_deployment_id", None)
    if dep is not None:
        return getattr(dep, "app_name", "") or "default", dep.name
    return getattr(obj, "app_name", "") or "default", getattr(obj, "deployment_name", "deployment")


_proxy_process: bool | None = None


def _in_proxy() -> bool:
    """Serve's HTTP proxy reaches the ingress through a handle: that hop belongs to the HTTP request
    (whose headers the replica reads), not to a new trace started in the proxy."""
    global _proxy_process
    if _proxy_process is None:
        try:
            import ray

            name = ray.get_runtime_context().get_actor_name() or ""
        except Exception:
            name = ""
        _proxy_process = name.startswith("SERVE_PROXY_ACTOR")
    return _proxy_process


def _serve_call(handle: Any, method: str, stream: bool, call: Callable[[], Any], metadata: Any = None) -> Any:
    """Run ``call`` (a handle's remote/dispatch/broadcast) inside an exit span; returns (span, response,
    headers).
    The headers reach Serve's ``RequestMetadata`` through ``metadata`` when the caller already has it,
    or through ``get_request_metadata`` (which reads ``_serve_headers``)."""
    app, name = _deployment(handle)
    span = get_context().new_exit_span(op=f"Ray/Serve/{app}/{name}.{method}", peer=f"ray-serve/{app}/{name}",
                                       component=Component.Ray)
    with span:
        span.layer = Layer.RPCFramework
        span.tag(TagRayApp(app)).tag(TagRayDeployment(name)).tag(TagRayMethod(method))
        if stream:
            span.tag(TagRayStream("true"))
        headers = {item.key: item.val for item in span.inject()} or None
        _put(metadata, headers)
        token = _serve_headers.set(headers)
        try:
            response = call()
        finally:
            _serve_headers.reset(token)
        span.prepare_async()
    return span, response, headers


def _handle_remote(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``DeploymentHandle.remote``: an exit span that ends when the replica's result is done."""
    if _in_proxy():
        return wrapped(*args, **kwargs)
    options = getattr(instance, "handle_options", None)
    method = getattr(options, "method_name", None) or "__call__"
    span, response, _ = _serve_call(instance, method, bool(getattr(options, "stream", False)),
                                    lambda: wrapped(*args, **kwargs))
    _finish_serve_call(response, span)
    return response


def _handle_dispatch(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``DeploymentHandle.dispatch(selection, ...)`` (2.60): the metadata was built at ``choose_replica``."""
    if _in_proxy():
        return wrapped(*args, **kwargs)
    selection = args[0] if args else kwargs.get("selection")
    metadata = getattr(selection, "_request_metadata", None)
    method = getattr(metadata, "call_method", None) or "__call__"
    span, response, _ = _serve_call(instance, method, bool(getattr(metadata, "is_streaming", False)),
                                    lambda: wrapped(*args, **kwargs), metadata)
    _finish_serve_call(response, span)
    return response


def _send_request(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``RunningReplica.try_send_request(pending_request, ...)`` (2.55+): the router rebuilt the metadata
    with ``dataclasses.replace`` for ``dispatch``, dropping our attribute; the router's task still runs in
    a copy of the caller's context, so attach the headers again."""
    if _serve_headers.get():
        request = args[0] if args else kwargs.get("pr")
        metadata = getattr(request, "metadata", None)
        if metadata is not None and not hasattr(metadata, META_ATTR):
            _attach(metadata)
    return wrapped(*args, **kwargs)


def _handle_broadcast(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``DeploymentHandle.broadcast(method_name, ...)`` (2.60): one exit span for the fan-out. Serve sends
    nothing until ``results()``/``results_async()``; the span ends when they return (or raise), or when
    the response is dropped uncollected."""
    method = args[0] if args else kwargs.get("method_name", "__call__")
    span, response, headers = _serve_call(instance, str(method), False, lambda: wrapped(*args, **kwargs))
    try:
        span.tag(TagRayBroadcast("true"))
        response._skywalking_call = (span, headers)
        weakref.finalize(response, span.async_finish)
    except Exception:
        span.async_finish()
    return response


def _broadcast_results(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    span, headers = getattr(instance, "_skywalking_call", (None, None))
    token = _serve_headers.set(headers)  # the fan-out is scheduled now, in a copy of this context
    try:
        return wrapped(*args, **kwargs)
    except Exception:
        if span is not None:
            span.error_occurred = True
        raise
    finally:
        _serve_headers.reset(token)
        if span is not None:
            span.async_finish()


async def _broadcast_results_async(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    span, headers = getattr(instance, "_skywalking_call", (None, None))
    token = _serve_headers.set(headers)
    try:
        return await wrapped(*args, **kwargs)
    except Exception:
        if span is not None:
            span.error_occurred = True
        raise
    finally:
        _serve_headers.reset(token)
        if span is not None:
            span.async_finish()


def _finish_serve_call(response: Any, span: Any) -> None:
    try:
        response._skywalking_span = span  # the caller's await / result() marks errors on it
        future = response._replica_result_future

        def assigned(f: Any) -> None:
            try:
                f.result().add_done_callback(lambda *_: span.async_finish())
            except Exception:
                span.error_occurred = True
                span.async_finish()

        future.add_done_callback(assigned)
    except Exception:
        logger.debug("sw_ray: no completion callback on a Serve response; ending the exit span now", exc_info=True)
        span.async_finish()


def _mark_error(response: Any) -> None:
    span = getattr(response, "_skywalking_span", None)
    if span is not None:
        span.error_occurred = True


def _response_result(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        return wrapped(*args, **kwargs)
    except Exception:
        _mark_error(instance)
        raise


def _response_await(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    def marked(inner: Any) -> Any:
        try:
            return (yield from inner)
        except Exception:
            _mark_error(instance)
            raise

    return marked(wrapped(*args, **kwargs))


def _put(metadata: Any, headers: dict[str, str] | None) -> None:
    """Attach ``headers`` to Serve's ``RequestMetadata`` (our extra attribute, pickled with it)."""
    if headers and metadata is not None:
        try:
            setattr(metadata, META_ATTR, headers)
        except Exception:  # e.g. a future slots=True dataclass
            logger.debug("sw_ray: cannot attach the context to RequestMetadata", exc_info=True)


def _attach(metadata: Any) -> None:
    """Attach the calling span's headers (set around the handle call) to Serve's ``RequestMetadata``."""
    _put(metadata, _serve_headers.get())


def _request_metadata(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``get_request_metadata`` (2.45+) builds the metadata the replica receives."""
    metadata = wrapped(*args, **kwargs)
    _attach(metadata)
    return metadata


def _remote_with_metadata(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``_DeploymentHandleBase._remote(request_metadata, args, kwargs)`` (2.40-2.44, metadata built inline)."""
    _attach(args[0] if args else kwargs.get("request_metadata"))
    return wrapped(*args, **kwargs)


def _read_http_headers(metadata: Any, scope: Any) -> None:
    """HTTP through the proxy: the caller's sw6/sw8 headers, path and method, from the ASGI scope."""
    if not isinstance(scope, dict):
        return
    _put(metadata, raw_headers(scope.get("headers", ())))
    metadata._skywalking_path = scope.get("path", "")
    metadata._skywalking_method = scope.get("method", "")


def _unpack_proxy_args(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """2.48+: ``Replica._unpack_proxy_args`` returns the ASGI scope of a proxied HTTP request."""
    result = wrapped(*args, **kwargs)
    try:
        metadata = args[0] if args else kwargs["request_metadata"]
        if getattr(metadata, "is_http_request", False) and result and result[0]:
            _read_http_headers(metadata, result[0][0])
    except Exception:
        logger.debug("sw_ray: cannot read HTTP headers from the proxy request", exc_info=True)
    return result


def _wrap_user_method_call(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """2.40-2.47: ``Replica._wrap_user_method_call(request_metadata, request_args)`` wraps unary,
    streaming and HTTP requests; for HTTP the first request argument carries the ASGI scope."""
    metadata = args[0] if args else kwargs.get("request_metadata")
    try:
        request_args = args[1] if len(args) > 1 else kwargs.get("request_args", ())
        if getattr(metadata, "is_http_request", False) and request_args:
            _read_http_headers(metadata, getattr(request_args[0], "asgi_scope", None))
    except Exception:
        logger.debug("sw_ray: cannot read HTTP headers from the request", exc_info=True)
    return _serve_entry(wrapped(*args, **kwargs), instance, metadata)


_direct_headers: ContextVar[dict[str, str] | None] = ContextVar("skywalking_direct_headers", default=None)


def _asgi_tracing_context(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Direct ingress (the replica serves HTTP itself): Serve hands every request's raw headers to
    ``get_asgi_tracing_context`` just before ``_wrap_request``, in the same task."""
    try:
        _direct_headers.set(raw_headers(args[0] if args else kwargs.get("headers", ())) or None)
    except Exception:
        logger.debug("sw_ray: cannot read direct-ingress headers", exc_info=True)
    return wrapped(*args, **kwargs)


def _wrap_request(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    metadata = args[0] if args else kwargs.get("request_metadata")
    if getattr(metadata, "is_direct_ingress", False) and not hasattr(metadata, META_ATTR):
        headers = _direct_headers.get()
        if headers:
            _direct_headers.set(None)
            _put(metadata, headers)
    return _serve_entry(wrapped(*args, **kwargs), instance, metadata)


def _http_op(metadata: Any) -> str:
    route = getattr(metadata, "route", "") or getattr(metadata, "_skywalking_path", "") or "/"
    method = getattr(metadata, "_http_method", "") or getattr(metadata, "_skywalking_method", "") or "HTTP"
    return f"{method}:{route}"


@contextmanager
def _serve_entry(inner: Any, replica: Any, metadata: Any) -> Iterator[Any]:
    """The replica's entry span around Serve's own request wrapper (unary, streaming and HTTP)."""
    carrier = inbound_carrier((getattr(metadata, META_ATTR, None) or {}).get)
    app, name = _deployment(replica)
    method = getattr(metadata, "call_method", "__call__")
    http = getattr(metadata, "is_http_request", False)
    span = get_context().new_entry_span(op=_http_op(metadata) if http else f"Ray/Serve/{app}/{name}.{method}",
                                        carrier=carrier)
    with span:
        span.layer, span.component = Layer.RPCFramework, Component.Ray
        span.tag(TagRayApp(app)).tag(TagRayDeployment(name)).tag(TagRayMethod(method))
        replica_id = getattr(getattr(replica, "_replica_id", None), "unique_id", None)
        if replica_id:
            span.tag(TagRayReplica(replica_id))
        with inner as value:
            if http:  # before 2.48 Serve matches the route inside its wrapper
                span.op = _http_op(metadata)
            yield value


def _replica_init(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """A Serve replica reports as its own service (``plugin_ray_serve_service_name``)."""
    result = wrapped(*args, **kwargs)
    try:
        pattern = config.plugin_ray_serve_service_name
        replica_id = getattr(instance, "_replica_id", None)
        if pattern and replica_id is not None and agent.started():
            app, name = _deployment(instance)
            service = pattern.format(app=app, deployment=name)
            if service != config.agent_name:
                agent.stop()
                config.agent_name = service
                config.agent_instance_name = f"{service}-{getattr(replica_id, 'unique_id', os.getpid())}"
                agent.start()
    except Exception:
        logger.warning("sw_ray: could not rename the replica's service", exc_info=True)
    return result


class RayPlugin(Plugin):
    name = "sw_ray"
    instruments = ("ray>=2.9",)
    modules = ("ray",)
    note = "Ray Core tasks and actors, Ray Serve handle calls and HTTP ingress; see docs/ray.md"

    def _install(self) -> None:
        import ray
        import ray._private.worker
        import ray.actor
        import ray.remote_function

        self.wrap(ray.remote_function, "_inject_tracing_into_function", _inject_function)
        self.wrap(ray.remote_function, "RemoteFunction._remote", _task_remote)
        self.wrap(ray.actor, "_inject_tracing_into_class", _inject_class)
        try:
            import ray._private.function_manager as function_manager
        except ImportError:
            function_manager = None
        if function_manager is not None and hasattr(function_manager, "_inject_tracing_into_class"):
            self.wrap(function_manager, "_inject_tracing_into_class", _inject_class)  # 2.54+: worker side
        if function_manager is not None and _cluster_wide:
            self.wrap(function_manager, "FunctionActorManager.get_execution_info", _execution_info)
        self.wrap(ray.actor, "ActorMethod._remote", _actor_method_remote)
        self.wrap(ray.actor, "ActorClass._remote", _actor_create_remote)
        self.wrap(ray, "init", _ray_init)
        self.wrap(ray._private.worker, "Worker.main_loop", _main_loop)
        self.when_imported("ray.serve", self._install_serve)  # not every worker uses (or imports) Serve

    def _install_serve(self) -> None:
        import ray

        try:
            import ray.serve._private.default_impl as default_impl
            import ray.serve._private.replica as replica
            import ray.serve.handle as handle
        except ImportError:
            replica = None
        if not hasattr(replica, "Replica"):  # Ray < 2.40: a different Serve architecture, not covered
            logger.info("sw_ray: Ray Serve %s is not traced (Serve tracing needs Ray 2.40+)", ray.__version__)
            return
        self.wrap(handle, "DeploymentHandle.remote", _handle_remote)
        self.wrap(handle, "DeploymentResponse.result", _response_result)
        self.wrap(handle, "DeploymentResponse.__await__", _response_await)
        if hasattr(default_impl, "get_request_metadata"):  # 2.45+
            self.wrap(default_impl, "get_request_metadata", _request_metadata)
        else:
            self.wrap(handle, "_DeploymentHandleBase._remote", _remote_with_metadata)
        if hasattr(handle.DeploymentHandle, "dispatch"):  # 2.55+
            import ray.serve._private.request_router.replica_wrapper as replica_wrapper

            self.wrap(handle, "DeploymentHandle.dispatch", _handle_dispatch)
            self.wrap(replica_wrapper, "RunningReplica.try_send_request", _send_request)
        if hasattr(handle.DeploymentHandle, "broadcast"):  # 2.60+
            self.wrap(handle, "DeploymentHandle.broadcast", _handle_broadcast)
            self.wrap(handle, "DeploymentBroadcastResponse.results", _broadcast_results)
            self.wrap(handle, "DeploymentBroadcastResponse.results_async", _broadcast_results_async)
        if hasattr(replica.Replica, "_wrap_request"):  # 2.48+
            self.wrap(replica, "Replica._wrap_request", _wrap_request)
            self.wrap(replica, "Replica._unpack_proxy_args", _unpack_proxy_args)
        else:
            self.wrap(replica, "Replica._wrap_user_method_call", _wrap_user_method_call)
        if hasattr(replica.Replica, "get_asgi_tracing_context"):  # direct ingress
            self.wrap(replica, "Replica.get_asgi_tracing_context", _asgi_tracing_context)
        self.wrap(replica, "Replica.__init__", _replica_init)


plugin = RayPlugin()
