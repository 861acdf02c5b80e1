"""The catalog as intake sees it: a gRPC client that speaks in domain errors."""
import grpc
from google.protobuf import json_format

from onething.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from services.common.errors import InvalidArgument, NotFound, Unavailable
from services.common.grpc_client import channel


class CatalogClient:
    def __init__(self, address):
        self.stub = catalog_pb2_grpc.CatalogServiceStub(channel(address))

    def get_package(self, code, region_code, situations=None):
        """The package as it applies in the region for the applicant's answers to its situations."""
        try:
            pkg = self.stub.GetPackage(catalog_pb2.GetPackageRequest(code=code, region_code=region_code,
                                                                     situations=situations or {}))
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(exc.details()) from None
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidArgument(exc.details()) from None
            raise Unavailable(f"the catalog cannot be reached ({exc.code().name}); try again shortly") from None
        return json_format.MessageToDict(pkg, preserving_proto_field_name=True)
