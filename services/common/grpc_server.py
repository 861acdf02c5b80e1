"""Native grpcio server for the api role: health checking, server reflection, a server span per
call continuing the caller's trace, and domain errors mapped to gRPC status codes.

Every call goes through one interceptor, before any handler runs:
- who is calling: the RPC's access policy (services/common/policy.py: the roles that may call it;
  an RPC without a policy is refused), the bearer token (missing, expired, forged, alg none, an
  unknown key: UNAUTHENTICATED), the role (PERMISSION_DENIED); the verified caller is then current
  for the handler (`policy.current()`), which applies the RPC's ownership rule; nothing is parsed
  for a caller refused here;
- the request bytes are parsed here (not by grpcio, which answers bytes it cannot parse, such as
  invalid UTF-8 in a string field, with INTERNAL/UNKNOWN): what cannot be parsed is INVALID_ARGUMENT,
  naming the field that holds invalid UTF-8;
- the parsed message is walked field by field with its descriptor (services/common/limits.py):
  every string, bytes, repeated and map field against its size limit, every enum against its
  declared values; a violation is INVALID_ARGUMENT naming the field and the limit;
- streams take a slot of their own kind (client streams: uploads; server streams: watches), per
  caller and overall; those that run on the thread pool (uploads, and server streams whose handler
  is a plain generator, such as DownloadMaterial) also take one of the pool's stream slots, well
  below its threads, so unary calls always have threads left (RESOURCE_EXHAUSTED when none is
  free); a client stream that sends nothing for a while, and any stream that lasts too long, is
  ended with DEADLINE_EXCEEDED (services/common/streams.py).

The server is grpc.aio's, on an asyncio loop of its own thread: a servicer method written as a plain
function or generator runs on the server's thread pool (ONETHING_GRPC_THREADS) with a servicer
context that behaves as the sync server's (is_active, add_callback, abort_with_status, code), a
server stream taking a thread only while it makes its next message; one written as `async def`
(intake's WatchCase) runs on the loop and holds no thread while it waits, so a thousand of them
cost no more threads than one. The interceptor wraps either kind the same way.
Refusals follow the richer gRPC error model: besides code and message, a google.rpc.Status in the
`grpc-status-details-bin` trailer with google.rpc.BadRequest (the fields and why), RetryInfo (for
capacity) and google.rpc.LocalizedMessage (zh-CN, for the person at the window).

Every call but health checks and reflection is counted and timed (grpc_server_started_total,
grpc_server_handled_total by status code name, grpc_server_handling_seconds; a stream once, when it
ends). Health follows readiness (services/common/readiness.py): the overall "" service and every named
service are NOT_SERVING while the database, broker or S3 the process uses does not answer, and SERVING
again when it does (a server without a readiness checker, as in unit tests, is always SERVING).

The server binds ONETHING_GRPC_BIND_HOST (127.0.0.1) and serves TLS when a certificate and key are
set (ONETHING_GRPC_TLS_CERT_FILE / _KEY_FILE), mutual TLS with ONETHING_GRPC_TLS_CLIENT_AUTH=1 (client
certificates checked against ONETHING_GRPC_TLS_CA_FILE)."""
import asyncio
import contextvars
import inspect
import logging
import signal
import threading
import time
from concurrent import futures
from dataclasses import replace
from typing import NoReturn

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from services.common import limits, ops, policy, readiness, telemetry
from services.common.config import refuse_defaults_in_production, settings
from services.common.errors import ZH_FALLBACK, DeadlineExceeded, DomainError, FieldViolation, InvalidArgument
from services.common.outages import is_outage
from services.common.streams import DeadlineContext, StreamGate, StreamLimits, guarded

log = logging.getLogger(__name__)
ZH_LOCALE = "zh-CN"



def _context_from_metadata(grpc_context):
    carrier = {k: v for k, v in (grpc_context.invocation_metadata() or ()) if isinstance(v, str)}
    return telemetry.extract_context(carrier)


# --- the richer error model -----------------------------------------------------------------------

