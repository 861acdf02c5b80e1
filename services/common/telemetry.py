"""Tracing for every process (apis, workers, desks, tools), configured by the standard OTEL_*
variables:

- OTEL_TRACES_EXPORTER: `otlp` (OTLP over HTTP/protobuf to OTEL_EXPORTER_OTLP_ENDPOINT or
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), `console`, `none`, and onething's own `file`, the local
  default: OTLP JSON lines in the span folder (settings().spans_dir), read by tools/timeline.py.
  Several at once: `otlp,file`. OTEL_SDK_DISABLED=true turns tracing off.
- OTEL_EXPORTER_OTLP_PROTOCOL: only `http/protobuf` (grpcio cannot run in the eventlet-patched
  nameko workers, so every process exports the same way).
- OTEL_BSP_*: the batch span processor's queue (bounded: a full queue drops spans, never blocks
  a caller), batch size, delay and export timeout. A collector that is down costs the spans, not
  the speed: the export runs in the processor's own thread, and a failing exporter logs once when
  it starts failing and once when it recovers.
- OTEL_RESOURCE_ATTRIBUTES: more resource attributes (deployment.environment, k8s.pod.name...).

Every span's text attributes, event attributes and status are masked (services.common.privacy)
before any exporter sees them. W3C trace context travels in gRPC metadata and AMQP headers; the
case number is the span attribute `onething.case_no`, so a case can be found across traces and
sites.
"""
import base64
import json
import logging
import operator
import os
import re
import threading
from collections.abc import Mapping, Sequence
from typing import cast

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Link, Status

from services.common.config import SettingsError, settings
from services.common.privacy import install_log_masking, mask_text

CASE_ATTR = "onething.case_no"
SITE_ATTR = "onething.site"
_provider: TracerProvider | None = None
_service: str | None = None
log = logging.getLogger(__name__)


# -- masking ------------------------------------------------------------------------------------
def _masked_attributes(attributes):
    """`attributes` with their text masked: the same object when none of it changes."""
    changed = None
    for key, value in (attributes or {}).items():
        if isinstance(value, str):
            text = mask_text(value)
            if text is not value:
                if changed is None:
                    changed = dict(attributes)
                changed[key] = text
    return attributes if changed is None else changed


def _masked_event(event):
    attributes = _masked_attributes(event.attributes)
    return event if attributes is event.attributes else Event(event.name, attributes, event.timestamp)


def masked(span: ReadableSpan) -> ReadableSpan:
    """A finished span whose text attributes, events and status carry no identity number or phone,
    whatever a caller put into them (an exception message, a form value): a masked copy, or the
    span itself when there is nothing to mask (most spans: no copy is made)."""
    # each read of a ReadableSpan's attributes or events makes a new view: read once, compare to that
    original_status, original_attributes, original_events = span.status, span.attributes, span.events
    status = original_status
    if status.description:
        description = mask_text(status.description)
        if description is not status.description:
            status = Status(status.status_code, description)
    name, attributes = mask_text(span.name), _masked_attributes(original_attributes)
    events = [_masked_event(e) for e in original_events]
    if (name is span.name and attributes is original_attributes and status is original_status
            and all(new is old for new, old in zip(events, original_events, strict=True))):
        return span
    return ReadableSpan(
        name=name, context=span.get_span_context(), parent=span.parent,
        resource=span.resource, attributes=attributes, events=events,
        links=span.links, kind=span.kind, status=status, start_time=span.start_time,
        end_time=span.end_time, instrumentation_scope=span.instrumentation_scope)


class MaskingExporter(SpanExporter):
    """Hands masked copies to the exporter behind it; logs when the exporter starts failing and
    when it recovers (once each, not every batch)."""

    def __init__(self, inner: SpanExporter, name: str):
        self.inner, self.name = inner, name
        self.failing = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export([masked(s) for s in spans])
        except Exception as exc:  # an exporter must never take the process down
            log.debug("span export to %s raised", self.name, exc_info=True)
            result = SpanExportResult.FAILURE
            exc_text = f"{type(exc).__name__}: {exc}"
        else:
            exc_text = ""
        if result is SpanExportResult.FAILURE and not self.failing:
            self.failing = True
            log.warning("span export to %s is failing (%s); spans are dropped until it answers",
                        self.name, exc_text or f"refused, or no answer within {settings().otlp_timeout} s")
        elif result is SpanExportResult.SUCCESS and self.failing:
            self.failing = False
            log.info("span export to %s works again", self.name)
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


