"""A small OTLP/HTTP trace receiver for the end-to-end tests: POST /v1/traces with an
application/x-protobuf ExportTraceServiceRequest, as a collector takes it. It keeps the spans it
received (decoded, with their resource's service name and site) and can be taken down: `close()`
refuses connections (the port is closed), `hang()` accepts them and never answers (a collector that
is stuck), `open()` serves again on the same port."""
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


@dataclass
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    service: str
    site: str
    attributes: dict
    links: list = field(default_factory=list)  # [(trace_id, span_id)]


def _value(any_value):
    which = any_value.WhichOneof("value")
    return getattr(any_value, which) if which else None


def decode(request: ExportTraceServiceRequest) -> list[ReceivedSpan]:
    out = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                out.append(ReceivedSpan(
                    trace_id=span.trace_id.hex(), span_id=span.span_id.hex(), parent_id=span.parent_span_id.hex(),
                    name=span.name, kind=span.kind, service=str(resource.get("service.name", "")),
                    site=str(resource.get("onething.site", "")),
                    attributes={a.key: _value(a.value) for a in span.attributes},
                    links=[(link.trace_id.hex(), link.span_id.hex()) for link in span.links]))
    return out


class OtlpReceiver:
    def __init__(self, port: int):
        self.port = port
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._hung: socket.socket | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def open(self):
        self._unhang()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/v1/traces" or "protobuf" not in (self.headers.get("Content-Type") or ""):
                    self.send_error(404 if self.path != "/v1/traces" else 415)
                    return
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                spans = decode(request)
                with receiver._lock:
                    receiver.spans.extend(spans)
                    receiver.requests += 1
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="otlp-receiver", daemon=True).start()
        return self

    def close(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._unhang()

    def hang(self):
        """Listen and never accept: a connection is made, the request is never read or answered."""
        self.close()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(1024)
        self._hung = sock

    def _unhang(self):
        if self._hung is not None:
            self._hung.close()
            self._hung = None

    def of_case(self, case_no: str) -> list[ReceivedSpan]:
        """Every received span of the traces in which a span carries the case number."""
        with self._lock:
            spans = list(self.spans)
        traces = {s.trace_id for s in spans if s.attributes.get("onething.case_no") == case_no}
        return [s for s in spans if s.trace_id in traces]

    def count(self) -> int:
        with self._lock:
            return len(self.spans)
