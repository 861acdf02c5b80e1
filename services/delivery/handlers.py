"""delivery use cases: when a case is approved, send its results by the channel the applicant
chose; then the clerk and the carrier move WINDOW and MAIL deliveries on. No framework here;
`licenses(id)` looks a licence up at elicense (over the bus).

Every change appends to the delivery's history and queues its events in the same atomic update
(the outbox), published right after. The pickup code is kept on the delivery only: never in an
event, a history note or a log line."""
import datetime
from datetime import timedelta

from google.protobuf import json_format

from onething.common.v1 import common_pb2
from onething.delivery.v1 import events_pb2
from services.common import telemetry
from services.common.address import check_address
from services.common.bus import outbox_entry
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.common.mongo import flush_outbox
from services.delivery import domain
from services.delivery.store import DeliveryDoc

RESULTS = "results"
LINK_TTL = timedelta(hours=24)


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _channel_number(name):
    return common_pb2.DeliveryChannel.Value(name)


class Delivery:
    def __init__(self, store, blobs, bus, pickup_code=domain.new_pickup_code):
        self.store, self.blobs, self.bus = store, blobs, bus
        self.pickup_code = pickup_code

    # -- case approved -------------------------------------------------------------------------

    def on_case_concluded(self, event, licenses):
        if not event.approved:
            return None
        telemetry.mark_case(event.case_no)
        existing = self.store.get(event.case_no)
        if existing is not None:  # a redelivery; anything still pending goes out with the sweep
            return existing
        channel = common_pb2.DeliveryChannel.Name(event.delivery.channel)
        results = []
        for license_id in event.license_ids:
            lic = licenses(license_id) or {}
            key = lic.get("document_key", "")
            item = {"license_id": license_id, "object_key": key}
            if channel == domain.ELECTRONIC and key:
                item["download_url"] = self.blobs.download_url(RESULTS, key, LINK_TTL)
                item["expires_at"] = (_now() + LINK_TTL).isoformat()
            results.append(item)
        steps = domain.steps_for(channel)
        at = _now().isoformat()
        body = {"case_no": event.case_no, "channel": channel, "status": steps[-1], "results": results,
                "applicant_id": event.applicant.id_number, "region_code": event.region_code,
                "package_code": event.package_code, "lead_department": event.lead_department,
                "history": [{"status": s, "at": at, "note": "", "by": ""} for s in steps]}
        outbox = []
        if channel == domain.ELECTRONIC:
            outbox.append(outbox_entry("delivery_dispatched", events_pb2.DeliveryDispatched(
                case_no=event.case_no, channel=event.delivery.channel), event.case_no))
            outbox.append(self._completed(body, at, ""))
        elif channel == domain.WINDOW:
            body["pickup_code"] = self.pickup_code()
            body["history"][-1]["note"] = "results wait at the window; the applicant shows the pickup code"
            outbox.append(outbox_entry("delivery_ready_for_pickup", events_pb2.DeliveryReadyForPickup(
                case_no=event.case_no, channel=event.delivery.channel, applicant_id=event.applicant.id_number,
                region_code=event.region_code), event.case_no))
        elif channel == domain.MAIL:
            address = json_format.MessageToDict(event.delivery.address, preserving_proto_field_name=True)
            body["address"] = address
            try:
                # intake checks the address at submit; this is the defensive second look
                check_address(address)
            except InvalidArgument as exc:
                body["status"], body["failure_reason"] = domain.FAILED, exc.message
                body["history"].append({"status": domain.FAILED, "at": at, "note": exc.message, "by": ""})
                outbox.append(outbox_entry("delivery_failed", events_pb2.DeliveryFailed(
                    case_no=event.case_no, channel=event.delivery.channel, applicant_id=event.applicant.id_number,
                    region_code=event.region_code, reason=exc.message), event.case_no))
        else:
            body["status"], body["failure_reason"] = domain.FAILED, f"no delivery channel chosen ({channel})"
            body["history"].append({"status": domain.FAILED, "at": at, "note": body["failure_reason"], "by": ""})
            outbox.append(outbox_entry("delivery_failed", events_pb2.DeliveryFailed(
                case_no=event.case_no, channel=event.delivery.channel, applicant_id=event.applicant.id_number,
                region_code=event.region_code, reason=body["failure_reason"]), event.case_no))
        if self.store.insert(body, outbox) and outbox:
            flush_outbox(DeliveryDoc, event.case_no, self.bus, outbox)
        return self.store.get(event.case_no)

    def _completed(self, body, at, by):
        return outbox_entry("delivery_completed", events_pb2.DeliveryCompleted(
            case_no=body["case_no"], channel=_channel_number(body["channel"]), applicant_id=body["applicant_id"],
            region_code=body.get("region_code", ""), package_code=body.get("package_code", ""),
            lead_department=body.get("lead_department", ""), completed_at=at, completed_by=by), body["case_no"])

    # -- the clerk and the carrier -------------------------------------------------------------

    def _load(self, case_no):
        if not case_no:
            raise InvalidArgument("name the case (case_no)")
        telemetry.mark_case(case_no)
        body = self.store.get(case_no)
        if body is None:
            raise NotFound(f"there is no delivery for case {case_no} (yet)")
        return body

    def _move(self, body, status, at, note, by, outbox, **changes):
        expected = body["status"]
        body = dict(body, status=status, **changes)
        body["history"] = list(body["history"]) + [{"status": status, "at": at, "note": note, "by": by}]
        if not self.store.update(body["case_no"], expected, body, outbox):
            # someone else moved it between our read and our write
            raise FailedPrecondition(f"the delivery of case {body['case_no']} changed meanwhile; look again")
        flush_outbox(DeliveryDoc, body["case_no"], self.bus, outbox)
        return body

    def confirm_pickup(self, case_no, pickup_code, clerk_id):
        if not (pickup_code or "").strip() or not (clerk_id or "").strip():
            raise InvalidArgument("a pickup needs the applicant's pickup code and the clerk (clerk_id)")
        body = self._load(case_no)
        domain.check_pickup(body, pickup_code)
        at = _now().isoformat()
        return self._move(body, domain.COMPLETED, at, "picked up at the window", clerk_id,
                          [self._completed(body, at, clerk_id)])

    def record_dispatch(self, case_no, carrier, tracking_number, clerk_id):
        if not (clerk_id or "").strip():
            raise InvalidArgument("name the clerk who dispatched the parcel (clerk_id)")
        carrier, number = domain.normalise_tracking(carrier, tracking_number)
        body = self._load(case_no)
        domain.check_dispatch(body)
        event = events_pb2.DeliveryDispatched(case_no=case_no, channel=_channel_number(body["channel"]),
                                              carrier=carrier, tracking_number=number, dispatched_by=clerk_id)
        return self._move(body, domain.DISPATCHED, _now().isoformat(), f"handed to {carrier}, tracking number {number}", clerk_id,
                          [outbox_entry("delivery_dispatched", event, case_no)], carrier=carrier,
                          tracking_number=number)

    def record_delivered(self, case_no, tracking_number, signed_by):
        if not (signed_by or "").strip():
            raise InvalidArgument("name who signed for the parcel (signed_by)")
        body = self._load(case_no)
        domain.check_delivered(body, tracking_number)
        at = _now().isoformat()
        return self._move(body, domain.COMPLETED, at, f"signed for by {signed_by}", signed_by,
                          [self._completed(body, at, signed_by)])

    def get(self, case_no):
        return self._load(case_no)