# -- OTLP JSON lines on disk ----------------------------------------------------------------------
# A direct encoder of the OTLP/JSON that MessageToDict(encode_spans(spans), use_integers_for_enums=True)
# gives (opentelemetry-exporter-otlp-proto-common), trace and span ids written as hex: the same keys
# and values, without building and walking protobuf messages (json_format is slow). Like protobuf's
# JSON mapping it leaves out every field that holds its default (0, "", an empty list) unless the
# field has presence (a span's status, a KeyValue's value, the members of an AnyValue), writes 64-bit
# integers as decimal strings, enums and 32-bit integers as numbers, bytes as base64 and NaN/inf as
# strings; and like protobuf it refuses what does not fit a field (an int64 out of range, a text with
# lone surrogates), so an attribute that protobuf could not encode is left out here too.
_SPAN_KINDS = {trace.SpanKind.INTERNAL: 1, trace.SpanKind.SERVER: 2, trace.SpanKind.CLIENT: 3,
               trace.SpanKind.PRODUCER: 4, trace.SpanKind.CONSUMER: 5}  # Span.SpanKind
_FLAGS_HAS_IS_REMOTE, _FLAGS_IS_REMOTE = 0x100, 0x200  # SpanFlags, as encode_spans sets them
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_UINT64_MAX, _UINT32_MAX = (1 << 64) - 1, (1 << 32) - 1
_INF = float("inf")


def _text(value) -> str:
    """What a protobuf string field stores of `value`: a str (UTF-8 bytes decoded), never one with
    lone surrogates."""
    if type(value) is str:
        if not value.isascii():
            value.encode()  # UnicodeEncodeError, as protobuf raises
        return value
    if isinstance(value, str):
        return _text(str.__str__(value))
    if isinstance(value, bytes):
        return value.decode()
    raise TypeError(f"bad argument type {type(value).__name__} for a string field")


def _put_text(out: dict, key: str, value) -> None:
    if value is not None:
        value = _text(value)
        if value:
            out[key] = value


def _uint(value, top: int) -> int:
    """What a protobuf unsigned integer field up to `top` stores of `value`."""
    if type(value) is not int:
        if isinstance(value, bool):
            raise TypeError("Expected an int, got a boolean.")
        value = operator.index(value)
    if not 0 <= value <= top:
        raise ValueError(f"Value out of range: {value}")
    return value


def _put_uint64(out: dict, key: str, value) -> None:
    if value is not None:
        value = _uint(value, _UINT64_MAX)
        if value:
            out[key] = str(value)


def _json_double(value: float):
    if -_INF < value < _INF:
        return value
    return "NaN" if value != value else "Infinity" if value > 0 else "-Infinity"


def _any_value(value) -> dict:
    """The AnyValue of an attribute value (the order of the checks is encode_spans' own)."""
    kind = type(value)
    if kind is str:
        if not value.isascii():
            value.encode()
        return {"stringValue": value}
    if kind is bool:
        return {"boolValue": value}
    if kind is int:
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"Value out of range: {value}")
        return {"intValue": str(value)}
    if kind is float:
        return {"doubleValue": _json_double(value)}
    if value is None:
        return {}
    if isinstance(value, str):  # a subclass (bool has none)
        return {"stringValue": _text(value)}
    if isinstance(value, int):
        return _any_value(int.__index__(value))
    if isinstance(value, float):
        return {"doubleValue": _json_double(float.__float__(value))}
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode()}
    if isinstance(value, Sequence):
        values = [_any_value(v) for v in value]
        return {"arrayValue": {"values": values} if values else {}}
    if isinstance(value, Mapping):
        pairs = [_key_value(str(k), v) for k, v in value.items()]
        return {"kvlistValue": {"values": pairs} if pairs else {}}
    raise TypeError(f"Invalid type {type(value)} of value {value}")


def _key_value(key, value) -> dict:
    encoded = _any_value(value)
    if type(key) is not str or not key.isascii():
        key = _text(key)
    return {"key": key, "value": encoded} if key else {"value": encoded}


def _json_attributes(attributes) -> list[dict]:
    """The KeyValues of `attributes`; a value protobuf could not encode is logged and left out, as
    encode_spans does."""
    if not attributes:
        return []
    out = []
    for key, value in attributes.items():
        try:
            out.append(_key_value(key, value))
        except Exception as error:
            log.exception("Failed to encode key %s: %s", key, error)
    return out