def rich_status(code_name, message, violations=(), zh=None, retry_after_s=None):
    """A grpc.Status whose trailing metadata carries google.rpc.Status with BadRequest (when
    fields are named), RetryInfo (when a retry later may work) and LocalizedMessage (zh-CN: the
    error's own Chinese message or its code's fallback)."""
    code = getattr(grpc.StatusCode, code_name)
    status = status_pb2.Status(code=code.value[0], message=message)
    if violations:
        bad = error_details_pb2.BadRequest()
        for v in violations:
            fv = bad.field_violations.add(field=v.field, description=v.description, reason=v.reason)
            if v.zh:
                fv.localized_message.CopyFrom(error_details_pb2.LocalizedMessage(locale=ZH_LOCALE, message=v.zh))
        status.details.add().Pack(bad)
    if retry_after_s:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(retry_after_s * 1e9))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    status.details.add().Pack(error_details_pb2.LocalizedMessage(
        locale=ZH_LOCALE, message=zh or ZH_FALLBACK.get(code_name, ZH_FALLBACK["INTERNAL"])))
    return rpc_status.to_status(status)


# --- reading requests -----------------------------------------------------------------------------

def _descriptor_of(parse):
    return getattr(getattr(parse, "__self__", None), "DESCRIPTOR", None)


def parse_request(parse, raw):
    """The request message from its wire bytes, checked against the limits and enum ranges; any
    problem is InvalidArgument naming the field."""
    if parse is None:
        return raw
    descriptor = _descriptor_of(parse)
    try:
        message = parse(raw)
    except Exception:
        name = descriptor.name if descriptor is not None else "request"
        path = limits.invalid_utf8_path(descriptor, raw) if descriptor is not None else None
        if path:
            raise InvalidArgument(
                f"{path} is not valid UTF-8 text; text fields must be UTF-8",
                violations=[FieldViolation(path, "not valid UTF-8 text", f"字段 {path} 含有无效的文字编码（须为 UTF-8）。",
                                           "INVALID_UTF8")]) from None
        raise InvalidArgument(f"the request could not be read as a {name} message (not protobuf, or a text field "
                              "is not valid UTF-8)", zh="请求格式有误，无法读取，请检查后重新提交。") from None
    violations = limits.check_message(message)
    if violations:
        more = f" (and {len(violations) - 1} more problems)" if len(violations) > 1 else ""
        zh_more = f"（另有 {len(violations) - 1} 处问题）" if len(violations) > 1 else ""
        raise InvalidArgument(violations[0].description + more, violations=violations,
                              zh=violations[0].zh + zh_more)
    return message


# --- streams ------------------------------------------------------------------------------------

def _peer_host(peer):
    """ipv4:127.0.0.1:5555 -> 127.0.0.1; ipv6:[::1]:5555 -> [::1]; the port differs per connection,
    the caller does not."""
    peer = (peer or "").replace("%5B", "[").replace("%5D", "]")
    scheme, _, rest = peer.partition(":")
    if scheme in ("ipv4", "ipv6") and ":" in rest:
        return rest.rsplit(":", 1)[0]
    return peer


def caller_of(context):
    """Who holds stream slots: the verified token's subject, else the peer's address."""
    verified = policy.current_or_none()
    if verified is not None and verified.actor is not None:
        return "sub:" + verified.sub
    metadata = context.invocation_metadata() or ()
    if any(k == "authorization" for k, _ in metadata):
        try:
            from services.common import auth
            return "sub:" + auth.actor_from_metadata(metadata).sub
        except Exception:
            pass
    return "peer:" + _peer_host(context.peer())


class StreamGuard:
    """The slots of one api server's streams and their time limits."""

    def __init__(self, stream_limits):
        self.limits = stream_limits
        self.uploads = StreamGate("uploads", stream_limits.uploads_total, stream_limits.uploads_per_caller,
                                  stream_limits.retry_after_s)
        self.watches = StreamGate("watches", stream_limits.watches_total, stream_limits.watches_per_caller,
                                  stream_limits.retry_after_s)
        # server streams whose handler runs on the pool (a plain generator): their own share of it
        self.pooled = StreamGate("streams", stream_limits.pool_streams,
                                 min(stream_limits.watches_per_caller, stream_limits.pool_streams),
                                 stream_limits.retry_after_s)

    def open(self, gate, context):
        release = gate.acquire(caller_of(context))
        context.add_callback(release)  # given back when the call ends, however it ends
        return release


# --- the wrapper around every method ------------------------------------------------------------

