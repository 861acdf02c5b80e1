"""elicense as intake sees it: the licences an applicant holds (减材料), over gRPC, in domain errors.
intake asks as a service (its own service token: the parties a material is about are not the
caller), which elicense's policy lets list any holder's licences."""
import grpc
from google.protobuf import json_format

from onething.elicense.v1 import elicense_pb2, elicense_pb2_grpc
from services.common import auth
from services.common.errors import InvalidArgument, Unavailable
from services.common.grpc_client import channel


class ElicenseClient:
    def __init__(self, address, timeout=3.0, stub=None, metadata=None):
        self.stub = stub or elicense_pb2_grpc.ElicenseServiceStub(channel(address))
        self.timeout = timeout
        self.metadata = metadata or (lambda: auth.service_metadata("intake"))

    def licences_of(self, holder_code):
        """Every licence of the holder, as dicts of License (status and validity included)."""
        try:
            resp = self.stub.ListLicenses(elicense_pb2.ListLicensesRequest(holder_code=holder_code),
                                          timeout=self.timeout, metadata=self.metadata())
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidArgument(exc.details()) from None
            raise Unavailable(f"elicense cannot be reached ({exc.code().name})") from None
        return [json_format.MessageToDict(l, preserving_proto_field_name=True) for l in resp.licenses]