def _span_flags(context) -> int:
    return _FLAGS_HAS_IS_REMOTE | _FLAGS_IS_REMOTE if context and context.is_remote else _FLAGS_HAS_IS_REMOTE


def _put_set(out: dict, key: str, value) -> None:
    """`value` under `key` unless it is empty or zero: protobuf's JSON leaves such fields out."""
    if value:
        out[key] = value


def _json_span(span: ReadableSpan) -> dict:
    context = cast(trace.SpanContext, span.get_span_context())
    out: dict = {"traceId": context.trace_id.to_bytes(16, "big").hex(),
                 "spanId": context.span_id.to_bytes(8, "big").hex()}
    trace_state = context.trace_state
    if trace_state:
        text = _text(",".join([f"{key}={value}" for key, value in trace_state.items()]))
        if text:
            out["traceState"] = text
    parent = span.parent
    if parent:
        out["parentSpanId"] = parent.span_id.to_bytes(8, "big").hex()
    _put_text(out, "name", span.name)
    out["kind"] = _SPAN_KINDS[span.kind]
    _put_uint64(out, "startTimeUnixNano", span.start_time)
    _put_uint64(out, "endTimeUnixNano", span.end_time)
    _put_set(out, "attributes", _json_attributes(span.attributes))
    _put_set(out, "droppedAttributesCount", _uint(span.dropped_attributes, _UINT32_MAX))
    _put_set(out, "events", [_json_event(event) for event in span.events or ()])
    _put_set(out, "droppedEventsCount", _uint(span.dropped_events, _UINT32_MAX))
    _put_set(out, "links", [_json_link(link) for link in span.links or ()])
    _put_set(out, "droppedLinksCount", _uint(span.dropped_links, _UINT32_MAX))
    status = span.status
    if status is not None:
        encoded: dict = {}
        _put_text(encoded, "message", status.description)
        code = status.status_code.value
        if code:
            encoded["code"] = code
        out["status"] = encoded
    out["flags"] = _span_flags(parent)
    return out


def _json_event(event) -> dict:
    out: dict = {}
    _put_uint64(out, "timeUnixNano", event.timestamp)
    _put_text(out, "name", event.name)
    _put_set(out, "attributes", _json_attributes(event.attributes))
    _put_set(out, "droppedAttributesCount", _uint(event.dropped_attributes, _UINT32_MAX))
    return out


def _json_link(link) -> dict:
    """A link as encode_spans writes it: its trace state is not part of it."""
    context = link.context
    out: dict = {"traceId": context.trace_id.to_bytes(16, "big").hex(),
                 "spanId": context.span_id.to_bytes(8, "big").hex()}
    _put_set(out, "attributes", _json_attributes(link.attributes))
    _put_set(out, "droppedAttributesCount", _uint(link.dropped_attributes, _UINT32_MAX))
    out["flags"] = _span_flags(context)
    return out


def _json_scope(scope) -> dict:
    out: dict = {}
    if scope is None:
        return out
    _put_text(out, "name", scope.name)
    _put_text(out, "version", scope.version)
    attributes = _json_attributes(scope.attributes)
    if attributes:
        out["attributes"] = attributes
    return out


def otlp_json(spans: Sequence[ReadableSpan]) -> dict:
    """The OTLP/JSON encoding of an ExportTraceServiceRequest holding `spans`: spans grouped by
    resource, then by instrumentation scope, in the order each first appears (as encode_spans)."""
    groups: dict = {}
    last_resource = last_scope = last_group = None
    for span in spans:
        encoded = _json_span(span)
        resource, scope = span.resource, span.instrumentation_scope or None
        if resource is not last_resource or scope is not last_scope or last_group is None:
            # a dict lookup hashes a Resource through json.dumps: only when the resource changes
            by_scope = groups.setdefault(resource, {})
            last_group = by_scope.setdefault(scope, [])
            last_resource, last_scope = resource, scope
        last_group.append(encoded)
    resource_spans = []
    for resource, by_scope in groups.items():
        scope_spans = []
        for scope, encoded_spans in by_scope.items():
            one: dict = {"scope": _json_scope(scope), "spans": encoded_spans}
            _put_text(one, "schemaUrl", scope.schema_url if scope else None)
            scope_spans.append(one)
        attributes = _json_attributes(resource.attributes)
        entry: dict = {"resource": {"attributes": attributes} if attributes else {},
                       "scopeSpans": scope_spans}
        _put_text(entry, "schemaUrl", resource.schema_url)
        resource_spans.append(entry)
    return {"resourceSpans": resource_spans} if resource_spans else {}