def _wrap(behavior, method, parse, request_streaming, response_streaming, guard, policies=None, is_async=False):
    def who(context, span):
        """The gate of the access policy; the verified caller, bound for the handler."""
        caller = policy.authorize(method, context.invocation_metadata(), policies)
        span.set_attribute("enduser.role", caller.role)
        return caller

    def start_span(context):
        span = telemetry.tracer().start_as_current_span(
            method, context=_context_from_metadata(context), kind=telemetry.trace.SpanKind.SERVER,
            record_exception=False, set_status_on_exception=False)
        return span

    def abort(span, exc, context):
        span.set_attribute("rpc.grpc.status_code", exc.code)
        span.set_status(telemetry.trace.Status(telemetry.trace.StatusCode.ERROR, exc.message))
        context.abort_with_status(rich_status(exc.code, exc.message, exc.violations, exc.zh, exc.retry_after_s))

    def abort_unexpected(span, exc, context):
        """Anything not a domain error: the store or the object storage away is UNAVAILABLE (worth a
        retry), the rest INTERNAL; the details go to the log and the span, not to the caller."""
        ref = format(span.get_span_context().trace_id, "032x")
        span.record_exception(exc)
        unavailable = is_outage(exc)
        code = "UNAVAILABLE" if unavailable else "INTERNAL"
        span.set_status(telemetry.trace.Status(telemetry.trace.StatusCode.ERROR, repr(exc)))
        if unavailable:  # expected now and then (a store restarting): one line, no traceback
            log.warning("%s answered UNAVAILABLE (trace %s): %s: %s", method, ref, type(exc).__name__, exc)
        else:
            log.error("%s failed (trace %s)", method, ref, exc_info=exc)
        context.abort_with_status(rich_status(code, ("a store the service needs is not answering; try again shortly"
                                                     if unavailable else "the service failed") + f" (trace {ref})"))

    def fail(span, exc, context):
        """A handler's exception as the caller gets it: a domain refusal with its code, an abort the
        handler made as it was, anything else UNAVAILABLE or INTERNAL (abort_unexpected)."""
        if isinstance(exc, DomainError):
            abort(span, exc, context)
        if isinstance(exc, grpc.RpcError) or context.code() is not None:  # aborted on purpose
            raise exc
        abort_unexpected(span, exc, context)

    def stream_span(context):
        """A server stream's span (current only while the handler runs between two messages; ended
        once, when the stream ends, fails or the client goes away), its end, and the context with the
        stream's time limit."""
        span = telemetry.tracer().start_span(method, context=_context_from_metadata(context),
                                             kind=telemetry.trace.SpanKind.SERVER)
        ended: list = []

        def end_once():
            if not ended:
                ended.append(True)
                span.end()

        context.add_callback(end_once)
        return span, end_once, DeadlineContext(context, time.monotonic() + guard.limits.max_s)

    def current(span):
        return telemetry.trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False)

    def finished(span, limited, context):
        """The handler has no more: a stream its time limit ended says so."""
        if limited.expired() and context.is_active():
            abort(span, _stream_expired(guard.limits.max_s), context)

    def requests_of(raw, context, deadline):
        """The request (unary) or the checked messages of the client stream, within its limits."""
        if not request_streaming:
            return parse_request(parse, raw)
        guard.open(guard.uploads, context)
        return (parse_request(parse, r) for r in guarded(raw, guard.limits.idle_s, deadline, "upload"))

    def unary(raw, context):
        with start_span(context) as span:
            try:
                bound = policy.bind(who(context, span))
                try:
                    deadline = time.monotonic() + guard.limits.max_s
                    return behavior(requests_of(raw, context, deadline), context)
                finally:
                    policy.unbind(bound)
            except Exception as exc:
                fail(span, exc, context)

    def streaming(raw, context):
        span, end_once, limited = stream_span(context)
        iterator = caller = None
        try:
            while True:
                with current(span):
                    bound = None
                    try:
                        if iterator is None:
                            caller = who(context, span)
                            bound = policy.bind(caller)
                            argument = requests_of(raw, context, limited.deadline)
                            if not request_streaming:
                                guard.open(guard.watches, context)
                                guard.open(guard.pooled, context)
                            iterator = iter(behavior(argument, limited))
                        elif limited.expired():
                            raise _stream_expired(guard.limits.max_s)
                        else:
                            bound = policy.bind(caller)
                        item = next(iterator)
                    except StopIteration:
                        finished(span, limited, context)
                        return
                    except Exception as exc:
                        fail(span, exc, context)
                    finally:
                        if bound is not None:
                            policy.unbind(bound)
                yield item
        finally:
            end_once()

    # the same for a handler written as `async def` (it runs on the loop; a request stream is not
    # taken by one: uploads stay on the pool)
    async def async_unary(raw, context):
        with start_span(context) as span:
            try:
                bound = policy.bind(who(context, span))
                try:
                    return await behavior(parse_request(parse, raw), context)
                finally:
                    policy.unbind(bound)
            except Exception as exc:
                fail(span, exc, context)

    async def async_streaming(raw, context):
        span, end_once, limited = stream_span(context)
        iterator = caller = None
        try:
            while True:
                with current(span):
                    bound = None
                    try:
                        if iterator is None:
                            caller = who(context, span)
                            bound = policy.bind(caller)
                            argument = parse_request(parse, raw)
                            guard.open(guard.watches, context)  # no thread: no pool slot
                            iterator = behavior(argument, limited)
                        elif limited.expired():
                            raise _stream_expired(guard.limits.max_s)
                        else:
                            bound = policy.bind(caller)
                        item = await iterator.__anext__()
                    except StopAsyncIteration:
                        finished(span, limited, context)
                        return
                    except Exception as exc:
                        fail(span, exc, context)
                    finally:
                        if bound is not None:
                            policy.unbind(bound)
                yield item
        finally:
            try:
                if iterator is not None:
                    await iterator.aclose()  # the handler's own clean-up, now (a client gone included)
            finally:
                end_once()

    if is_async:
        if request_streaming:
            raise TypeError(f"{method}: a client stream's handler runs on the pool; write it as a plain function")
        return async_streaming if response_streaming else async_unary
    return streaming if response_streaming else unary


