"""intake worker role (`nameko run`): follows the case as the other services report on it, and
learns from joint_review's task assignments which departments' officers may read it. Each
handler decodes its event (the protobuf message's JSON dict) into the domain's value, once (moments,
days and enums into the strings the domain keeps: services/intake/convert.py), and calls the use
case; the OutboxSweeper publishes what a failed publish left in a case's outbox."""
from onething.common.v1 import common_pb2
from onething.delivery.v1 import events_pb2 as delivery_events
from onething.elicense.v1 import events_pb2 as license_events
from onething.evaluation.v1 import events_pb2 as evaluation_events
from onething.joint_review.v1 import events_pb2 as review_events
from services.common.config import refuse_defaults_in_production
from services.common.events import from_payload
from services.common.worker import Component, Inbox, OutboxSweeper, Tracing, event_handler
from services.intake import convert, domain

refuse_defaults_in_production("worker")  # ONETHING_PROFILE=production: no default credentials or keys


def _build():
    from services.intake.wiring import build_intake
    return build_intake(with_catalog=False)


# --- the events, decoded ------------------------------------------------------------------------------

def case_concluded(payload):
    e = from_payload(review_events.CaseConcluded, payload)
    return domain.CaseConcluded(case_no=e.case_no, approved=e.approved, reason=e.reason,
                                license_ids=tuple(e.license_ids))


def rectification_requested(payload):
    e = from_payload(review_events.RectificationRequested, payload)
    return domain.RectificationRequested(case_no=e.case_no, item_code=e.item_code, department_code=e.department_code,
                                         material_codes=tuple(e.material_codes), reason=e.reason, round=e.round)


def tasks_assigned(payload):
    e = from_payload(review_events.TasksAssigned, payload)
    return domain.TasksAssigned(case_no=e.case_no, holders=tuple(
        domain.TaskHolder(h.department_code, h.region_code) for h in e.holders))


def session_opened(payload):
    e = from_payload(review_events.SessionOpened, payload)
    return domain.SessionOpened(case_no=e.case_no, item_codes=tuple(e.item_codes),
                                department_codes=tuple(e.department_codes))


def task_overdue(payload):
    e = from_payload(review_events.TaskOverdue, payload)
    return domain.TaskOverdue(case_no=e.case_no, item_code=e.item_code, department_code=e.department_code,
                              elapsed_days=e.elapsed_days, limit_days=e.limit_days)


def session_concluded(payload):
    e = from_payload(review_events.SessionConcluded, payload)
    return domain.SessionConcluded(case_no=e.case_no, kind=convert.word(convert.SESSION_KIND_WORDS, e.kind),
                                   passed=e.passed, report_key=e.report_key,
                                   concluded_at=convert.iso(e, "concluded_at"))


def session_withdrawn(payload):
    e = from_payload(review_events.SessionWithdrawn, payload)
    # the conclusion made void, in the domain's words: SESSION_STATUS_APPROVED -> "approved"
    return domain.SessionWithdrawn(case_no=e.case_no, after_conclusion=e.after_conclusion,
                                   overridden=convert.word(convert.OVERRIDDEN_WORDS, e.overridden))


def delivery_completed(payload):
    e = from_payload(delivery_events.DeliveryCompleted, payload)
    return domain.DeliveryCompleted(case_no=e.case_no, attempt=e.attempt or 1)


def delivery_dispatched(payload):
    e = from_payload(delivery_events.DeliveryDispatched, payload)
    return domain.DeliveryDispatched(case_no=e.case_no, attempt=e.attempt or 1,
                                     by_mail=e.channel == common_pb2.DELIVERY_CHANNEL_MAIL,
                                     carrier=convert.word(convert.CARRIER_WORDS, e.carrier),
                                     tracking_number=e.tracking_number)


def delivery_ready_for_pickup(payload):
    return domain.DeliveryReadyForPickup(case_no=from_payload(delivery_events.DeliveryReadyForPickup, payload).case_no)


