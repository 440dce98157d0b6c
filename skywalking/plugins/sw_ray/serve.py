"""Ray Serve (2.40+): handle calls (``remote``, ``dispatch``, ``broadcast``) and HTTP ingress.

``DeploymentHandle.remote`` opens an exit span that ends when the caller has the result (``result()`` or
``await`` returned or raised), or when the response is dropped without being awaited (it was passed on to
another call, say); a streaming response's span ends when the stream is done. The context
rides on Serve's ``RequestMetadata`` (pickled apart from user arguments), and the replica opens its entry
span around ``Replica._wrap_request`` (``_wrap_user_method_call`` before 2.48), which wraps unary, streaming
and HTTP requests. For HTTP through the proxy the headers come from the ASGI scope; for direct ingress from
``Replica.get_asgi_tracing_context``. Each deployment reports as its own service
(``plugin_ray_serve_service_name``).
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import ModuleType
from typing import Any

from skywalking import Component, Layer, agent, config
from skywalking.loggings import logger
from skywalking.plugins._http import ignored_method, raw_headers
from skywalking.plugins.sw_ray import batch, core
from skywalking.trace import handoff
from skywalking.trace.carrier import inbound_carrier
from skywalking.trace.context import get_context
from skywalking.trace.noop import NoopSpan
from skywalking.trace.tags import Tag

_Unary: type | None = None  # Serve's DeploymentResponse (not the streaming DeploymentResponseGenerator)
META_ATTR = "_skywalking_ctx"  # attribute added to Serve's RequestMetadata (pickled on its own, not user args)
_serve_ctx: ContextVar[Any] = ContextVar("skywalking_serve_ctx", default=None)  # the handoff of the call being made


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
    handoff).
    The handoff reaches Serve's ``RequestMetadata`` through ``metadata`` when the caller already has it,
    or through ``get_request_metadata`` (which reads ``_serve_ctx``)."""
    app, name = _deployment(handle)
    span = get_context().new_exit_span(op=f"Ray/Serve/{app}/{name}.{method}", peer=f"ray-serve/{app}/{name}",
                                       component=Component.Ray)
    with span:
        span.layer = Layer.RPCFramework
        span.tag(TagRayApp(app)).tag(TagRayDeployment(name)).tag(TagRayMethod(method))
        if stream:
            span.tag(TagRayStream("true"))
        ctx = handoff.capture(span)
        _put(metadata, ctx)
        token = _serve_ctx.set(ctx)
        try:
            response = call()
        finally:
            _serve_ctx.reset(token)
        span.prepare_async()
    return span, response, ctx


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
    a copy of the caller's context, so attach the ctx again."""
    if _serve_ctx.get():
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
    span, response, ctx = _serve_call(instance, str(method), False, lambda: wrapped(*args, **kwargs))
    try:
        span.tag(TagRayBroadcast("true"))
        response._skywalking_call = (span, ctx)
        weakref.finalize(response, span.async_finish)
    except Exception:
        span.async_finish()
    return response


