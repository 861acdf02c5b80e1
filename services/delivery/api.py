"""delivery api role: native grpcio server. The applicant reads their own delivery, with its pickup
code and download links; window clerks of the delivery's region read it without them and move it on
(pickup, dispatch, re-dispatch, the carrier's reports); the clerk is the token's subject, never a
request field (services/common/policy.py)."""
from google.protobuf import json_format

from onething.delivery.v1 import delivery_pb2 as pb
from onething.delivery.v1 import delivery_pb2_grpc as pb_grpc
from services.common import policy, telemetry
from services.common.config import settings
from services.common.errors import NotFound, PermissionDenied
from services.common.grpc_server import ApiServer
from services.common.privacy import mask_id
from services.delivery import domain, wire
from services.delivery.wiring import build_delivery


def _with_times(item, *names):
    """`item` with its ISO moments `names` as RFC 3339 strings (json_format makes Timestamps of
    them); an empty one left out (unset)."""
    out = {k: v for k, v in item.items() if k not in names}
    for name in names:
        moment = wire.rfc3339_of_iso(item.get(name))
        if moment is not None:
            out[name] = moment
    return out


def to_proto(body):
    """The delivery (status and channel as the domain's enums, the carrier by its short name and the
    moments as ISO strings, as the store keeps them) as the api answers it."""
    data = dict(body, status=domain.STATUS_NUMBERS[domain.Status(body["status"])],
                channel=domain.CHANNEL_NUMBERS[domain.Channel(body["channel"])],
                carrier=domain.carrier_number(body.get("carrier", "")),
                results=[_with_times(r, "expires_at", "revoked_at") for r in body.get("results", [])],
                history=[_with_times(dict(h, status=domain.STATUS_NUMBERS[domain.Status(h["status"])]), "at")
                         for h in body.get("history", [])])
    return json_format.ParseDict(data, pb.Delivery(), ignore_unknown_fields=True)


def staff_view(body):
    """What a clerk sees: no pickup code (only its owner sees it), no download links, the applicant's
    identity number masked."""
    body = dict(body)
    body.pop("pickup_code", None)
    if body.get("applicant_id"):
        body["applicant_id"] = mask_id(body["applicant_id"])
    body["results"] = [{k: v for k, v in r.items() if k not in ("download_url", "expires_at")}
                       for r in body.get("results", [])]
    return body


class DeliveryApi(pb_grpc.DeliveryServiceServicer):
    def __init__(self, delivery):
        self.delivery = delivery

    @staticmethod
    def _clerk_of_region(caller):
        """clerk_region: a clerk whose region contains the delivery's (a service: the carrier's feed)."""
        def allow(body):
            if caller.is_(policy.SERVICE):
                return
            if not (caller.is_(policy.CLERK) and caller.within(body.get("region_code", ""))):
                raise PermissionDenied(f"only a window clerk of region {body.get('region_code', '?')} (or a region "
                                       f"containing it) handles the delivery of case {body.get('case_no', '')}")
        return allow

    def GetDelivery(self, request, context):
        # delivery_reader: the applicant's own (with the pickup code and the links); a clerk of the region
        # (without them); anyone else is answered as for a delivery that does not exist
        caller = policy.current()

        def allow(body):
            mine = caller.is_(policy.APPLICANT) and body.get("applicant_id") == caller.sub
            staff = caller.is_(policy.CLERK) and caller.within(body.get("region_code", ""))
            if not (mine or staff):
                raise NotFound(f"there is no delivery for case {request.case_no} (yet)")
        body = self.delivery.get(request.case_no, actor=caller.audit_actor(), allow=allow)
        return to_proto(body if caller.is_(policy.APPLICANT) else staff_view(body))

    def ConfirmPickup(self, request, context):
        caller = policy.current()  # the clerk is the token's subject (the request names none)
        return to_proto(staff_view(self.delivery.confirm_pickup(
            request.case_no, request.pickup_code, caller.sub, actor=caller.audit_actor(),
            allow=self._clerk_of_region(caller))))

    def RecordDispatch(self, request, context):
        caller = policy.current()
        return to_proto(staff_view(self.delivery.record_dispatch(
            request.case_no, domain.carrier_of_number(request.carrier), request.tracking_number, caller.sub,
            actor=caller.audit_actor(), allow=self._clerk_of_region(caller))))

    def RecordDelivered(self, request, context):
        caller = policy.current()
        return to_proto(staff_view(self.delivery.record_delivered(
            request.case_no, request.tracking_number, request.signed_by, allow=self._clerk_of_region(caller))))

    def RecordUndeliverable(self, request, context):
        caller = policy.current()
        return to_proto(staff_view(self.delivery.record_undeliverable(
            request.case_no, request.tracking_number, request.reason, allow=self._clerk_of_region(caller))))

    def Redispatch(self, request, context):
        caller = policy.current()
        address = json_format.MessageToDict(request.address, preserving_proto_field_name=True)
        return to_proto(staff_view(self.delivery.redispatch(
            request.case_no, address, domain.carrier_of_number(request.carrier), request.tracking_number, caller.sub,
            actor=caller.audit_actor(), allow=self._clerk_of_region(caller))))


def build(port=None):
    telemetry.setup("delivery-api")
    name = pb.DESCRIPTOR.services_by_name["DeliveryService"].full_name
    return ApiServer(port or settings().port("delivery"),
                     [(pb_grpc.add_DeliveryServiceServicer_to_server, DeliveryApi(build_delivery()))], [name])


if __name__ == "__main__":
    from services.common import logs
    logs.configure()
    build().serve_forever()
