"""Publishing events to RabbitMQ the way nameko's event handlers expect them: to the exchange
`<service>.events` with the event type as routing key, persistent, with trace context and the case
number in the headers. Works in the api role (plain kombu) and inside nameko workers."""
import datetime
import time
import uuid

from kombu import Exchange
from nameko.amqp.publish import Publisher, UndeliverableMessage

from services.common import telemetry
from services.common.config import settings
from services.common.events import to_payload

SCHEMA_VERSION = "1"


class Unroutable(Exception):
    """The broker accepted an event that no queue is bound for: nobody would receive it."""


def envelope(entry, producer):
    """The headers every event carries: its id (the outbox entry id, which consumers keep in their
    inbox), when it happened, who produced it and at which site (its region code: events cross
    between sites over the broker links), the payload's schema version and the case number."""
    return {"event_id": entry["id"], "site": settings().region,
            "occurred_at": datetime.datetime.fromtimestamp(entry.get("at", time.time()),
                                                           datetime.UTC).isoformat(),
            "producer": producer, "schema_version": SCHEMA_VERSION, "case_no": entry.get("case_no", "")}


def event_exchange(service):
    return Exchange(f"{service}.events", type="topic", durable=True, auto_delete=False)


class Bus:
    def __init__(self, service, amqp_uri=None):
        self.service = service
        s = settings()
        self._publisher = Publisher(amqp_uri or s.amqp_uri, serializer="json", use_confirms=True,
                                    delivery_mode=2, mandatory=True,
                                    retry=True, retry_policy={"max_retries": 2, "interval_start": 0.2,
                                                              "interval_step": 0.5, "interval_max": 1.0},
                                    transport_options={"connect_timeout": s.amqp_timeout_seconds})

    def publish_entry(self, entry):
        """Publish one outbox entry with its envelope; Unroutable when no queue would receive it.
        The send span is a child of the context the entry was made in (kept in the entry), so an
        event the sweep publishes minutes later still belongs to the trace that caused it."""
        parent = telemetry.extract_context(entry["trace"]) if entry.get("trace") else None
        self.publish_raw(entry["event_type"], entry["payload"], envelope(entry, self.service), parent=parent)

    def publish_raw(self, event_type, payload, headers, parent=None):
        exchange = event_exchange(self.service)
        with telemetry.producer_span(exchange.name, event_type, headers.get("event_id", ""),
                                     headers.get("case_no", ""), parent=parent):
            out = dict(headers)
            telemetry.inject_headers(out)
            try:
                # declared by the publisher too, so an event sent before any consumer exists is not refused
                self._publisher.publish(payload, exchange=exchange, routing_key=event_type, headers=out,
                                        declare=[exchange], message_id=headers.get("event_id"))
            except UndeliverableMessage:
                raise Unroutable(f"no queue is bound for {self.service}.events/{event_type}") from None

    def publish(self, event_type, message, case_no=""):
        """Publish at once, outside any outbox (tools and tests)."""
        self.publish_entry(outbox_entry(event_type, message, case_no))


def outbox_entry(event_type, message, case_no=""):
    """An event kept with the aggregate that caused it until it has been published. The sweep
    takes it when `next_at` has passed: a grace period for the writer's own flush at first, then
    a growing backoff after each failed publish (`attempts`)."""
    at = time.time()
    return {"id": uuid.uuid4().hex, "event_type": event_type, "at": at, "attempts": 0,
            "next_at": at + settings().sweep_grace_seconds, "payload": to_payload(message), "case_no": case_no,
            "trace": telemetry.inject_headers()}


class RecordingBus:
    """In-memory stand-in for unit tests: remembers what would have been published."""

    def __init__(self, service="test"):
        self.service = service
        self.published = []

    def publish_raw(self, event_type, payload, headers, parent=None):
        self.published.append((event_type, payload, dict(headers)))

    def publish_entry(self, entry):
        self.publish_raw(entry["event_type"], entry["payload"], envelope(entry, self.service))

    def publish(self, event_type, message, case_no=""):
        self.publish_entry(outbox_entry(event_type, message, case_no))

    def types(self):
        return [t for t, _, _ in self.published]
