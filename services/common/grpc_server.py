"""Native grpcio server for the api role: health checking, server reflection, a server span per
call continuing the caller's trace, and domain errors mapped to gRPC status codes."""
import logging
import signal
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common import telemetry
from services.common.errors import DomainError

log = logging.getLogger(__name__)


def _unavailable_errors():
    import urllib3
    from pymongo.errors import AutoReconnect, ConnectionFailure, ServerSelectionTimeoutError
    return (AutoReconnect, ConnectionFailure, ServerSelectionTimeoutError, urllib3.exceptions.HTTPError,
            ConnectionError, TimeoutError)


_UNAVAILABLE = _unavailable_errors()


def _context_from_metadata(grpc_context):
    carrier = {k: v for k, v in (grpc_context.invocation_metadata() or ()) if isinstance(v, str)}
    return telemetry.extract_context(carrier)


def _wrap(behavior, method, streaming_response):
    def start_span(context):
        span = telemetry.tracer().start_as_current_span(
            method, context=_context_from_metadata(context), kind=telemetry.trace.SpanKind.SERVER,
            record_exception=False, set_status_on_exception=False)
        return span

    def abort(span, exc, context):
        span.set_attribute("rpc.grpc.status_code", exc.code)
        span.set_status(telemetry.trace.Status(telemetry.trace.StatusCode.ERROR, exc.message))
        context.abort(getattr(grpc.StatusCode, exc.code), exc.message)

    def abort_unexpected(span, exc, context):
        """Anything not a domain error: the store or the object storage away is UNAVAILABLE (worth a
        retry), the rest INTERNAL; the details go to the log and the span, not to the caller."""
        ref = format(span.get_span_context().trace_id, "032x")
        span.record_exception(exc)
        unavailable = isinstance(exc, _UNAVAILABLE)
        code = grpc.StatusCode.UNAVAILABLE if unavailable else grpc.StatusCode.INTERNAL
        span.set_status(telemetry.trace.Status(telemetry.trace.StatusCode.ERROR, repr(exc)))
        log.error("%s failed (trace %s)", method, ref, exc_info=exc)
        context.abort(code, ("a store the service needs is not answering; try again shortly" if unavailable
                             else "the service failed") + f" (trace {ref})")

    def unary(request_or_iterator, context):
        with start_span(context) as span:
            try:
                return behavior(request_or_iterator, context)
            except DomainError as exc:
                abort(span, exc, context)
            except grpc.RpcError:
                raise
            except Exception as exc:
                if context.code() is not None:  # the handler aborted on purpose
                    raise
                abort_unexpected(span, exc, context)

    def streaming(request_or_iterator, context):
        # the span is current only while the handler runs between two messages, and ends when the
        # stream ends, fails or the client goes away, whichever comes first
        span = telemetry.tracer().start_span(method, context=_context_from_metadata(context),
                                             kind=telemetry.trace.SpanKind.SERVER)
        ended = []

        def end_once():
            if not ended:
                ended.append(True)
                span.end()

        context.add_callback(end_once)
        iterator = iter(behavior(request_or_iterator, context))
        try:
            while True:
                with telemetry.trace.use_span(span, end_on_exit=False, record_exception=False,
                                              set_status_on_exception=False):
                    try:
                        item = next(iterator)
                    except StopIteration:
                        return
                    except DomainError as exc:
                        abort(span, exc, context)
                    except Exception as exc:
                        if context.code() is not None:
                            raise
                        abort_unexpected(span, exc, context)
                yield item
        finally:
            end_once()

    return streaming if streaming_response else unary


class _Interceptor(grpc.ServerInterceptor):
    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(("/grpc.health", "/grpc.reflection")):
            return handler
        method = handler_call_details.method
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap(handler.unary_unary, method, False), handler.request_deserializer, handler.response_serializer)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap(handler.stream_unary, method, False), handler.request_deserializer, handler.response_serializer)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap(handler.unary_stream, method, True), handler.request_deserializer, handler.response_serializer)
        return grpc.stream_stream_rpc_method_handler(
            _wrap(handler.stream_stream, method, True), handler.request_deserializer, handler.response_serializer)


class ApiServer:
    """One grpcio server: the service's servicers plus health and reflection."""

    def __init__(self, port, registrations, service_names, host="127.0.0.1", max_workers=16):
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers),
                                  interceptors=[_Interceptor()],
                                  options=[("grpc.max_receive_message_length", 8 * 1024 * 1024)])
        for add, servicer in registrations:
            add(servicer, self.server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = list(service_names) + [health.SERVICE_NAME, reflection.SERVICE_NAME]
        reflection.enable_server_reflection(names, self.server)
        self.service_names = service_names
        self.port = self.server.add_insecure_port(f"{host}:{port}")

    def start(self):
        self.server.start()
        for name in list(self.service_names) + [""]:
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("gRPC api serving on port %s", self.port)
        return self

    def stop(self, grace=2.0):
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()

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