def _stream_expired(max_s):
    return DeadlineExceeded(f"the stream reached the server's time limit of {max_s:g} s; open it again to go on",
                            zh="连接时间已达上限，请重新打开。")


# --- metrics ------------------------------------------------------------------------------------

def _method_labels(method):
    """/onething.intake.v1.IntakeService/SubmitCase -> (onething.intake.v1.IntakeService, SubmitCase)."""
    service, _, name = method.lstrip("/").rpartition("/")
    return service or "unknown", name or method


def _code_name(context, otherwise):
    """The status the call ended with (set by abort or set_code), or `otherwise` when none was set."""
    code = context.code()
    return code.name if isinstance(code, grpc.StatusCode) else otherwise


class _CallMeasure:
    """One call's count at its start and its status and duration at its end (once, whichever way
    it ends)."""

    def __init__(self, method):
        self.labels = _method_labels(method)
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._ended = False
        ops.GRPC_STARTED.labels(*self.labels).inc()

    def end(self, code_name):
        with self._lock:
            if self._ended:
                return
            self._ended = True
        ops.GRPC_HANDLED.labels(*self.labels, code_name).inc()
        ops.GRPC_SECONDS.labels(*self.labels).observe(time.monotonic() - self.started)


def _measured(behavior, method, response_streaming):
    if not response_streaming:
        def unary(request, context):
            measure = _CallMeasure(method)
            try:
                response = behavior(request, context)
            except BaseException:
                measure.end(_code_name(context, "UNKNOWN"))
                raise
            measure.end(_code_name(context, "OK"))
            return response
        return unary

    def streaming(request, context):
        measure = _CallMeasure(method)
        # a client that goes away ends the call without ending the generator
        context.add_callback(lambda: measure.end(_code_name(context, "CANCELLED")))
        try:
            yield from behavior(request, context)
        except GeneratorExit:
            measure.end(_code_name(context, "CANCELLED"))
            raise
        except BaseException:
            measure.end(_code_name(context, "UNKNOWN"))
            raise
        measure.end(_code_name(context, "OK"))
    return streaming


def _measured_async(behavior, method, response_streaming):
    if not response_streaming:
        async def unary(request, context):
            measure = _CallMeasure(method)
            try:
                response = await behavior(request, context)
            except asyncio.CancelledError:
                measure.end(_code_name(context, "CANCELLED"))
                raise
            except BaseException:
                measure.end(_code_name(context, "UNKNOWN"))
                raise
            measure.end(_code_name(context, "OK"))
            return response
        return unary

    async def streaming(request, context):
        measure = _CallMeasure(method)
        context.add_callback(lambda: measure.end(_code_name(context, "CANCELLED")))
        inner = behavior(request, context)
        try:
            async for item in inner:
                yield item
        except (GeneratorExit, asyncio.CancelledError):
            measure.end(_code_name(context, "CANCELLED"))
            raise
        except BaseException:
            measure.end(_code_name(context, "UNKNOWN"))
            raise
        finally:
            await inner.aclose()
        measure.end(_code_name(context, "OK"))
    return streaming


