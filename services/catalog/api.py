"""catalog api role: native grpcio server. Thin: decode, call the handler, encode. Reads are public;
versions are for operators and SREs; publish, retire and reload for operators of the site's region
(services/common/policy.py)."""
from google.protobuf import json_format

from onething.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from services.catalog import codec
from services.catalog.wiring import build_catalog
from services.common import policy, telemetry
from services.common.config import settings
from services.common.grpc_server import ApiServer


def to_proto(pkg):
    """A resolved package as catalog.v1.Package: its enums and moments encoded once, here (services.catalog.codec)."""
    return json_format.ParseDict(codec.package(pkg), catalog_pb2.Package(), ignore_unknown_fields=True)


def _version(view):
    return json_format.ParseDict(codec.version(view), catalog_pb2.PackageVersion())


def _args(request):
    return dict(code=request.code, region_code=request.region_code, situations=dict(request.situations),
                version=request.version, held_license_types=list(request.held_license_types))


class CatalogApi(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, catalog):
        self.catalog = catalog

    def GetPackage(self, request, context):
        return to_proto(self.catalog.get_package(**_args(request)))

    def ListPackages(self, request, context):
        audience = catalog_pb2.Audience.Name(request.audience) if request.audience else ""
        return catalog_pb2.ListPackagesResponse(
            packages=[to_proto(p) for p in self.catalog.list_packages(request.region_code, audience)])

    def GetNotice(self, request, context):
        found = self.catalog.notice(**_args(request))
        return json_format.ParseDict(dict(found, package=codec.package(found["package"])), catalog_pb2.Notice(),
                                     ignore_unknown_fields=True)

    def GetSavings(self, request, context):
        return json_format.ParseDict(self.catalog.savings(**_args(request)), catalog_pb2.Savings())

    def CheckForm(self, request, context):
        args = _args(request.package)
        args.pop("held_license_types")
        return json_format.ParseDict(self.catalog.check_form(values=dict(request.values), **args),
                                     catalog_pb2.CheckFormResponse())

    def ListVersions(self, request, context):
        return catalog_pb2.ListVersionsResponse(versions=[_version(v) for v in self.catalog.versions(request.code)])

    @staticmethod
    def _operator():
        """site_operator: an operator whose region contains the site's (GB/T 2260 hierarchy)."""
        caller = policy.current()
        policy.site_operator(caller)
        return caller.audit_actor()

    def PublishPackage(self, request, context):
        return _version(self.catalog.publish(request.code, request.version, actor=self._operator()))

    def RetirePackage(self, request, context):
        return _version(self.catalog.retire(request.code, request.version, actor=self._operator()))

    def ReloadCatalog(self, request, context):
        changes = [codec.reload_change(c, v, o) for c, v, o in self.catalog.reload(actor=self._operator())]
        return json_format.ParseDict({"changes": changes}, catalog_pb2.ReloadCatalogResponse())


def build(port=None, catalog=None):
    s = settings()
    telemetry.setup("catalog-api")
    catalog = catalog or build_catalog(load=True)
    name = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name
    return ApiServer(port if port is not None else s.port("catalog"),
                     [(catalog_pb2_grpc.add_CatalogServiceServicer_to_server, CatalogApi(catalog))], [name])


if __name__ == "__main__":
    from services.common import logs
    logs.configure()
    build().serve_forever()
