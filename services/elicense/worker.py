"""elicense worker role (`nameko run`): issues licences for approved items; answers other
services' licence look-ups over the bus (nameko RPC); its outbox sweeper publishes what a crash or
a broker outage left pending. Events are decoded here, once, into domain values
(services.elicense.codec); the look-up answers the licence as elicense keeps it."""

from onething.joint_review.v1 import events_pb2 as review_events
from services.common.config import refuse_defaults_in_production
from services.common.events import from_payload
from services.common.worker import Component, Inbox, OutboxSweeper, Tracing, event_handler, rpc
from services.elicense import codec
from services.elicense.wiring import build_elicense

refuse_defaults_in_production("worker")  # ONETHING_PROFILE=production: no default credentials or keys


class ElicenseWorker:
    name = "elicense"
    tracing = Tracing()
    inbox = Inbox("elicense")
    elicense = Component(build_elicense)
    sweeper = OutboxSweeper("elicense")  # sweeps elicense.store

    @event_handler("joint_review", "opinion_recorded")
    def on_opinion_recorded(self, payload):
        self.elicense.on_opinion(codec.opinion_of(from_payload(review_events.OpinionRecorded, payload)))

    @event_handler("joint_review", "session_withdrawn")
    def on_session_withdrawn(self, payload):
        self.elicense.on_session_withdrawn(codec.withdrawal_of(from_payload(review_events.SessionWithdrawn, payload)))

    @rpc
    def get_license(self, license_id):
        return codec.licence_to_stored(self.elicense.find(license_id))
