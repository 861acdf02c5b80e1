"""MongoDB plumbing: one database per service (a mongoengine alias of the same name), command
spans for tracing, and the outbox that keeps events with the aggregate that caused them."""
import logging
import threading
import time

import mongoengine
from pymongo import monitoring

from services.common import telemetry
from services.common.config import settings

log = logging.getLogger(__name__)


class _CommandSpans(monitoring.CommandListener):
    """Turns every MongoDB command into a client span, child of whatever span is current."""

    _skip = {"hello", "ismaster", "isMaster", "ping", "saslStart", "saslContinue", "endSessions", "buildInfo"}

    def __init__(self):
        self._spans = {}
        self._lock = threading.Lock()

    def started(self, event):
        if event.command_name in self._skip or not telemetry.trace.get_current_span().is_recording():
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


def flush_outbox(doc_cls, doc_id, bus, entries=None, older_than=None):
    """Publish events pending on one aggregate, removing those the broker confirmed.

    A writer passes the entries it added itself, so concurrent writers never publish each other's.
    The sweep passes none and takes the entries older than `older_than` seconds. A publish that
    fails is logged and left pending for the sweep: the change it belongs to is already committed,
    so the caller must not fail because of it."""
    if entries is None:
        doc = doc_cls.objects(pk=doc_id).only("outbox").first()
        entries = list(doc.outbox) if doc is not None else []
        if older_than is not None:
            cutoff = time.time() - older_than
            entries = [e for e in entries if e.get("at", 0) < cutoff]
    sent = []
    for entry in entries:
        try:
            bus.publish_raw(entry["event_type"], entry["payload"], {"case_no": entry.get("case_no", "")})
        except Exception:  # broker away: the sweep publishes it later
            log.warning("event %s of %s left for the outbox sweep", entry["event_type"], doc_id, exc_info=True)
            break
        sent.append(entry["id"])
    if sent:
        doc_cls._get_collection().update_one({"_id": doc_id}, {"$pull": {"outbox": {"id": {"$in": sent}}}})
    return len(sent)


def sweep_outbox(doc_cls, bus, older_than=10.0, limit=100):
    """Publish what a process that died (or a broker outage) left pending: entries older than
    `older_than` seconds, so a live writer's own flush is not raced. Delivery is at-least-once;
    consumers are idempotent."""
    sent = 0
    cutoff = time.time() - older_than
    for doc in doc_cls.objects(__raw__={"outbox.at": {"$lt": cutoff}}).only("id").limit(limit):
        sent += flush_outbox(doc_cls, doc.pk, bus, older_than=older_than)
    return sent


def plain(value):
    """mongoengine's tracked dicts and lists as plain ones, for the domain to change freely."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
