"""evaluation worker role (`nameko run`): learns which cases may be rated (and their lead department)."""
from nameko.timer import timer

from onething.delivery.v1 import events_pb2 as delivery_events
from onething.joint_review.v1 import events_pb2 as review_events
from services.common import mongo
from services.common.events import from_payload
from services.common.config import refuse_defaults_in_production
from services.common.worker import SWEEP_SECONDS, Inbox, Component, Tracing, event_handler
from services.evaluation.store import EvaluationDoc
from services.evaluation.wiring import build_evaluation

refuse_defaults_in_production("worker")  # ONETHING_PROFILE=production: no default credentials or keys


class EvaluationWorker:
    name = "evaluation"
    tracing = Tracing()
    inbox = Inbox("evaluation")
    evaluation = Component(build_evaluation)

    @event_handler("delivery", "delivery_completed")
    def on_delivery_completed(self, payload):
        self.evaluation.on_delivery_completed(from_payload(delivery_events.DeliveryCompleted, payload))

    @event_handler("joint_review", "session_withdrawn")
    def on_session_withdrawn(self, payload):
        self.evaluation.on_session_withdrawn(from_payload(review_events.SessionWithdrawn, payload))

    @timer(interval=SWEEP_SECONDS)
    def sweep_outbox(self):
        mongo.sweep_outbox(EvaluationDoc, self.evaluation.bus)
