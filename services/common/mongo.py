"""MongoDB plumbing: one database per service (a mongoengine alias of the same name), command
spans for tracing, and the outbox that keeps events with the aggregate that caused them."""
import threading
import time

import mongoengine
from pymongo import monitoring

from services.common import telemetry
from services.common.config import settings


class _CommandSpans(monitoring.CommandListener):
    """Turns every MongoDB command into a client span, child of whatever span is current."""

    _skip = {"hello", "ismaster", "isMaster", "ping", "saslStart", "saslContinue", "endSessions", "buildInfo"}

    def __init__(self):
        self._spans = {}
        self._lock = threading.Lock()

    def started(self, event):
        if event.command_name in self._skip:
            return
        collection = event.command.get(event.command_name)
        name = f"mongo {event.command_name} {event.database_name}.{collection}" if isinstance(
            collection, str) else f"mongo {event.command_name} {event.database_name}"
        span = telemetry.tracer().start_span(name, kind=telemetry.trace.SpanKind.CLIENT)
        span.set_attribute("db.system", "mongodb")
        with self._lock:
            self._spans[(event.request_id, event.connection_id)] = span

    def _end(self, event, ok):
        with self._lock:
            span = self._spans.pop((event.request_id, event.connection_id), None)
        if span is not None:
            if not ok:
                span.set_status(telemetry.trace.Status(telemetry.trace.StatusCode.ERROR))
            span.end()

    def succeeded(self, event):
        self._end(event, True)

    def failed(self, event):
        self._end(event, False)


_listener_installed = False


def connect(service, uri=None, db_name=None):
    """Connect the mongoengine alias `service` to the service's own database."""
    global _listener_installed
    if not _listener_installed:
        monitoring.register(_CommandSpans())
        _listener_installed = True
    s = settings()
    mongoengine.connect(db=db_name or s.db_name(service), host=uri or s.mongo_uri, alias=service,
                        tz_aware=True, serverSelectionTimeoutMS=10000)


def disconnect(service):
    mongoengine.disconnect(alias=service)


def flush_outbox(doc_cls, doc_id, bus):
    """Publish the events pending on one aggregate, removing each once the broker confirmed it."""
    doc = doc_cls.objects(pk=doc_id).only("outbox").first()
    if doc is None:
        return 0
    sent = 0
    for entry in list(doc.outbox):
        bus.publish_raw(entry["event_type"], entry["payload"], {"case_no": entry.get("case_no", "")})
        doc_cls.objects(pk=doc_id).update_one(pull__outbox__id=entry["id"])
        sent += 1
    return sent


def sweep_outbox(doc_cls, bus, limit=100):
    """Publish what a process that died left pending (events are at-least-once; consumers are
    idempotent)."""
    sent = 0
    for doc in doc_cls.objects(outbox__0__exists=True).only("id").limit(limit):
        sent += flush_outbox(doc_cls, doc.pk, bus)
    return sent


class OutboxSweeper(threading.Thread):
    """For the api role: re-publishes pending events every few seconds."""

    def __init__(self, doc_cls, bus, interval=5.0):
        super().__init__(daemon=True, name=f"outbox-{doc_cls.__name__}")
        self.doc_cls, self.bus, self.interval = doc_cls, bus, interval
        self._stop = threading.Event()

    def run(self):
        while not self._stop.wait(self.interval):
            try:
                sweep_outbox(self.doc_cls, self.bus)
            except Exception:  # the next round tries again
                time.sleep(self.interval)

    def stop(self):
        self._stop.set()