# --- the sync server's servicer context over a grpc.aio call ------------------------------------

class _Aborted(Exception):
    """What abort() raises in a handler (as the sync server's does); the call then ends with the
    status it was given."""


_END = object()


class _CallContext:
    """The servicer context every wrapped handler sees, sync or async: the sync server's ways
    (is_active, add_callback, code, abort/abort_with_status raising) over a grpc.aio call. What the
    handler sets (code, details, trailing metadata, an abort) is handed to the call on the loop when
    the handler returns or fails (`settle`, `fail`); callbacks run once, when the call ends."""

    def __init__(self, call):
        self._call = call
        self._code = self._details = None
        self._trailing: tuple = ()
        self._ended = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list = []
        call.add_done_callback(lambda _call: self._end())

    def _end(self):
        with self._lock:
            self._ended.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("a call's end callback failed")

    # what handlers and the interceptor read
    def invocation_metadata(self):
        return self._call.invocation_metadata()

    def peer(self):
        return self._call.peer()

    def auth_context(self):
        return self._call.auth_context()

    def time_remaining(self):
        return self._call.time_remaining()

    def is_active(self):
        return not self._ended.is_set()

    def add_callback(self, callback):
        """`callback()` when the call ends, however it ends (at once if it has ended already)."""
        with self._lock:
            if not self._ended.is_set():
                self._callbacks.append(callback)
                return True
        callback()
        return False

    # what they set
    def code(self):
        return self._code

    def details(self):
        return self._details

    def set_code(self, code):
        self._code = code

    def set_details(self, details):
        self._details = details

    def set_trailing_metadata(self, metadata):
        self._trailing = tuple(metadata or ())

    def abort(self, code, details="", trailing_metadata=None):
        if code is None or code == grpc.StatusCode.OK:
            raise ValueError("abort() needs a status code other than OK")
        self._code, self._details = code, details
        if trailing_metadata is not None:
            self._trailing = tuple(trailing_metadata)
        raise _Aborted(details)

    def abort_with_status(self, status):
        self.abort(status.code, status.details, status.trailing_metadata)

    # handed to the call (on the loop)
    def settle(self):
        if self._trailing:
            self._call.set_trailing_metadata(self._trailing)
        if self._code is not None:
            self._call.set_code(self._code)
        if self._details is not None:
            self._call.set_details(self._details)

    async def fail(self, exc) -> NoReturn:
        """End the call with the status the handler set (an abort, or set_code before it failed);
        without one, `exc` goes on to grpc (UNKNOWN)."""
        if self._code is not None and self._code != grpc.StatusCode.OK:
            await self._call.abort(self._code, self._details or "", self._trailing)
        raise exc


class _BlockingRequests:
    """A client stream's messages as the sync server gives them: a blocking iterator (read on the
    loop), which raises grpc.RpcError once the call has ended."""

    def __init__(self, requests, context, loop):
        self._requests, self._context, self._loop = requests, context, loop
        self._reader = None  # made at the first read: a stream refused before it is read is never touched

    def __iter__(self):
        return self

    async def _read(self):
        if self._reader is None:
            self._reader = self._requests.__aiter__()
        try:
            return await self._reader.__anext__()
        except StopAsyncIteration:
            return _END

    def __next__(self):
        if not self._context.is_active():
            raise grpc.RpcError("the call has ended")
        pending = asyncio.run_coroutine_threadsafe(self._read(), self._loop)
        while True:
            try:
                message = pending.result(timeout=0.5)
                break
            except futures.TimeoutError:
                if not self._context.is_active():
                    pending.cancel()
                    raise grpc.RpcError("the call has ended") from None
        if message is _END:
            raise StopIteration
        return message


