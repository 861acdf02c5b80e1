"""delivery api role: native grpcio server."""
from google.protobuf import json_format

from onething.delivery.v1 import delivery_pb2 as pb, delivery_pb2_grpc as pb_grpc
from services.common import telemetry
from services.common.config import settings
from services.common.grpc_server import ApiServer
from services.delivery.wiring import build_delivery


def to_proto(body):
    return json_format.ParseDict(body, pb.Delivery(), ignore_unknown_fields=True)


class DeliveryApi(pb_grpc.DeliveryServiceServicer):
    def __init__(self, delivery):
        self.delivery = delivery

    def GetDelivery(self, request, context):
        # the pickup code goes back with the delivery so the applicant's client can show it; with no
        # authentication yet anyone may ask (see Delivery.pickup_code in the proto)
        return to_proto(self.delivery.get(request.case_no))

    def ConfirmPickup(self, request, context):
        return to_proto(self.delivery.confirm_pickup(request.case_no, request.pickup_code, request.clerk_id))

    def RecordDispatch(self, request, context):
        return to_proto(self.delivery.record_dispatch(request.case_no, request.carrier, request.tracking_number,
                                                      request.clerk_id))

    def RecordDelivered(self, request, context):
        return to_proto(self.delivery.record_delivered(request.case_no, request.tracking_number, request.signed_by))

    def RecordUndeliverable(self, request, context):
        return to_proto(self.delivery.record_undeliverable(request.case_no, request.tracking_number, request.reason))

    def Redispatch(self, request, context):
        address = json_format.MessageToDict(request.address, preserving_proto_field_name=True)
        return to_proto(self.delivery.redispatch(request.case_no, address, request.carrier, request.tracking_number,
                                                 request.clerk_id))


def build(port=None):
    telemetry.setup("delivery")
    name = pb.DESCRIPTOR.services_by_name["DeliveryService"].full_name
    return ApiServer(port or settings().port("delivery"),
                     [(pb_grpc.add_DeliveryServiceServicer_to_server, DeliveryApi(build_delivery()))], [name])


if __name__ == "__main__":
    import logging
    logging.basicConfig(level=logging.INFO)
    build().serve_forever()