def _broadcast_results(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    span, ctx = getattr(instance, "_skywalking_call", (None, None))
    token = _serve_ctx.set(ctx)  # the fan-out is scheduled now, in a copy of this context
    try:
        return wrapped(*args, **kwargs)
    except Exception:
        if span is not None:
            span.error_occurred = True
        raise
    finally:
        _serve_ctx.reset(token)
        if span is not None:
            span.async_finish()


async def _broadcast_results_async(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    span, ctx = getattr(instance, "_skywalking_call", (None, None))
    token = _serve_ctx.set(ctx)
    try:
        return await wrapped(*args, **kwargs)
    except Exception:
        if span is not None:
            span.error_occurred = True
        raise
    finally:
        _serve_ctx.reset(token)
        if span is not None:
            span.async_finish()


def _finish_serve_call(response: Any, span: Any) -> None:
    try:
        response._skywalking_span = span  # the caller's await / result() marks errors on it and ends it
        if _Unary is None or not isinstance(response, _Unary):
            return _finish_when_streamed(response, span)
        # no callback on Ray's side: the span ends in result() / __await__, or when the response is dropped
        span._skywalking_response = weakref.ref(response, lambda _: span.async_finish())
    except Exception:
        logger.debug("sw_ray: cannot follow a Serve response; ending the exit span now", exc_info=True)
        span.async_finish()


def _finish_when_streamed(response: Any, span: Any) -> None:
    try:
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


def _done(response: Any) -> None:
    span = getattr(response, "_skywalking_span", None)
    if span is not None:
        span.async_finish()


def _response_result(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    try:
        return wrapped(*args, **kwargs)
    except Exception:
        _mark_error(instance)
        raise
    finally:
        _done(instance)


def _response_await(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    def marked(inner: Any) -> Any:
        try:
            return (yield from inner)
        except Exception:
            _mark_error(instance)
            raise
        finally:
            _done(instance)

    return marked(wrapped(*args, **kwargs))


def _put(metadata: Any, headers: Any) -> None:
    """Attach a handoff or HTTP ``headers`` to Serve's ``RequestMetadata`` (our extra attribute, pickled
    with it)."""
    if headers and metadata is not None:
        try:
            setattr(metadata, META_ATTR, headers)
        except Exception:  # e.g. a future slots=True dataclass
            logger.debug("sw_ray: cannot attach the context to RequestMetadata", exc_info=True)


def _attach(metadata: Any) -> None:
    """Attach the calling span's handoff (set around the handle call) to Serve's ``RequestMetadata``."""
    _put(metadata, _serve_ctx.get())


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
    value = getattr(metadata, META_ATTR, None)
    if value == handoff.SKIP:  # the caller did not trace this call
        with NoopSpan(), inner as result:
            yield result
        return
    # a handle call's handoff, or the HTTP headers an ingress request arrived with
    carrier = inbound_carrier(value.get) if isinstance(value, dict) else handoff.HandoffCarrier(value) if value \
        else None
    http = getattr(metadata, "is_http_request", False)
    if http and ignored_method(getattr(metadata, "_http_method", "") or getattr(metadata, "_skywalking_method", "")):
        with inner as result:  # plugin_http_ignore_method: this request is not traced
            yield result
        return
    app, name = _deployment(replica)
    method = getattr(metadata, "call_method", "__call__")
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
                agent.set_identity(service, f"{service}-{getattr(replica_id, 'unique_id', os.getpid())}")
    except Exception:
        logger.warning("sw_ray: could not rename the replica's service", exc_info=True)
    if agent.started():
        core.ensure_spool()
    return result


def install(plugin: Any) -> None:
    """Patch Serve (called once ``ray.serve`` is imported)."""
    import ray

    replica: ModuleType | None
    try:
        import ray.serve._private.default_impl as default_impl
        import ray.serve._private.replica as replica
        import ray.serve.handle as handle
    except ImportError:
        replica = None
    if replica is None or not hasattr(replica, "Replica"):  # Ray < 2.40: a different Serve architecture, not covered
        logger.info("sw_ray: Ray Serve %s is not traced (Serve tracing needs Ray 2.40+)", ray.__version__)
        return
    global _Unary
    _Unary = handle.DeploymentResponse
    plugin.wrap(handle, "DeploymentHandle.remote", _handle_remote)
    plugin.wrap(handle, "DeploymentResponse.result", _response_result)
    plugin.wrap(handle, "DeploymentResponse.__await__", _response_await)
    if hasattr(default_impl, "get_request_metadata"):  # 2.45+
        plugin.wrap(default_impl, "get_request_metadata", _request_metadata)
    else:
        plugin.wrap(handle, "_DeploymentHandleBase._remote", _remote_with_metadata)
    if hasattr(handle.DeploymentHandle, "dispatch"):  # 2.55+
        import ray.serve._private.request_router.replica_wrapper as replica_wrapper

        plugin.wrap(handle, "DeploymentHandle.dispatch", _handle_dispatch)
        plugin.wrap(replica_wrapper, "RunningReplica.try_send_request", _send_request)
    if hasattr(handle.DeploymentHandle, "broadcast"):  # 2.60+
        plugin.wrap(handle, "DeploymentHandle.broadcast", _handle_broadcast)
        plugin.wrap(handle, "DeploymentBroadcastResponse.results", _broadcast_results)
        plugin.wrap(handle, "DeploymentBroadcastResponse.results_async", _broadcast_results_async)
    if hasattr(replica.Replica, "_wrap_request"):  # 2.48+
        plugin.wrap(replica, "Replica._wrap_request", _wrap_request)
        plugin.wrap(replica, "Replica._unpack_proxy_args", _unpack_proxy_args)
    else:
        plugin.wrap(replica, "Replica._wrap_user_method_call", _wrap_user_method_call)
    if hasattr(replica.Replica, "get_asgi_tracing_context"):  # direct ingress
        plugin.wrap(replica, "Replica.get_asgi_tracing_context", _asgi_tracing_context)
    plugin.wrap(replica, "Replica.__init__", _replica_init)
    batch.install(plugin)
