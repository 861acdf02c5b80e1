"""delivery api role: native grpcio server."""
from google.protobuf import json_format

from onething.delivery.v1 import delivery_pb2 as pb, delivery_pb2_grpc as pb_grpc
from services.common import telemetry
from services.common.config import settings
from services.common.grpc_server import ApiServer
from services.delivery.wiring import build_delivery


class DeliveryApi(pb_grpc.DeliveryServiceServicer):
    def __init__(self, delivery):
        self.delivery = delivery

    def GetDelivery(self, request, context):
        return json_format.ParseDict(self.delivery.get(request.case_no), pb.Delivery(), ignore_unknown_fields=True)


def build(port=None):
    telemetry.setup("delivery")
    name = pb.DESCRIPTOR.services_by_name["DeliveryService"].full_name
    return ApiServer(port or settings().port("delivery"),
                     [(pb_grpc.add_DeliveryServiceServicer_to_server, DeliveryApi(build_delivery()))], [name])


if __name__ == "__main__":
    import logging
    logging.basicConfig(level=logging.INFO)
    build().serve_forever()
