"""Publishing events to RabbitMQ the way nameko's event handlers expect them: to the exchange
`<service>.events` with the event type as routing key, persistent, with trace context and the case
number in the headers. Works in the api role (plain kombu) and inside nameko workers."""
import time
import uuid

from kombu import Exchange
from nameko.amqp.publish import Publisher

from services.common import telemetry
from services.common.config import settings
from services.common.events import to_payload


def event_exchange(service):
    return Exchange(f"{service}.events", type="topic", durable=True, auto_delete=False)


class Bus:
    def __init__(self, service, amqp_uri=None):
        self.service = service
        self._publisher = Publisher(amqp_uri or settings().amqp_uri, serializer="json",
                                    use_confirms=True, delivery_mode=2)

    def publish_raw(self, event_type, payload, headers):
        with telemetry.tracer().start_as_current_span(
                f"publish {self.service}.{event_type}", kind=telemetry.trace.SpanKind.PRODUCER) as span:
            span.set_attribute("messaging.destination", f"{self.service}.events")
            span.set_attribute("messaging.routing_key", event_type)
            telemetry.mark_case(headers.get("case_no"), span)
            out = dict(headers)
            telemetry.inject_headers(out)
            exchange = event_exchange(self.service)
            # declared by the publisher too, so an event sent before any consumer exists is not refused
            self._publisher.publish(payload, exchange=exchange, routing_key=event_type, headers=out,
                                    declare=[exchange])

    def publish(self, event_type, message, case_no=""):
        self.publish_raw(event_type, to_payload(message), {"case_no": case_no})


def outbox_entry(event_type, message, case_no=""):
    """An event kept with the aggregate that caused it until it has been published."""
    return {"id": uuid.uuid4().hex, "event_type": event_type, "at": time.time(),
            "payload": to_payload(message), "case_no": case_no}


class RecordingBus:
    """In-memory stand-in for unit tests: remembers what would have been published."""

    def __init__(self, service="test"):
        self.service = service
        self.published = []

    def publish_raw(self, event_type, payload, headers):
        self.published.append((event_type, payload, dict(headers)))

    def publish(self, event_type, message, case_no=""):
        self.publish_raw(event_type, to_payload(message), {"case_no": case_no})

    def types(self):
        return [t for t, _, _ in self.published]
