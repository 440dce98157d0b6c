"""gRPC (``grpcio``), sync and ``grpc.aio``.

* Servers made by ``grpc.server`` / ``grpc.aio.server`` get our interceptor first: an entry span per RPC (op = the
  full method ``/pkg.Svc/Method``, peer = the client address) continuing the caller's ``sw6``/``sw8`` metadata. It
  covers the whole handler, streamed responses included, and is an error when the handler raises, aborts or sets
  a non-OK code (tag ``grpc.status_code``).
* Channels made by ``grpc.insecure_channel`` / ``grpc.secure_channel`` (wrapped with ``grpc.intercept_channel``)
  and by their ``grpc.aio`` twins (our interceptor first in ``interceptors``): an exit span per RPC (op = the full
  method, peer = the channel target) with the configured headers (``sw6`` by default) added to the call metadata.
  It ends when the RPC completes (futures and streams included) and is an error on a non-OK status.

Left alone: servers and channels created by code in ``skywalking.*`` (the reporter, the bundled collector) or
``ray.*`` (Ray's own gRPC), calls to SkyWalking's, Ray's and OpenTelemetry exporters' services, and
``plugin_grpc_ignored_methods``.
"""

from __future__ import annotations

import contextvars
import inspect
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial, update_wrapper
from types import FrameType
from typing import Any
from urllib.parse import unquote

import wrapt

from skywalking import Component, Layer, config
from skywalking.loggings import logger
from skywalking.plugins import Plugin
from skywalking.trace.carrier import inbound_carrier
from skywalking.trace.context import NOOP_CONTEXT, get_context, inside_exit_span
from skywalking.trace.span import Span
from skywalking.trace.tags import TagGrpcMethod, TagGrpcStatusCode, TagGrpcUrl

# method prefixes of SkyWalking's services (sw6 protos have no package; v3 is skywalking.v3), of Ray's, and of
# OpenTelemetry exporters (Ray exports its metrics that way): telemetry traffic, not the application's
OWN_METHODS = ("/Register/", "/ServiceInstancePing/", "/TraceSegmentReportService/", "/skywalking.v3.", "/ray.rpc.",
               "/opentelemetry.proto.collector.")
_UNTRACED_CALLERS = ("skywalking", "ray")  # top-level packages whose servers and channels stay unwrapped
_PASS_THROUGH = ("wrapt", "grpc")  # frames between the creating code and our wrapper
_KINDS = {(False, False): "unary_unary", (False, True): "unary_stream", (True, False): "stream_unary",
          (True, True): "stream_stream"}


def traced_method(method: str) -> bool:
    """False for the agent's and Ray's own services and for ``plugin_grpc_ignored_methods``."""
    return not method.startswith(OWN_METHODS) and not config.ignore_grpc_method_check(method)


