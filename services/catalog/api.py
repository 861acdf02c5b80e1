"""catalog api role: native grpcio server."""
from google.protobuf import json_format

from onething.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from services.catalog.wiring import build_catalog
from services.common import telemetry
from services.common.config import settings
from services.common.grpc_server import ApiServer


def to_proto(pkg):
    return json_format.ParseDict(pkg, catalog_pb2.Package(), ignore_unknown_fields=True)


class CatalogApi(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, catalog):
        self.catalog = catalog

    def GetPackage(self, request, context):
        return to_proto(self.catalog.get_package(request.code, request.region_code))

    def ListPackages(self, request, context):
        return catalog_pb2.ListPackagesResponse(
            packages=[to_proto(p) for p in self.catalog.list_packages(request.region_code)])


def build(port=None):
    s = settings()
    telemetry.setup("catalog")
    catalog = build_catalog(load=True)
    name = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name
    return ApiServer(port or s.port("catalog"),
                     [(catalog_pb2_grpc.add_CatalogServiceServicer_to_server, CatalogApi(catalog))], [name])


if __name__ == "__main__":
    import logging
    logging.basicConfig(level=logging.INFO)
    build().serve_forever()
