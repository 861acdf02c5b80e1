"""evaluation worker role (`nameko run`): learns which cases may be rated (and their lead department)
from delivery, and which were withdrawn after their conclusion from joint_review. At a province it
also rolls up its cities' ratings: their evaluation events come up the links onto this site's
evaluation.events, and each is counted once (a site's own events, and a city's own coming back, are
not). Each handler decodes its event once into domain values; the sweeper publishes what the
ratings' outboxes kept."""
from nameko.extensions import DependencyProvider

from onething.delivery.v1 import events_pb2 as delivery_events
from onething.joint_review.v1 import events_pb2 as review_events
from services.common.config import refuse_defaults_in_production
from services.common.events import from_payload
from services.common.worker import Component, Inbox, OutboxSweeper, Tracing, event_handler
from services.evaluation import contracts
from services.evaluation.domain import Origin, Rateable, ReportKind
from services.evaluation.wiring import build_evaluation

refuse_defaults_in_production("worker")  # ONETHING_PROFILE=production: no default credentials or keys


class EventOrigin(DependencyProvider):
    """Where the event being handled was produced: its `site` header (the producing site's region
    code, services/common/bus.py envelope) and its `event_id`, as a domain.Origin."""

    def get_dependency(self, worker_ctx):
        data = worker_ctx.context_data or {}
        site, event_id = data.get("site"), data.get("event_id")
        return Origin(site=site if isinstance(site, str) else "", event_id=event_id if isinstance(event_id, str) else "")


class EvaluationWorker:
    name = "evaluation"
    tracing = Tracing()
    inbox = Inbox("evaluation")
    evaluation = Component(build_evaluation)
    sweeper = OutboxSweeper("evaluation")  # sweeps evaluation.store
    origin = EventOrigin()

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

    # a city's ratings, 差评 opened and closed (up its link): the province's figures
    @event_handler("evaluation", "evaluation_received", other_sites=True)
    def on_city_rated(self, payload):
        self.evaluation.city_report(contracts.rating_report(ReportKind.RATED, payload, self.origin))

    @event_handler("evaluation", "bad_review_opened", other_sites=True)
    def on_city_bad_review_opened(self, payload):
        self.evaluation.city_report(contracts.rating_report(ReportKind.BAD_REVIEW_OPENED, payload, self.origin))

    @event_handler("evaluation", "bad_review_closed", other_sites=True)
    def on_city_bad_review_closed(self, payload):
        self.evaluation.city_report(contracts.rating_report(ReportKind.BAD_REVIEW_CLOSED, payload, self.origin))
