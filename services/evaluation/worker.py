"""evaluation worker role (`nameko run`): learns which cases may be rated (and their lead department)
from delivery, and which were withdrawn after their conclusion from joint_review. Each handler
decodes its event once into domain values; the sweeper publishes what the ratings' outboxes kept."""
from onething.delivery.v1 import events_pb2 as delivery_events
from onething.joint_review.v1 import events_pb2 as review_events
from services.common.config import refuse_defaults_in_production
from services.common.events import from_payload
from services.common.worker import Component, Inbox, OutboxSweeper, Tracing, event_handler
from services.evaluation.domain import Rateable
from services.evaluation.wiring import build_evaluation

refuse_defaults_in_production("worker")  # ONETHING_PROFILE=production: no default credentials or keys


class EvaluationWorker:
    name = "evaluation"
    tracing = Tracing()
    inbox = Inbox("evaluation")
    evaluation = Component(build_evaluation)
    sweeper = OutboxSweeper("evaluation")  # sweeps evaluation.store

    @event_handler("delivery", "delivery_completed")
    def on_delivery_completed(self, payload):
        event = from_payload(delivery_events.DeliveryCompleted, payload)
        self.evaluation.case_delivered(Rateable(
            case_no=event.case_no, applicant_id=event.applicant_id, region_code=event.region_code,
            package_code=event.package_code, lead_department=event.lead_department))

    @event_handler("joint_review", "session_withdrawn")
    def on_session_withdrawn(self, payload):
        event = from_payload(review_events.SessionWithdrawn, payload)
        self.evaluation.case_withdrawn(event.case_no, event.after_conclusion)
