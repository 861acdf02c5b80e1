"""Tracing set-up: the OTLP JSON lines files, their rotation, the exporters chosen by OTEL_*,
messaging spans after the semantic conventions, the outbox keeping the context an event was made
in, and log lines as JSON."""
import io
import json
import logging
import os

import pytest
from google.protobuf.empty_pb2 import Empty
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.common import bus, logs, telemetry
from services.common.config import SettingsError


@pytest.fixture
def spans(monkeypatch):
    """A tracer provider of this test alone, its finished spans in memory; telemetry.tracer() uses it."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    monkeypatch.setattr(telemetry, "_tracer", provider.get_tracer("test"))
    yield memory


def _finished(tracer_provider, n=3):
    tracer = tracer_provider.get_tracer("t")
    out = []
    for i in range(n):
        with tracer.start_as_current_span(f"op{i}") as span:
            span.set_attribute(telemetry.CASE_ATTR, f"CASE{i}")
        out.append(span)
    return out


def test_span_files_are_otlp_json_lines_with_hex_ids(tmp_path):
    provider = TracerProvider()
    exporter = telemetry.OtlpJsonLinesExporter(str(tmp_path), "intake-api-7", 1 << 20, 1 << 30)
    spans = _finished(provider, 2)
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    lines = (tmp_path / "intake-api-7-000001.jsonl").read_text().splitlines()
    assert len(lines) == 1  # one line per batch
    request = json.loads(lines[0])
    out = request["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert [s["name"] for s in out] == ["op0", "op1"]
    ctx = spans[0].get_span_context()
    assert out[0]["traceId"] == format(ctx.trace_id, "032x") and out[0]["spanId"] == format(ctx.span_id, "016x")
    assert out[0]["startTimeUnixNano"] == str(spans[0].start_time)  # int64 as a string, as OTLP/JSON has it
    assert out[0]["kind"] == 1 and {"key": telemetry.CASE_ATTR, "value": {"stringValue": "CASE0"}} in out[0]["attributes"]


def test_span_files_rotate_and_old_ones_are_deleted(tmp_path):
    provider = TracerProvider()
    exporter = telemetry.OtlpJsonLinesExporter(str(tmp_path), "w-123", file_bytes=2000, keep_bytes=6000)
    for _ in range(40):
        exporter.export(_finished(provider, 3))
    names = sorted(os.listdir(tmp_path))
    assert len(names) > 1 and names[-1] == f"w-123-{exporter.seq:06d}.jsonl"
    assert sum(os.path.getsize(tmp_path / n) for n in names) <= 6000 + 2 * 2000
    assert "w-123-000001.jsonl" not in names  # the oldest went first
    # a file of a process that is still running is never deleted, however old
    (tmp_path / f"other-{os.getppid()}-000001.jsonl").write_text("x" * 5000)
    os.utime(tmp_path / f"other-{os.getppid()}-000001.jsonl", (1, 1))
    for _ in range(20):
        exporter.export(_finished(provider, 3))
    assert (tmp_path / f"other-{os.getppid()}-000001.jsonl").exists()


def test_a_failing_exporter_is_reported_once_and_its_recovery_once(caplog):
    class Flaky(SpanExporter):
        def __init__(self):
            self.results = [SpanExportResult.FAILURE] * 3 + [SpanExportResult.SUCCESS] * 2

        def export(self, spans):
            return self.results.pop(0)

    exporter = telemetry.MaskingExporter(Flaky(), "OTLP http://127.0.0.1:9/v1/traces")
    with caplog.at_level(logging.INFO, logger=telemetry.__name__):
        results = [exporter.export([]) for _ in range(5)]
    assert results[:3] == [SpanExportResult.FAILURE] * 3 and results[3:] == [SpanExportResult.SUCCESS] * 2
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "is failing" in m]) == 1
    assert len([m for m in messages if "works again" in m]) == 1


def test_an_exporter_that_raises_does_not_reach_the_caller():
    class Broken(SpanExporter):
        def export(self, spans):
            raise ConnectionRefusedError("nobody at 4318")

    assert telemetry.MaskingExporter(Broken(), "x").export([]) is SpanExportResult.FAILURE


@pytest.mark.parametrize("env, kinds", [
    ({}, ["files"]),
    ({"OTEL_TRACES_EXPORTER": "none"}, []),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, ["OTLP"]),
    ({"OTEL_TRACES_EXPORTER": "otlp,file"}, ["OTLP", "files"]),
])
def test_exporters_follow_otel_traces_exporter(monkeypatch, tmp_path, env, kinds):
    for key in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ONETHING_VAR_DIR", str(tmp_path))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    chosen = telemetry._exporters("intake-api")
    assert [label.split(" ")[0] for label, _ in chosen] == kinds
    if "OTLP" in kinds:
        label = next(label for label, _ in chosen if label.startswith("OTLP"))
        assert label.endswith("/v1/traces")


@pytest.mark.parametrize("env, words", [
    ({"OTEL_TRACES_EXPORTER": "jaeger"}, "use otlp, file, console or none"),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "use http/protobuf"),
])
def test_exporters_that_cannot_be_had_are_refused_with_a_reason(monkeypatch, env, words):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError, match=words):
        telemetry._exporters("intake-api")


def test_a_consumer_span_is_a_child_of_the_producer_and_linked_to_it(spans):
    with telemetry.producer_span("intake.events", "case_submitted", "ev1", "440100XSECS202611270001"):
        headers = telemetry.inject_headers({"event_id": "ev1", "case_no": "440100XSECS202611270001"})
    span, _ = telemetry.consumer_span(headers, "process intake.events", "intake.events", "case_submitted",
                                      "joint_review.case_submitted")
    span.end()
    send, process = spans.get_finished_spans()
    assert send.name == "send intake.events" and send.kind is trace.SpanKind.PRODUCER
    assert process.kind is trace.SpanKind.CONSUMER
    assert process.parent.span_id == send.context.span_id
    assert [link.context.span_id for link in process.links] == [send.context.span_id]
    for s in (send, process):
        assert s.attributes["messaging.system"] == "rabbitmq"
        assert s.attributes["messaging.destination.name"] == "intake.events"
        assert s.attributes["messaging.rabbitmq.destination.routing_key"] == "case_submitted"
        assert s.attributes["messaging.message.id"] == "ev1"
        assert s.attributes[telemetry.CASE_ATTR] == "440100XSECS202611270001"
    assert send.attributes["messaging.operation.type"] == "send"
    assert process.attributes["messaging.operation.type"] == "process"


def test_a_message_without_trace_context_starts_its_own_trace_without_links(spans):
    span, _ = telemetry.consumer_span({"event_id": "e"}, "process x", "x", "k")
    span.end()
    assert spans.get_finished_spans()[0].links == ()


def test_an_event_published_later_by_the_sweep_stays_in_the_trace_that_made_it(spans):
    recorder = []

    class Recording(bus.Bus):
        def __init__(self):
            self.service = "intake"

            class P:
                def publish(self, payload, **kw):
                    recorder.append(kw["headers"])
            self._publisher = P()

    with telemetry.tracer().start_as_current_span("SubmitCase") as submit:
        entry = bus.outbox_entry("case_submitted", Empty(), "440100XSECS202611270001")
    # minutes later, in the sweep: no current span
    Recording().publish_entry(entry)
    send = next(s for s in spans.get_finished_spans() if s.name == "send intake.events")
    assert send.context.trace_id == submit.get_span_context().trace_id
    assert send.parent.span_id == submit.get_span_context().span_id
    assert recorder[0]["traceparent"].split("-")[2] == format(send.context.span_id, "016x")


def test_log_lines_are_json_with_trace_span_and_case(spans):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("test.logs.json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with telemetry.tracer().start_as_current_span("h") as span:
            telemetry.mark_case("440100XSECS202611270001")
            logger.warning("phone %s refused", "13812340000")
            try:
                raise ValueError("id 11010519491231002X")
            except ValueError:
                logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    first, second = [json.loads(line) for line in stream.getvalue().splitlines()]
    ctx = span.get_span_context()
    assert first["level"] == "WARNING" and first["logger"] == "test.logs.json"
    assert first["trace_id"] == format(ctx.trace_id, "032x") and first["span_id"] == format(ctx.span_id, "016x")
    assert first["case_no"] == "440100XSECS202611270001"
    assert first["message"] == "phone 138****0000 refused" and first["time"].endswith("+00:00")
    assert "11010519491231002X" not in second["exception"] and "ValueError" in second["exception"]


def test_log_lines_outside_a_span_have_no_trace():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", (), None)
    line = json.loads(logs.JsonFormatter().format(record))
    assert line["message"] == "hello" and "trace_id" not in line and "case_no" not in line


def test_the_tracer_is_made_once_and_one_made_before_the_provider_still_records(tmp_path):
    """telemetry.tracer() is cached; one taken before the process's provider is set (at import time,
    say) must still record into that provider, not into OpenTelemetry's no-op."""
    import subprocess
    import sys
    code = (
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter\n"
        "from services.common import telemetry\n"
        "early = telemetry.tracer()\n"
        "memory = InMemorySpanExporter()\n"
        "provider = TracerProvider()\n"
        "provider.add_span_processor(SimpleSpanProcessor(memory))\n"
        "trace.set_tracer_provider(provider)\n"
        "assert telemetry.tracer() is early\n"
        "with early.start_as_current_span('after'):\n"
        "    pass\n"
        "print([s.name for s in memory.get_finished_spans()])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "['after']"
