"""Client channels that carry the current trace context in gRPC metadata."""
import collections

import grpc

from services.common import telemetry


class _CallDetails(collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials",
                                                            "wait_for_ready", "compression")),
                   grpc.ClientCallDetails):
    pass


class _TraceInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.StreamUnaryClientInterceptor,
                        grpc.UnaryStreamClientInterceptor, grpc.StreamStreamClientInterceptor):
    def __init__(self, default_timeout):
        self.default_timeout = default_timeout

    def _details(self, d, bounded=False):
        metadata = list(d.metadata or [])
        for key, value in telemetry.inject_headers().items():
            metadata.append((key.lower(), value))
        timeout = d.timeout if d.timeout is not None or not bounded else self.default_timeout
        return _CallDetails(d.method, timeout, metadata, d.credentials,
                            getattr(d, "wait_for_ready", None), getattr(d, "compression", None))

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details, bounded=True), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._details(details, bounded=True), request_iterator)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)


def channel(address, default_timeout=None):
    """A channel whose unary calls carry the trace context and, unless the caller sets one, the
    deadline ONETHING_GRPC_TIMEOUT_SECONDS: no call waits without bound."""
    from services.common.config import settings
    timeout = settings().grpc_timeout_seconds if default_timeout is None else default_timeout
    return grpc.intercept_channel(grpc.insecure_channel(address), _TraceInterceptor(timeout))
