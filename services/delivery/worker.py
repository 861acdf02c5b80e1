"""delivery worker role (`nameko run`): dispatches the results of approved cases."""
from nameko.rpc import RpcProxy
from nameko.timer import timer

from onething.elicense.v1 import events_pb2 as license_events
from onething.joint_review.v1 import events_pb2 as review_events
from services.common import mongo
from services.common.events import from_payload
from services.common.config import refuse_defaults_in_production
from services.common.worker import SWEEP_SECONDS, Inbox, with_timeout, Component, Tracing, event_handler
from services.delivery.store import DeliveryDoc
from services.delivery.wiring import build_delivery

refuse_defaults_in_production("worker")  # ONETHING_PROFILE=production: no default credentials or keys


class DeliveryWorker:
    name = "delivery"
    tracing = Tracing()
    inbox = Inbox("delivery")
    delivery = Component(build_delivery)
    elicense = RpcProxy("elicense")

    @event_handler("joint_review", "case_concluded")
    def on_case_concluded(self, payload):
        self.delivery.on_case_concluded(from_payload(review_events.CaseConcluded, payload),
                                        with_timeout(self.elicense.get_license))

    @event_handler("joint_review", "session_withdrawn")
    def on_session_withdrawn(self, payload):
        self.delivery.on_session_withdrawn(from_payload(review_events.SessionWithdrawn, payload))

    @event_handler("elicense", "license_revoked")
    def on_license_revoked(self, payload):
        self.delivery.on_license_revoked(from_payload(license_events.LicenseRevoked, payload))

    @timer(interval=SWEEP_SECONDS)
    def sweep_outbox(self):
        mongo.sweep_outbox(DeliveryDoc, self.delivery.bus)