SPAN_FILE_RE = re.compile(r"^(?P<process>.+)-(?P<pid>\d+)-(?P<seq>\d{6})\.jsonl$")


class OtlpJsonLinesExporter(SpanExporter):
    """One line per exported batch, each an OTLP/JSON ExportTraceServiceRequest, in
    `<folder>/<service>-<pid>-<seq>.jsonl`. Files are only appended to and never renamed; the next
    seq starts when a file passes `file_bytes`, and the oldest finished files of the folder are
    deleted while it holds more than `keep_bytes` (a file another process still writes is never
    one of them: only files with a later seq of the same process count as finished)."""

    def __init__(self, folder: str, stem: str, file_bytes: int, keep_bytes: int):
        os.makedirs(folder, exist_ok=True)
        self.folder, self.stem = folder, stem
        self.file_bytes, self.keep_bytes = file_bytes, keep_bytes
        self.seq = 1
        self._lock = threading.Lock()

    @property
    def path(self) -> str:
        return os.path.join(self.folder, f"{self.stem}-{self.seq:06d}.jsonl")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        line = json.dumps(otlp_json(spans), ensure_ascii=False, separators=(",", ":")) + "\n"
        with self._lock:
            try:
                if os.path.exists(self.path) and os.path.getsize(self.path) >= self.file_bytes:
                    self.seq += 1
                    self.prune()
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(line)
            except OSError:
                log.debug("could not write spans to %s", self.path, exc_info=True)
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def prune(self):
        """Delete the oldest finished span files while the folder holds more than keep_bytes."""
        files = []
        latest: dict[tuple[str, str], int] = {}
        for name in os.listdir(self.folder):
            m = SPAN_FILE_RE.match(name)
            if not m:
                continue
            key, seq = (m["process"], m["pid"]), int(m["seq"])
            latest[key] = max(latest.get(key, 0), seq)
            try:
                st = os.stat(os.path.join(self.folder, name))
            except FileNotFoundError:
                continue
            files.append((st.st_mtime, st.st_size, name, key, seq))
        total = sum(f[1] for f in files)
        for _, size, name, key, seq in sorted(files):
            if total <= self.keep_bytes:
                break
            if seq >= latest[key] and self._may_be_writing(key):
                continue  # that process may still be writing it
            try:
                os.remove(os.path.join(self.folder, name))
                total -= size
            except FileNotFoundError:
                pass

    def _may_be_writing(self, key) -> bool:
        if f"{key[0]}-{key[1]}" == self.stem:
            return False  # this process: its current file is the next seq, not on disk yet
        try:
            os.kill(int(key[1]), 0)
        except ProcessLookupError:
            return False
        except OSError:
            pass
        return True

    def shutdown(self):
        pass


# -- set-up ---------------------------------------------------------------------------------------
def _exporters(name: str) -> list[tuple[str, SpanExporter]]:
    s = settings()
    wanted = [w.strip() for w in s.traces_exporter.split(",") if w.strip()]
    out: list[tuple[str, SpanExporter]] = []
    for kind in wanted:
        if kind == "none":
            continue
        if kind == "file":
            out.append((f"files in {s.spans_dir}", OtlpJsonLinesExporter(
                s.spans_dir, f"{name}-{os.getpid()}", s.spans_file_bytes, s.spans_keep_bytes)))
        elif kind == "console":
            out.append(("the console", ConsoleSpanExporter()))
        elif kind == "otlp":
            protocol = s.otlp_protocol
            if protocol != "http/protobuf":
                raise SettingsError(
                    f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported: onething exports OTLP over "
                    "http/protobuf (grpcio cannot run in the nameko workers); use http/protobuf and the "
                    "collector's OTLP/HTTP port (4318)")
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            exporter = OTLPSpanExporter()
            # the exporter's own retry warnings would repeat every batch while a collector is down;
            # MaskingExporter says it once
            logging.getLogger("opentelemetry.exporter.otlp").setLevel(logging.CRITICAL)
            out.append((f"OTLP {exporter._endpoint}", exporter))
        else:
            raise SettingsError(f"OTEL_TRACES_EXPORTER={kind!r}: use otlp, file, console or none "
                                "(several: otlp,file)")
    return out


