"""Tracing for every process: OpenTelemetry SDK, spans written as JSON lines to a local file per
process (read by tools/timeline.py), W3C trace context carried in gRPC metadata and AMQP headers,
and the case number kept as a span attribute so a case can be looked up."""
import json
import os
import threading

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from services.common.config import settings
from services.common.privacy import install_log_masking, mask_text

CASE_ATTR = "onething.case_no"
_provider = None
_service = None


class JsonLinesExporter(SpanExporter):
    """Appends finished spans to one file per process; one JSON object per line. Text attributes and
    the error description are masked (services.common.privacy): no identity number or phone is
    written, whatever a caller put into a span."""

    def __init__(self, path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self._path = path
        self._lock = threading.Lock()

    def export(self, spans):
        lines = []
        for span in spans:
            ctx = span.get_span_context()
            lines.append(json.dumps({
                "trace_id": format(ctx.trace_id, "032x"),
                "span_id": format(ctx.span_id, "016x"),
                "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
                "name": span.name,
                "service": span.resource.attributes.get("service.name", "?"),
                "kind": span.kind.name,
                "start_ns": span.start_time,
                "end_ns": span.end_time,
                "status": span.status.status_code.name,
                "error": mask_text(span.status.description or ""),
                "attributes": {k: mask_text(v) if isinstance(v, str) else v
                               for k, v in (span.attributes or {}).items()
                               if isinstance(v, (str, int, float, bool))},
            }, ensure_ascii=False))
        with self._lock, open(self._path, "a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        return SpanExportResult.SUCCESS

    def shutdown(self):
        pass


def setup(service_name):
    """Install the tracer provider of this process once; returns a tracer."""
    global _provider, _service
    install_log_masking()  # every process sets up telemetry: its log records are masked from here on
    if _provider is None:
        _service = service_name
        _provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        path = os.path.join(settings().spans_dir, f"{service_name}-{os.getpid()}.jsonl")
        _provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(path)))
        trace.set_tracer_provider(_provider)
    return trace.get_tracer("onething")


def tracer():
    return trace.get_tracer("onething")


def service_name():
    return _service or "unknown"


def inject_headers(carrier=None):
    """W3C trace context of the current span, as a dict of headers."""
    carrier = {} if carrier is None else carrier
    inject(carrier)
    return carrier


def extract_context(carrier):
    return extract(carrier or {})


def mark_case(case_no, span=None):
    if case_no:
        (span or trace.get_current_span()).set_attribute(CASE_ATTR, case_no)


def attach(ctx):
    return otel_context.attach(ctx)


def detach(token):
    otel_context.detach(token)
