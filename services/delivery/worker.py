"""delivery worker role (`nameko run`): dispatches the results of approved cases. The events other
services publish are decoded here, once, into the domain's values; the outbox is swept by the one
OutboxSweeper."""
from google.protobuf import json_format
from nameko.rpc import RpcProxy

from onething.elicense.v1 import events_pb2 as license_events
from onething.joint_review.v1 import events_pb2 as review_events
from services.common.config import refuse_defaults_in_production
from services.common.events import from_payload
from services.common.worker import Component, Inbox, OutboxSweeper, Tracing, event_handler, with_timeout
from services.delivery import domain
from services.delivery.wiring import build_delivery

refuse_defaults_in_production("worker")  # ONETHING_PROFILE=production: no default credentials or keys


def case_concluded(payload):
    """joint_review's case_concluded as delivery needs it."""
    event = from_payload(review_events.CaseConcluded, payload)
    return domain.CaseConcluded(
        case_no=event.case_no, approved=event.approved, channel=domain.channel_of_number(event.delivery.channel),
        address=json_format.MessageToDict(event.delivery.address, preserving_proto_field_name=True),
        license_ids=tuple(event.license_ids), applicant_id=event.applicant.id_number,
        region_code=event.region_code, package_code=event.package_code, lead_department=event.lead_department,
        results=tuple(domain.ResultDocument(license_id=r.license_id, item_code=r.item_code, type_code=r.type_code,
                                            document_key=r.document_key) for r in event.results))


def session_withdrawn(payload):
    event = from_payload(review_events.SessionWithdrawn, payload)
    return domain.SessionWithdrawn(case_no=event.case_no, region_code=event.region_code,
                                   after_conclusion=event.after_conclusion)


def license_revoked(payload):
    event = from_payload(license_events.LicenseRevoked, payload)
    return domain.LicenseRevoked(license_id=event.license_id, case_no=event.case_no, reason=event.reason)


class DeliveryWorker:
    name = "delivery"
    tracing = Tracing()
    inbox = Inbox("delivery")
    delivery = Component(build_delivery)
    sweeper = OutboxSweeper("delivery")
    elicense = RpcProxy("elicense")

    @event_handler("joint_review", "case_concluded")
    def on_case_concluded(self, payload):
        self.delivery.on_case_concluded(case_concluded(payload), with_timeout(self.elicense.get_license))

    @event_handler("joint_review", "session_withdrawn")
    def on_session_withdrawn(self, payload):
        self.delivery.on_session_withdrawn(session_withdrawn(payload))

    @event_handler("elicense", "license_revoked")
    def on_license_revoked(self, payload):
        self.delivery.on_license_revoked(license_revoked(payload))
