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
    def _details(self, d):
        metadata = list(d.metadata or [])
        for key, value in telemetry.inject_headers().items():
            metadata.append((key.lower(), value))
        return _CallDetails(d.method, d.timeout, metadata, d.credentials,
                            getattr(d, "wait_for_ready", None), getattr(d, "compression", None))

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._details(details), request_iterator)


def channel(address):
    return grpc.intercept_channel(grpc.insecure_channel(address), _TraceInterceptor())
