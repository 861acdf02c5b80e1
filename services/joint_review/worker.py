"""joint_review worker role (`nameko run`): opens a session for each submitted case and takes the
licences elicense issues. Each handler decodes its event once (services.common.events.from_payload)
and hands it to its use case; the OutboxSweeper publishes what a committed save left pending."""

from nameko.timer import timer

from onething.elicense.v1 import events_pb2 as license_events
from onething.intake.v1 import events_pb2 as intake_events
from services.common.config import refuse_defaults_in_production, settings
from services.common.events import from_payload, to_payload
from services.common.worker import Component, Inbox, OutboxSweeper, Tracing, event_handler
from services.joint_review import domain
from services.joint_review.wiring import build_review

refuse_defaults_in_production("worker")  # ONETHING_PROFILE=production: no default credentials or keys

CLOCK_CHECK_SECONDS = settings().clock_check_seconds


def case_submitted(payload):
    """case_submitted, decoded once into the domain's value: the package is intake's
    `package_snapshot`, the version the case was submitted under."""
    e = from_payload(intake_events.CaseSubmitted, payload)
    return domain.CaseSubmitted(
        case_no=e.case_no, region_code=e.region_code, package=to_payload(e.package_snapshot),
        materials=tuple(to_payload(m) for m in e.materials), applicant=to_payload(e.applicant),
        parties=tuple(to_payload(p) for p in e.parties), delivery=to_payload(e.delivery))


class JointReviewWorker:
    name = "joint_review"
    tracing = Tracing()
    inbox = Inbox("joint_review")
    review = Component(build_review)
    sweeper = OutboxSweeper("review")  # sweeps review.store

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