def _on_pool(behavior, request_streaming, response_streaming, pool):
    """A sync handler (already wrapped) as grpc.aio calls it: run on `pool`, in a context of its
    own (contextvars), with a _CallContext; a server stream takes a thread only while it makes its
    next message."""
    def begin(request, call):
        loop = asyncio.get_running_loop()
        context = _CallContext(call)
        argument = _BlockingRequests(request, context, loop) if request_streaming else request
        return loop, context, argument, contextvars.Context().run

    if not response_streaming:
        async def unary(request, call):
            loop, context, argument, run = begin(request, call)
            try:
                response = await loop.run_in_executor(pool, run, behavior, argument, context)
            except Exception as exc:
                await context.fail(exc)
            context.settle()
            return response
        return unary

    async def streaming(request, call):
        _loop, context, argument, run = begin(request, call)
        pending = iterator = None
        try:
            pending = pool.submit(run, lambda: iter(behavior(argument, context)))
            iterator = await asyncio.wrap_future(pending)
            while True:
                pending = pool.submit(run, next, iterator, _END)
                item = await asyncio.wrap_future(pending)
                pending = None
                if item is _END:
                    break
                yield item
        except Exception as exc:
            await context.fail(exc)
        finally:
            if iterator is not None:  # closed on the pool once the message it is making, if any, is made
                close = iterator.close
                if pending is None:
                    pool.submit(run, close)
                else:
                    pending.add_done_callback(lambda _: pool.submit(run, close))
        context.settle()
    return streaming


class _Interceptor(grpc.aio.ServerInterceptor):
    def __init__(self, guard, policies=None, pool=None):
        self.guard = guard
        self.policies = policies
        self.pool = pool

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(("/grpc.health", "/grpc.reflection")):
            return handler
        method = handler_call_details.method
        parse = handler.request_deserializer
        pool = self.pool

        # grpcio hands the raw bytes over (no deserializer): they are parsed inside the wrapper,
        # where a request that cannot be read is INVALID_ARGUMENT rather than grpcio's INTERNAL.
        # A plain handler is wrapped as before and run on the pool; an `async def` one on the loop.
        def wrapped(behavior, request_streaming, response_streaming):
            if inspect.iscoroutinefunction(behavior) or inspect.isasyncgenfunction(behavior):
                inner = _wrap(behavior, method, parse, request_streaming, response_streaming, self.guard,
                              self.policies, is_async=True)
                measured = _measured_async(inner, method, response_streaming)

                if response_streaming:
                    async def streaming(request, call):
                        context = _CallContext(call)
                        outer = measured(request, context)
                        try:
                            async for item in outer:
                                yield item
                        except Exception as exc:
                            await context.fail(exc)
                        finally:
                            await outer.aclose()
                        context.settle()
                    return streaming

                async def unary(request, call):
                    context = _CallContext(call)
                    try:
                        response = await measured(request, context)
                    except Exception as exc:
                        await context.fail(exc)
                    context.settle()
                    return response
                return unary
            return _on_pool(_measured(_wrap(behavior, method, parse, request_streaming, response_streaming,
                                            self.guard, self.policies), method, response_streaming),
                            request_streaming, response_streaming, pool)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                wrapped(handler.unary_unary, False, False), None, handler.response_serializer)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                wrapped(handler.stream_unary, True, False), None, handler.response_serializer)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                wrapped(handler.unary_stream, False, True), None, handler.response_serializer)
        return grpc.stream_stream_rpc_method_handler(
            wrapped(handler.stream_stream, True, True), None, handler.response_serializer)


def server_credentials(s=None):
    """TLS credentials of the api server from the settings (None: plaintext): its certificate and
    key; under mutual TLS the CA that signs the clients' certificates, and a client without one is
    refused during the handshake."""
    s = s or settings()
    if not s.grpc_tls_server:
        if s.grpc_tls_client_auth:
            raise RuntimeError("mutual TLS (ONETHING_GRPC_TLS_CLIENT_AUTH=1) needs the server's certificate and key "
                               "(ONETHING_GRPC_TLS_CERT_FILE, ONETHING_GRPC_TLS_KEY_FILE)")
        return None

    def read(path):
        with open(path, "rb") as fh:
            return fh.read()
    ca = read(s.grpc_tls_ca_file) if s.grpc_tls_ca_file else None
    if s.grpc_tls_client_auth and ca is None:
        raise RuntimeError("mutual TLS (ONETHING_GRPC_TLS_CLIENT_AUTH=1) needs the CA of the clients' certificates "
                           "(ONETHING_GRPC_TLS_CA_FILE)")
    return grpc.ssl_server_credentials([(read(s.grpc_tls_key_file), read(s.grpc_tls_cert_file))],
                                       root_certificates=ca, require_client_auth=s.grpc_tls_client_auth)


