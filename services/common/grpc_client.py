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


def client_credentials(s):
    """TLS credentials of a client from the settings: the CA that signs the apis' certificates and,
    for mutual TLS, the client's own certificate and key."""
    def read(path):
        with open(path, "rb") as fh:
            return fh.read()
    cert = key = None
    if s.grpc_tls_client_cert_file and s.grpc_tls_client_key_file:
        cert, key = read(s.grpc_tls_client_cert_file), read(s.grpc_tls_client_key_file)
    return grpc.ssl_channel_credentials(root_certificates=read(s.grpc_tls_ca_file) if s.grpc_tls_ca_file else None,
                                        private_key=key, certificate_chain=cert)


def channel(address, default_timeout=None, interceptors=()):
    """A channel whose unary calls carry the trace context and, unless the caller sets one, the
    deadline ONETHING_GRPC_TIMEOUT_SECONDS: no call waits without bound. TLS (and the client's
    certificate for mutual TLS) when the settings say so (ONETHING_GRPC_TLS*). `interceptors` run
    before the trace interceptor (they see the metadata as the caller gave it)."""
    from services.common.config import settings
    s = settings()
    timeout = s.grpc_timeout_seconds if default_timeout is None else default_timeout
    if s.grpc_tls:
        options = [("grpc.ssl_target_name_override", s.grpc_tls_server_name)] if s.grpc_tls_server_name else []
        raw = grpc.secure_channel(address, client_credentials(s), options=options)
    else:
        raw = grpc.insecure_channel(address)
    return grpc.intercept_channel(raw, *interceptors, _TraceInterceptor(timeout))
