"""joint_review worker role (`nameko run`): opens a session for each submitted case, records the
opinions the departments' desks send (protos/asyncapi/desk.yaml) and takes the licences elicense
issues and revokes. Each handler decodes its message once (services.common.events.from_payload)
and hands it to its use case; the OutboxSweeper publishes what a committed save left pending."""

from kombu import Exchange, Queue
from nameko.timer import timer

from onething.elicense.v1 import events_pb2 as license_events
from onething.intake.v1 import events_pb2 as intake_events
from onething.joint_review.v1 import events_pb2 as review_events
from services.common.config import refuse_defaults_in_production, settings
from services.common.events import from_payload, to_payload
from services.common.registry import DESK_EXCHANGE
from services.common.worker import Component, Inbox, OutboxSweeper, Sender, Tracing, consumer, event_handler
from services.joint_review import domain
from services.joint_review.wiring import build_review

refuse_defaults_in_production("worker")  # ONETHING_PROFILE=production: no default credentials or keys

CLOCK_CHECK_SECONDS = settings().clock_check_seconds
DESK_OPINIONS = "joint_review.desk_opinions"


def desk_opinions_queue(site):
    """The queue of the desks' opinions on this site's cases: bound to the exchange the desks publish
    to with `opinion.<department>.<region>.<site>` for every department and region."""
    exchange = Exchange(DESK_EXCHANGE, type="topic", durable=True, auto_delete=False)
    return Queue(DESK_OPINIONS, exchange=exchange, routing_key=f"opinion.*.*.{site}", durable=True,
                 auto_delete=False)


def case_submitted(payload):
    """case_submitted, decoded once into the domain's value: the package is intake's
    `package_snapshot`, the version the case was submitted under."""
    e = from_payload(intake_events.CaseSubmitted, payload)
    return domain.CaseSubmitted(
        case_no=e.case_no, region_code=e.region_code, package=to_payload(e.package_snapshot),
        materials=tuple(to_payload(m) for m in e.materials), applicant=to_payload(e.applicant),
        parties=tuple(to_payload(p) for p in e.parties), delivery=to_payload(e.delivery), form=dict(e.form))


class JointReviewWorker:
    name = "joint_review"
    tracing = Tracing()
    inbox = Inbox("joint_review")
    review = Component(build_review)
    sweeper = OutboxSweeper("review")  # sweeps review.store
    sender = Sender()  # the broker user a desk's opinion came from

    @event_handler("intake", "case_submitted")
    def on_case_submitted(self, payload):
        self.review.open_session(case_submitted(payload))

    @event_handler("intake", "case_supplemented")
    def on_case_supplemented(self, payload):
        self.review.case_supplemented(from_payload(intake_events.CaseSupplemented, payload))

    @event_handler("intake", "case_withdrawn")
    def on_case_withdrawn(self, payload):
        self.review.case_withdrawn(from_payload(intake_events.CaseWithdrawn, payload))

    @timer(interval=CLOCK_CHECK_SECONDS)
    def check_clocks(self):
        """Escalation (督办) of tasks past their promised limit: not an outbox sweep."""
        self.review.check_clocks()

    @event_handler("elicense", "license_issued")
    def on_license_issued(self, payload):
        self.review.license_issued(from_payload(license_events.LicenseIssued, payload))

    @event_handler("elicense", "license_revoked")
    def on_license_revoked(self, payload):
        self.review.license_revoked(from_payload(license_events.LicenseRevoked, payload))

    @consumer(desk_opinions_queue(settings().region))
    def on_desk_opinion(self, payload):
        """A desk's opinion, recorded only if it came from the desk that owns the task."""
        self.review.desk_opinion(from_payload(review_events.DeskOpinion, payload), self.sender)
