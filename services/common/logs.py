"""Log lines as JSON, one object per line, in every process: time (UTC, ISO 8601), level, service
(the process's telemetry name, e.g. "intake-worker"), logger, message, and where known the trace
id, span id and case number of the span the line was written in, so a log line leads to its trace
and its case. A warning about an outage the process rides out carries its error in one line, not a
traceback. Messages and tracebacks are masked when the record is made
(services.common.privacy.install_log_masking): no identity number or phone reaches a log.

The apis and desks call `configure()`; the nameko workers get the same formatter from
infra/nameko.yaml. ONETHING_LOG_FORMAT=plain gives the old text lines for a person at a terminal.
"""
import datetime
import json
import logging
import sys

from opentelemetry import trace

from services.common.privacy import mask_text


class JsonFormatter(logging.Formatter):
    def format(self, record):
        from services.common import telemetry
        line = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": telemetry.service_name(),
            "logger": record.name,
            "message": mask_text(record.getMessage()),
        }
        span = trace.get_current_span()
        ctx = span.get_span_context()
        if ctx.is_valid:
            line["trace_id"] = format(ctx.trace_id, "032x")
            line["span_id"] = format(ctx.span_id, "016x")
        case_no = getattr(record, "case_no", "") or telemetry.current_case()
        if case_no:
            line["case_no"] = case_no
        if record.exc_info and record.levelno < logging.ERROR and _outage(record.exc_info[1]):
            # a warning about a dependency away, which the process rides out (the broker library's
            # "connection lost, re-establishing"): the error in one line, not a traceback that reads
            # like a defect; errors keep theirs
            exc = record.exc_info[1]
            line["exception"] = mask_text(f"{type(exc).__name__}: {exc}")
        else:
            if record.exc_info and not record.exc_text:
                record.exc_text = mask_text(self.formatException(record.exc_info))
            if record.exc_text:
                line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False)


def _outage(exc):
    from services.common.outages import is_outage
    return exc is not None and is_outage(exc)


def formatter() -> logging.Formatter:
    from services.common.config import settings
    if settings().log_format == "plain":
        return logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    return JsonFormatter()


def configure(level=logging.INFO):
    """Root logger to stderr in the chosen format (JSON by default); replaces earlier handlers."""
    from services.common.privacy import install_log_masking
    install_log_masking()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