def setup(service_name):
    """Install the tracer provider of this process once; returns a tracer. `service_name` is the
    process's kind: "<service>-api", "<service>-worker", "desk-<department>-<region>", or a tool."""
    global _provider, _service
    install_log_masking()  # every process sets up telemetry: its log records are masked from here on
    s = settings()
    if _provider is None and not s.tracing_disabled:
        _service = service_name
        _provider = TracerProvider(resource=Resource.create({
            "service.name": service_name, "service.namespace": "onething",
            "service.instance.id": f"{s.process_name or service_name}-{os.getpid()}",
            SITE_ATTR: s.region}))
        for label, exporter in _exporters(service_name):
            # the local file default flushes within a second, so the demo and the timeline see a
            # case at once; OTEL_BSP_SCHEDULE_DELAY still wins
            delay = None if s.bsp_schedule_delay_set or "file" not in label else 1000
            _provider.add_span_processor(BatchSpanProcessor(MaskingExporter(exporter, label),
                                                            schedule_delay_millis=delay))
        trace.set_tracer_provider(_provider)
    elif _service is None:
        _service = service_name
    if s.process_name:
        # a process of the suite (its launcher or the chart names it): /metrics, /healthz, /readyz;
        # tests that build an api inside pytest and tools serve none
        from services.common import ops
        ops.start_for(service_name)
    return tracer()


def flush(timeout_millis=5000):
    """Export what is queued now (tools that exit at once, tests that read the span files)."""
    if _provider is not None:
        _provider.force_flush(timeout_millis)


_tracer: trace.Tracer | None = None


def tracer():
    """The process's tracer, made once: `trace.get_tracer` builds a new one on every call (its
    scope, a deprecation wrapper), which cost a worker about 4 % of its CPU when called per MongoDB
    command. Made before `setup`, it is OpenTelemetry's proxy, which follows the provider set later."""
    global _tracer
    if _tracer is None:
        _tracer = trace.get_tracer("onething")
    return _tracer


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


def current_case():
    """The case number marked on the current span, if any (for log lines)."""
    attributes = getattr(trace.get_current_span(), "attributes", None) or {}
    return attributes.get(CASE_ATTR, "")


def attach(ctx):
    return otel_context.attach(ctx)


def detach(token):
    otel_context.detach(token)


# -- messaging spans (OpenTelemetry semantic conventions for RabbitMQ) ------------------------------
def messaging_attributes(operation, exchange, routing_key, message_id="", queue=""):
    attributes = {"messaging.system": "rabbitmq", "messaging.operation.type": operation,
                  "messaging.operation.name": operation, "messaging.destination.name": exchange,
                  "messaging.rabbitmq.destination.routing_key": routing_key}
    if message_id:
        attributes["messaging.message.id"] = message_id
    if queue:
        attributes["messaging.destination.subscription.name"] = queue
    return attributes


def producer_span(exchange, routing_key, message_id="", case_no="", parent=None):
    """A `send` span for one message (a context manager that makes it current): kind PRODUCER, named
    `send <exchange>`; `parent` is the context the message was made in (an outbox entry keeps it),
    else the current one. Counted as a published event (services/common/counters.py)."""
    from services.common import counters
    counters.EVENTS_PUBLISHED.labels(exchange).inc()
    attributes = messaging_attributes("send", exchange, routing_key, message_id)
    if case_no:
        attributes[CASE_ATTR] = case_no
    return tracer().start_as_current_span(f"send {exchange}", context=parent, kind=trace.SpanKind.PRODUCER,
                                          attributes=attributes)


def consumer_span(headers, name, exchange, routing_key, queue=""):
    """A `process` span for a message received with `headers`: kind CONSUMER, a child of the
    producer's context and linked to it (the semantic conventions' creation-context link), marked
    with the case number the message carries. Not current: the caller attaches it."""
    carrier = {k: v for k, v in (headers or {}).items() if isinstance(v, str)}
    parent = extract_context(carrier)
    producer = trace.get_current_span(parent).get_span_context()
    links = [Link(producer)] if producer.is_valid else []
    span = tracer().start_span(
        name, context=parent, kind=trace.SpanKind.CONSUMER, links=links,
        attributes=messaging_attributes("process", exchange, routing_key, str(
            (headers or {}).get("message_id") or (headers or {}).get("event_id") or ""), queue))
    mark_case((headers or {}).get("case_no"), span)
    return span, parent