def created_by_untraced_code() -> bool:
    """True when the code creating a server or channel is in ``skywalking.*`` or ``ray.*`` (call it from the
    wrapper: frames of this module, wrapt and grpc are skipped)."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        module = frame.f_globals.get("__name__") or ""
        top = module.partition(".")[0]
        if module != __name__ and top not in _PASS_THROUGH:
            return top in _UNTRACED_CALLERS
        frame = frame.f_back
    return False


def peer_from_grpc_address(address: str | None) -> str | None:
    """``ipv4:127.0.0.1:50768`` → ``127.0.0.1:50768``, ``ipv6:[::1]:50768`` → ``[::1]:50768``; others as given."""
    if not address:
        return None
    scheme, sep, rest = address.partition(":")
    return unquote(rest) if sep and scheme in ("ipv4", "ipv6") else address


def _method_name(method: Any) -> str:
    return method.decode() if isinstance(method, bytes) else str(method)


def _code_name(code: Any) -> str:
    """``StatusCode.NOT_FOUND`` → ``NOT_FOUND``; also from the number (grpc.aio before 1.5x returns numbers)."""
    name = getattr(code, "name", None)
    if name:
        return name
    if isinstance(code, int):
        for status in sys.modules["grpc"].StatusCode:
            if status.value[0] == code:
                return status.name
    return str(code)


def _tag_status(span: Span, code: Any) -> None:
    """A non-OK status: ``grpc.status_code`` (the code's name) and an error."""
    if code is None:
        return
    name = _code_name(code)
    if name != "OK":
        span.error_occurred = True
        span.tag(TagGrpcStatusCode(name))


# -- servers --------------------------------------------------------------------------------------

class _CodeRecorder(wrapt.ObjectProxy):
    """A servicer context without ``code()`` (what grpc.aio hands sync handlers) that records the code set."""

    _self_code: Any = None

    def set_code(self, code: Any) -> Any:
        self._self_code = code
        return self.__wrapped__.set_code(code)

    def abort(self, code: Any, *args: Any, **kwargs: Any) -> Any:
        self._self_code = code
        return self.__wrapped__.abort(code, *args, **kwargs)


def _recording(context: Any) -> Any:
    """``context``, behind a ``_CodeRecorder`` if it cannot tell the code the handler set."""
    return context if callable(getattr(context, "code", None)) else _CodeRecorder(context)


def _server_code(context: Any) -> Any:
    """The code the handler set (``set_code`` / ``abort``), None if none."""
    if isinstance(context, _CodeRecorder):
        return context._self_code
    try:
        return context.code()
    except Exception:
        return None


def _is_abort(exc: BaseException) -> bool:
    """grpc's own signal that the handler aborted: a bare ``Exception()`` (sync) or ``AbortError`` (aio)."""
    return type(exc).__name__ == "AbortError" or (type(exc) is Exception and not exc.args)


def _start_entry(method: str, header: Callable[[str], str | None], context: Any) -> Span | None:
    """The started entry span of one RPC; None (and a debug line) if it cannot be made."""
    span = None
    try:
        tracing = get_context()
        if tracing is NOOP_CONTEXT:  # tracing is off, or a no-op span is already active
            return None
        span = tracing.new_entry_span(op=method, carrier=inbound_carrier(header))
        span.start()
        span.layer, span.component = Layer.RPCFramework, Component.Grpc
        peer = peer_from_grpc_address(context.peer())
        if peer:
            span.peer = peer
        span.tag(TagGrpcMethod(method))
        return span
    except Exception:
        logger.debug("sw_grpc: no entry span for %s", method, exc_info=True)
        if span is not None and span.depth:
            span.stop()
        return None


def _end_entry(span: Span, context: Any, exc: BaseException | None) -> None:
    """Status and end of an entry span (call it inside the ``except`` block when ``exc``); never raises."""
    try:
        code = _server_code(context)
        if isinstance(exc, Exception):
            if code is None or _code_name(code) == "OK":
                code = "UNKNOWN"  # what grpc answers when a handler raises
            if not _is_abort(exc):
                span.raised()
        _tag_status(span, code)
    except Exception:
        logger.debug("sw_grpc: entry span status", exc_info=True)
    finally:
        span.stop()


def _sync_unary(behavior: Callable[..., Any], method: str, header: Callable[[str], str | None]) -> Callable[..., Any]:
    def traced(request: Any, context: Any) -> Any:
        span = _start_entry(method, header, context)
        if span is None:
            return behavior(request, context)
        context = _recording(context)
        try:
            response = behavior(request, context)
        except BaseException as e:
            _end_entry(span, context, e)
            raise
        _end_entry(span, context, None)
        return response

    return traced


def _sync_stream(behavior: Callable[..., Any], method: str, header: Callable[[str], str | None]) -> Callable[..., Any]:
    """Streamed responses: grpc pulls them one by one after the handler returned, so the span lives in a context
    of its own, entered for the handler call and for every step (the worker thread's context stays clean)."""
    def traced(request: Any, context: Any) -> Any:
        run = contextvars.copy_context().run
        span = run(_start_entry, method, header, context)
        if span is None:
            return behavior(request, context)
        context = _recording(context)
        try:
            responses = iter(run(behavior, request, context))
        except BaseException as e:
            run(_end_entry, span, context, e)
            raise
        return _steps(run, responses, span, context)

    return traced


def _steps(run: Callable[..., Any], responses: Iterator[Any], span: Span, context: Any) -> Iterator[Any]:
    try:
        while True:
            try:
                item = run(next, responses)
            except StopIteration:
                break
            yield item
    except BaseException as e:  # the handler failed, or grpc closed the stream (GeneratorExit)
        run(_end_entry, span, context, e)
        raise
    run(_end_entry, span, context, None)


def _async_unary(behavior: Callable[..., Any], method: str, header: Callable[[str], str | None]) -> Callable[..., Any]:
    """Coroutine handlers: unary responses, or streams written with ``context.write()``."""
    async def traced(request: Any, context: Any) -> Any:
        span = _start_entry(method, header, context)
        if span is None:
            return await behavior(request, context)
        try:
            response = await behavior(request, context)
        except BaseException as e:
            _end_entry(span, context, e)
            raise
        _end_entry(span, context, None)
        return response

    return traced


def _async_stream(behavior: Callable[..., Any], method: str,
                  header: Callable[[str], str | None]) -> Callable[..., Any]:
    """Async generator handlers: the span stays open until the last response has been taken."""
    async def traced(request: Any, context: Any) -> AsyncIterator[Any]:
        span = _start_entry(method, header, context)
        if span is None:
            async for item in behavior(request, context):
                yield item
            return
        try:
            async for item in behavior(request, context):
                yield item
        except BaseException as e:
            _end_entry(span, context, e)
            raise
        _end_entry(span, context, None)

    return traced


def _traced_handler(handler: Any, details: Any) -> Any:
    """``handler`` with its behaviour inside an entry span (the same kind of callable: grpc.aio tells coroutine,
    async generator and sync handlers apart), or ``handler`` itself when not traced."""
    if handler is None or not plugin.installed:
        return handler
    try:
        method = _method_name(details.method)
        if not traced_method(method):
            return handler
        kind = _KINDS[(bool(handler.request_streaming), bool(handler.response_streaming))]
        behavior = getattr(handler, kind)
        if behavior is None or getattr(behavior, "experimental_non_blocking", False):
            return handler  # non-blocking handlers answer through a callback grpc passes them: not traced
        values = {key: value for key, value in details.invocation_metadata or () if isinstance(value, str)}

        def header(name: str) -> str | None:
            return values.get(name.lower())

        if inspect.isasyncgenfunction(behavior):
            traced = _async_stream(behavior, method, header)
        elif inspect.iscoroutinefunction(behavior):
            traced = _async_unary(behavior, method, header)
        elif handler.response_streaming:
            traced = _sync_stream(behavior, method, header)
        else:
            traced = _sync_unary(behavior, method, header)
        update_wrapper(traced, behavior)  # grpc reads attributes of the behaviour (experimental_thread_pool)
        factory = getattr(sys.modules["grpc"], f"{kind}_rpc_method_handler")
        return factory(traced, request_deserializer=handler.request_deserializer,
                       response_serializer=handler.response_serializer)
    except Exception:
        logger.debug("sw_grpc: handler not traced", exc_info=True)
        return handler


def _with_first_interceptors(args: tuple[Any, ...], kwargs: dict[str, Any], at: int,
                             ours: list[Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The factory's arguments with ``ours`` first in its ``interceptors`` (positional number ``at`` or the
    keyword); the caller's sequence is not modified."""
    if len(args) > at:
        return (*args[:at], [*ours, *(args[at] or ())], *args[at + 1:]), kwargs
    return args, {**kwargs, "interceptors": [*ours, *(kwargs.get("interceptors") or ())]}


def _interceptor_factory(make: Callable[[tuple[Any, ...], dict[str, Any]], list[Any]],
                         at: int) -> Callable[..., Any]:
    """A wrapper for a factory taking ``interceptors`` (``grpc.server``, ``grpc.aio.server``, ``grpc.aio`` channels):
    the ``make(args, kwargs)`` list first, unless the caller is untraced or something fails."""
    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        new_args, new_kwargs = args, kwargs
        try:
            if not created_by_untraced_code():
                new_args, new_kwargs = _with_first_interceptors(args, kwargs, at, make(args, kwargs))
        except Exception:
            logger.debug("sw_grpc: %s not traced", getattr(wrapped, "__name__", wrapped), exc_info=True)
            new_args, new_kwargs = args, kwargs
        return wrapped(*new_args, **new_kwargs)

    return wrapper


def _target(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """A channel factory's ``target`` argument."""
    return str(args[0] if args else kwargs["target"])


# -- clients --------------------------------------------------------------------------------------

class _Details:
    """Call details with other metadata, for details objects that are not named tuples."""

    def __init__(self, details: Any, metadata: Any) -> None:
        self._details = details
        self.metadata = metadata

    def __getattr__(self, name: str) -> Any:
        return getattr(self._details, name)


def _start_exit(target: str, details: Any, metadata_type: Callable[..., Any] | None) -> tuple[Span, Any] | None:
    """The started exit span of one call and the call details with our headers appended to a copy of the
    metadata (``metadata_type(*pairs)`` for grpc.aio, a tuple otherwise); None when the call is not traced.
    Never raises."""
    span = None
    try:
        if not plugin.installed or inside_exit_span():
            return None
        method = _method_name(details.method)
        if not traced_method(method):
            return None
        context = get_context()
        if context is NOOP_CONTEXT:
            return None
        span = context.new_exit_span(op=method, peer=target, component=Component.Grpc)
        span.start()
        span.layer = Layer.RPCFramework
        span.tag(TagGrpcMethod(method)).tag(TagGrpcUrl(target + method))
        headers = tuple((item.key.lower(), item.val) for item in span.inject())  # gRPC keys are lower-case
        if not headers:
            return span, details
        pairs = (*(details.metadata or ()), *headers)
        metadata = metadata_type(*pairs) if metadata_type is not None else pairs
        replace = getattr(details, "_replace", None)
        return span, replace(metadata=metadata) if replace is not None else _Details(details, metadata)
    except Exception:
        logger.debug("sw_grpc: no exit span for %s", getattr(details, "method", None), exc_info=True)
        if span is not None and span.depth:
            span.stop()
        return None


def _failed(span: Span) -> None:
    """The call raised instead of returning: record it (inside the ``except`` block) and end the span."""
    try:
        if isinstance(sys.exc_info()[1], Exception):
            span.raised()
    finally:
        span.stop()


def _sync_code(call: Any) -> Any:
    return call.code()


def _aio_code(call: Any) -> Any:
    """The status of a finished grpc.aio call. ``code()`` is a coroutine that returns at once when the call is
    done: drive it here (done callbacks cannot await)."""
    waiter = call.code()
    try:
        waiter.send(None)
    except StopIteration as done:
        return done.value
    waiter.close()  # still pending: status unknown
    return None


def _call_done(span: Span, code_of: Callable[[Any], Any], call: Any) -> None:
    try:
        _tag_status(span, code_of(call))
    except Exception:
        logger.debug("sw_grpc: exit span status", exc_info=True)
    finally:
        span.async_finish()


def _end_when_done(span: Span, call: Any, code_of: Callable[[Any], Any]) -> None:
    """End the active exit span now if ``call`` has completed (a blocking call), else from its done callback."""
    try:
        if call.done():
            _tag_status(span, code_of(call))
            span.stop()
            return
        span.prepare_async()
        span.stop()
        call.add_done_callback(partial(_call_done, span, code_of))
    except Exception:
        logger.debug("sw_grpc: exit span ended early", exc_info=True)
        if span.depth:
            span.stop()
        span.async_finish()


def _intercept(target: str, continuation: Callable[[Any, Any], Any], details: Any, request: Any) -> Any:
    started = _start_exit(target, details, None)
    if started is None:
        return continuation(details, request)
    span, details = started
    try:
        call = continuation(details, request)
    except BaseException:
        _failed(span)
        raise
    _end_when_done(span, call, _sync_code)
    return call


async def _intercept_aio(target: str, continuation: Callable[[Any, Any], Any], details: Any, request: Any) -> Any:
    started = _start_exit(target, details, sys.modules["grpc.aio"].Metadata)
    if started is None:
        return await continuation(details, request)
    span, details = started
    try:
        call = await continuation(details, request)
    except BaseException:
        _failed(span)
        raise
    _end_when_done(span, call, _aio_code)
    return call


def _sync_channel(client_interceptor: Callable[[str], Any]) -> Callable[..., Any]:
    """A wrapper for ``grpc.insecure_channel`` / ``grpc.secure_channel``: the channel behind our interceptor."""
    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        channel = wrapped(*args, **kwargs)
        try:
            if created_by_untraced_code():
                return channel
            return sys.modules["grpc"].intercept_channel(channel, client_interceptor(_target(args, kwargs)))
        except Exception:
            logger.debug("sw_grpc: channel not traced", exc_info=True)
            return channel

    return wrapper


# -- interceptor classes (grpc is imported only when the plugin installs) --------------------------

def _sync_classes(grpc: Any) -> tuple[type, type]:  # the grpc module
    class ServerInterceptor(grpc.ServerInterceptor):
        def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
            return _traced_handler(continuation(handler_call_details), handler_call_details)

    class ClientInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                            grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
        def __init__(self, target: str) -> None:
            self._target = target

        def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
            return _intercept(self._target, continuation, client_call_details, request)

        def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
            return _intercept(self._target, continuation, client_call_details, request)

        def intercept_stream_unary(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
            return _intercept(self._target, continuation, client_call_details, request_iterator)

        def intercept_stream_stream(self, continuation: Any, client_call_details: Any, request_iterator: Any) -> Any:
            return _intercept(self._target, continuation, client_call_details, request_iterator)

    return ServerInterceptor, ClientInterceptor


def _aio_classes(aio: Any) -> tuple[type, Callable[[str], list[Any]]]:  # grpc.aio
    class AioServerInterceptor(aio.ServerInterceptor):
        async def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
            return _traced_handler(await continuation(handler_call_details), handler_call_details)

    class UnaryUnary(aio.UnaryUnaryClientInterceptor):
        def __init__(self, target: str) -> None:
            self._target = target

        async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
            return await _intercept_aio(self._target, continuation, client_call_details, request)

    class UnaryStream(aio.UnaryStreamClientInterceptor):
        def __init__(self, target: str) -> None:
            self._target = target

        async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
            return await _intercept_aio(self._target, continuation, client_call_details, request)

    class StreamUnary(aio.StreamUnaryClientInterceptor):
        def __init__(self, target: str) -> None:
            self._target = target

        async def intercept_stream_unary(self, continuation: Any, client_call_details: Any,
                                         request_iterator: Any) -> Any:
            return await _intercept_aio(self._target, continuation, client_call_details, request_iterator)

    class StreamStream(aio.StreamStreamClientInterceptor):
        def __init__(self, target: str) -> None:
            self._target = target

        async def intercept_stream_stream(self, continuation: Any, client_call_details: Any,
                                          request_iterator: Any) -> Any:
            return await _intercept_aio(self._target, continuation, client_call_details, request_iterator)

    def client_interceptors(target: str) -> list[Any]:
        # a grpc.aio channel files each interceptor under the first kind it is an instance of: one per kind
        return [UnaryUnary(target), UnaryStream(target), StreamUnary(target), StreamStream(target)]

    return AioServerInterceptor, client_interceptors


class GrpcPlugin(Plugin):
    name = "sw_grpc"
    instruments = ("grpcio>=1.49",)
    modules = ("grpc",)
    note = ("gRPC servers and channels, sync and `grpc.aio` (`grpc.server`, `grpc.insecure_channel`, ...); "
            "the agent's own and Ray's internal gRPC are left alone")

    def _install(self) -> None:
        import grpc

        server_interceptor, client_interceptor = _sync_classes(grpc)
        # server(thread_pool, handlers, interceptors, ...)
        self.wrap(grpc, "server", _interceptor_factory(lambda args, kwargs: [server_interceptor()], 2))
        self.wrap(grpc, "insecure_channel", _sync_channel(client_interceptor))
        self.wrap(grpc, "secure_channel", _sync_channel(client_interceptor))
        self.when_imported("grpc.aio", self._install_aio)

    def _install_aio(self) -> None:
        from grpc import aio

        server_interceptor, client_interceptors = _aio_classes(aio)

        def client(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
            return client_interceptors(_target(args, kwargs))

        # server(migration_thread_pool, handlers, interceptors, ...)
        self.wrap(aio, "server", _interceptor_factory(lambda args, kwargs: [server_interceptor()], 2))
        # insecure_channel(target, options, compression, interceptors); secure_channel(target, credentials, ...)
        self.wrap(aio, "insecure_channel", _interceptor_factory(client, 3))
        self.wrap(aio, "secure_channel", _interceptor_factory(client, 4))


plugin = GrpcPlugin()