def delivery_failed(payload):
    e = from_payload(delivery_events.DeliveryFailed, payload)
    return domain.DeliveryFailed(case_no=e.case_no, attempt=e.attempt or 1, reason=e.reason)


def evaluation_received(payload):
    return domain.EvaluationReceived(case_no=from_payload(evaluation_events.EvaluationReceived, payload).case_no)


def license_revoked(payload):
    e = from_payload(license_events.LicenseRevoked, payload)
    return domain.LicenseRevoked(case_no=e.case_no, license_id=e.license_id, reason=e.reason,
                                 superseded_by=e.superseded_by)


def bad_review_opened(payload):
    e = from_payload(evaluation_events.BadReviewOpened, payload)
    return domain.BadReviewOpened(case_no=e.case_no, channel=convert.word(convert.CHANNEL_WORDS, e.channel),
                                  department_code=e.department_code, deadline=convert.day(e, "deadline"))


def bad_review_closed(payload):
    e = from_payload(evaluation_events.BadReviewClosed, payload)
    return domain.BadReviewClosed(case_no=e.case_no, channel=convert.word(convert.CHANNEL_WORDS, e.channel),
                                  department_code=e.department_code, on_time=e.on_time, result=e.result)


class IntakeWorker:
    name = "intake"
    tracing = Tracing()
    inbox = Inbox("intake")
    intake = Component(_build)
    sweeper = OutboxSweeper("intake")  # publishes what a case's outbox kept (intake.store.sweep)

    @event_handler("joint_review", "case_concluded")
    def on_case_concluded(self, payload):
        self.intake.case_concluded(case_concluded(payload))

    @event_handler("joint_review", "rectification_requested")
    def on_rectification_requested(self, payload):
        self.intake.rectification_requested(rectification_requested(payload))

    @event_handler("delivery", "delivery_completed")
    def on_delivery_completed(self, payload):
        self.intake.delivery_completed(delivery_completed(payload))

    @event_handler("evaluation", "evaluation_received")
    def on_evaluation_received(self, payload):
        self.intake.evaluation_received(evaluation_received(payload))

    # the departments given tasks, once per change of the session: who may read the case (not
    # every department's task_assigned.<department>.<region>, the desks' work)
    @event_handler("joint_review", "tasks_assigned")
    def on_tasks_assigned(self, payload):
        self.intake.tasks_assigned(tasks_assigned(payload))

    @event_handler("joint_review", "session_opened")
    def on_session_opened(self, payload):
        self.intake.session_opened(session_opened(payload))

    @event_handler("joint_review", "task_overdue")
    def on_task_overdue(self, payload):
        self.intake.task_overdue(task_overdue(payload))

    @event_handler("joint_review", "session_concluded")
    def on_session_concluded(self, payload):
        self.intake.session_concluded(session_concluded(payload))

    @event_handler("joint_review", "session_withdrawn")
    def on_session_withdrawn(self, payload):
        self.intake.session_withdrawn(session_withdrawn(payload))

    @event_handler("delivery", "delivery_dispatched")
    def on_delivery_dispatched(self, payload):
        self.intake.delivery_dispatched(delivery_dispatched(payload))

    @event_handler("delivery", "delivery_ready_for_pickup")
    def on_delivery_ready_for_pickup(self, payload):
        self.intake.delivery_ready_for_pickup(delivery_ready_for_pickup(payload))

    @event_handler("delivery", "delivery_failed")
    def on_delivery_failed(self, payload):
        self.intake.delivery_failed(delivery_failed(payload))

    @event_handler("elicense", "license_revoked")
    def on_license_revoked(self, payload):
        self.intake.license_revoked(license_revoked(payload))

    @event_handler("evaluation", "bad_review_opened")
    def on_bad_review_opened(self, payload):
        self.intake.bad_review_opened(bad_review_opened(payload))

    @event_handler("evaluation", "bad_review_closed")
    def on_bad_review_closed(self, payload):
        self.intake.bad_review_closed(bad_review_closed(payload))
