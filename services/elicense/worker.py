"""elicense worker role (`nameko run`): issues licences for approved items; answers other
services' licence look-ups over the bus (nameko RPC)."""

from nameko.timer import timer

from onething.joint_review.v1 import events_pb2 as review_events
from services.common import mongo
from services.common.events import from_payload
from services.common.config import refuse_defaults_in_production
from services.common.worker import SWEEP_SECONDS, Component, Inbox, Tracing, event_handler, rpc
from services.elicense.store import LicenseDoc
from services.elicense.wiring import build_elicense

refuse_defaults_in_production("worker")  # ONETHING_PROFILE=production: no default credentials or keys


class ElicenseWorker:
    name = "elicense"
    tracing = Tracing()
    inbox = Inbox("elicense")
    elicense = Component(build_elicense)

    @event_handler("joint_review", "opinion_recorded")
    def on_opinion_recorded(self, payload):
        self.elicense.on_opinion(from_payload(review_events.OpinionRecorded, payload))

    @event_handler("joint_review", "session_withdrawn")
    def on_session_withdrawn(self, payload):
        self.elicense.on_session_withdrawn(from_payload(review_events.SessionWithdrawn, payload))

    @rpc
    def get_license(self, license_id):
        return self.elicense.find(license_id)

    @timer(interval=SWEEP_SECONDS)
    def sweep_outbox(self):
        mongo.sweep_outbox(LicenseDoc, self.elicense.bus)