class _Health:
    """grpc_health's aio servicer, set from any thread as the sync one was (set, enter_graceful_shutdown):
    each change is made on the server's loop."""

    def __init__(self, servicer, loop):
        self.servicer, self._loop = servicer, loop

    def _on_loop(self, coroutine):
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    def set(self, service, status):
        self._on_loop(self.servicer.set(service, status))

    def enter_graceful_shutdown(self):
        self._on_loop(self.servicer.enter_graceful_shutdown())


class ApiServer:
    """One grpc.aio server: the service's servicers plus health and reflection, on an asyncio loop
    of its own thread (started here; the caller's thread is not needed). `policies`: the
    access policy table (services/common/policy.py; the registry unless a test brings its own);
    `host`: the bind address (ONETHING_GRPC_BIND_HOST unless given); `checker`: the readiness its
    health follows (services/common/readiness.py; the process's own, which services/common/ops.py
    starts, unless given; none: always SERVING). Plain servicer methods run on a pool of
    ONETHING_GRPC_THREADS threads, which is also the loop's default executor (what an `async def`
    handler hands blocking work to with run_in_executor(None, ...))."""

    def __init__(self, port, registrations, service_names, host=None, max_workers=None,
                 stream_limits=None, policies=None, checker=None):
        refuse_defaults_in_production("api")
        s = settings()
        host = s.grpc_bind_host if host is None else host
        stream_limits = stream_limits or StreamLimits.from_settings(settings())
        if max_workers:
            stream_limits = replace(stream_limits, threads=max_workers).checked()
        self.stream_guard = StreamGuard(stream_limits)
        self.pool = futures.ThreadPoolExecutor(max_workers=stream_limits.threads, thread_name_prefix="grpc-api")
        self.loop = asyncio.new_event_loop()
        self.loop.set_default_executor(self.pool)
        self._thread = threading.Thread(target=self.loop.run_forever, name="grpc-api-loop", daemon=True)
        self._thread.start()
        self.service_names = service_names
        address = f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
        credentials = server_credentials(s)
        self.tls = credentials is not None

        async def build():
            server = grpc.aio.server(migration_thread_pool=self.pool,
                                     interceptors=[_Interceptor(self.stream_guard, policies, self.pool)],
                                     options=[("grpc.max_receive_message_length", 8 * 1024 * 1024)])
            for add, servicer in registrations:
                add(servicer, server)
            health_servicer = health_aio.HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
            names = [*list(service_names), health.SERVICE_NAME, reflection.SERVICE_NAME]
            reflection.enable_server_reflection(names, server)
            bound = (server.add_secure_port(address, credentials) if credentials is not None
                     else server.add_insecure_port(address))
            return server, health_servicer, bound

        try:
            self.server, health_servicer, self.port = self._run(build())
        except BaseException:
            self._close_loop()
            raise
        self.health = _Health(health_servicer, self.loop)
        self.checker = checker if checker is not None else readiness.current()
        self._unsubscribe = None
        self._stopped = False

    def _run(self, coroutine, timeout=None):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def _close_loop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self.loop.close()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _set_health(self, status):
        for name in [*list(self.service_names), ""]:
            self.health.set(name, status)

    def _follow(self, summary):
        """Health as readiness says: NOT_SERVING while a dependency is down (a graceful shutdown
        that has begun keeps every service NOT_SERVING whatever comes after)."""
        if summary.ready:
            self._set_health(health_pb2.HealthCheckResponse.SERVING)
            log.info("gRPC api SERVING: its dependencies answer")
        else:
            self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
            log.warning("gRPC api NOT_SERVING: %s not answering", ", ".join(summary.down))

    def start(self):
        self._run(self.server.start())
        if self.checker is None:
            self._set_health(health_pb2.HealthCheckResponse.SERVING)
        else:  # NOT_SERVING until every dependency has answered once
            self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
            self._unsubscribe = self.checker.subscribe(self._follow)
        log.info("gRPC api serving on port %s (%s)", self.port, "TLS" if self.tls else "plaintext")
        return self

    def stop(self, grace=2.0):
        if self._stopped:
            return
        self._stopped = True
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.health.enter_graceful_shutdown()
        try:
            self._run(self.server.stop(grace))
        finally:
            self._close_loop()

    def serve_forever(self, on_stop=None):
        done = threading.Event()

        def handle(signum, frame):
            done.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
        self.start()
        done.wait()
        if on_stop:
            on_stop()
        self.stop()
