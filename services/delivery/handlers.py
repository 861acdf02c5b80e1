"""delivery use cases: when a case is approved, send its results by the channel the applicant
chose. No framework here; `licenses(id)` looks a licence up at elicense (over the bus)."""
import datetime
from datetime import timedelta

from onething.common.v1 import common_pb2
from onething.delivery.v1 import events_pb2
from services.common import telemetry
from services.common.bus import outbox_entry
from services.common.errors import InvalidArgument, NotFound
from services.common.mongo import flush_outbox
from services.delivery import domain
from services.delivery.store import DeliveryDoc

RESULTS = "results"
LINK_TTL = timedelta(hours=24)


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


class Delivery:
    def __init__(self, store, blobs, bus):
        self.store, self.blobs, self.bus = store, blobs, bus

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
                "applicant_id": event.applicant.id_number,
                "history": [{"status": s, "at": at, "note": ""} for s in steps]}
        outbox = [outbox_entry("delivery_dispatched", events_pb2.DeliveryDispatched(
            case_no=event.case_no, channel=event.delivery.channel), event.case_no)]
        if steps[-1] == domain.COMPLETED:
            outbox.append(outbox_entry("delivery_completed", events_pb2.DeliveryCompleted(
                case_no=event.case_no, channel=event.delivery.channel, applicant_id=event.applicant.id_number,
                region_code=event.region_code, package_code=event.package_code,
                lead_department=event.lead_department), event.case_no))
        if self.store.insert(body, outbox):
            flush_outbox(DeliveryDoc, event.case_no, self.bus, outbox)
        return self.store.get(event.case_no)

    def get(self, case_no):
        if not case_no:
            raise InvalidArgument("name the case (case_no)")
        body = self.store.get(case_no)
        if body is None:
            raise NotFound(f"there is no delivery for case {case_no} (yet)")
        return body
