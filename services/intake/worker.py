"""intake worker role (`nameko run`): follows the case as the other services report on it."""
from nameko.timer import timer

from onething.delivery.v1 import events_pb2 as delivery_events
from onething.elicense.v1 import events_pb2 as license_events
from onething.evaluation.v1 import events_pb2 as evaluation_events
from onething.joint_review.v1 import events_pb2 as review_events
from services.common.events import from_payload
from services.common.mongo import sweep_outbox
from services.common.config import refuse_defaults_in_production
from services.common.worker import SWEEP_SECONDS, Inbox, Component, Tracing, event_handler

refuse_defaults_in_production("worker")  # ONETHING_PROFILE=production: no default credentials or keys


def _build():
    from services.intake.wiring import build_intake
    return build_intake(with_catalog=False)


class IntakeWorker:
    name = "intake"
    tracing = Tracing()
    inbox = Inbox("intake")
    intake = Component(_build)

    @event_handler("joint_review", "case_concluded")
    def on_case_concluded(self, payload):
        self.intake.case_concluded(from_payload(review_events.CaseConcluded, payload))

    @event_handler("joint_review", "rectification_requested")
    def on_rectification_requested(self, payload):
        self.intake.rectification_requested(from_payload(review_events.RectificationRequested, payload))

    @event_handler("delivery", "delivery_completed")
    def on_delivery_completed(self, payload):
        self.intake.delivery_completed(from_payload(delivery_events.DeliveryCompleted, payload))

    @event_handler("evaluation", "evaluation_received")
    def on_evaluation_received(self, payload):
        self.intake.evaluation_received(from_payload(evaluation_events.EvaluationReceived, payload))

    @event_handler("joint_review", "session_opened")
    def on_session_opened(self, payload):
        self.intake.session_opened(from_payload(review_events.SessionOpened, payload))

    @event_handler("joint_review", "task_overdue")
    def on_task_overdue(self, payload):
        self.intake.task_overdue(from_payload(review_events.TaskOverdue, payload))

    @event_handler("joint_review", "session_concluded")
    def on_session_concluded(self, payload):
        self.intake.session_concluded(from_payload(review_events.SessionConcluded, payload))

    @event_handler("joint_review", "session_withdrawn")
    def on_session_withdrawn(self, payload):
        self.intake.session_withdrawn(from_payload(review_events.SessionWithdrawn, payload))

    @event_handler("delivery", "delivery_dispatched")
    def on_delivery_dispatched(self, payload):
        self.intake.delivery_dispatched(from_payload(delivery_events.DeliveryDispatched, payload))

    @event_handler("delivery", "delivery_ready_for_pickup")
    def on_delivery_ready_for_pickup(self, payload):
        self.intake.delivery_ready_for_pickup(from_payload(delivery_events.DeliveryReadyForPickup, payload))

    @event_handler("delivery", "delivery_failed")
    def on_delivery_failed(self, payload):
        self.intake.delivery_failed(from_payload(delivery_events.DeliveryFailed, payload))

    @event_handler("elicense", "license_revoked")
    def on_license_revoked(self, payload):
        self.intake.license_revoked(from_payload(license_events.LicenseRevoked, payload))

    @event_handler("evaluation", "bad_review_opened")
    def on_bad_review_opened(self, payload):
        self.intake.bad_review_opened(from_payload(evaluation_events.BadReviewOpened, payload))

    @event_handler("evaluation", "bad_review_closed")
    def on_bad_review_closed(self, payload):
        self.intake.bad_review_closed(from_payload(evaluation_events.BadReviewClosed, payload))

    @timer(interval=SWEEP_SECONDS)
    def sweep_outbox(self):
        from services.intake.store import CaseDoc
        sweep_outbox(CaseDoc, self.intake.bus)
