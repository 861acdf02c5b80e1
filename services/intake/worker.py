"""intake worker role (`nameko run`): follows the case as the other services report on it."""
from nameko.timer import timer

from onething.delivery.v1 import events_pb2 as delivery_events
from onething.evaluation.v1 import events_pb2 as evaluation_events
from onething.joint_review.v1 import events_pb2 as review_events
from services.common.events import from_payload
from services.common.mongo import sweep_outbox
from services.common.worker import Component, Tracing, event_handler


def _build():
    from services.intake.wiring import build_intake
    return build_intake(with_catalog=False)


class IntakeWorker:
    name = "intake"
    tracing = Tracing()
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

    @timer(interval=5)
    def sweep_outbox(self):
        from services.intake.store import CaseDoc
        sweep_outbox(CaseDoc, self.intake.bus)
