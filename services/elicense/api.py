"""elicense api role: native grpcio server."""
from google.protobuf import json_format

from onething.elicense.v1 import elicense_pb2 as pb, elicense_pb2_grpc as pb_grpc
from services.common import auth, telemetry
from services.common.errors import PermissionDenied
from services.common.config import settings
from services.common.grpc_server import ApiServer
from services.elicense.wiring import build_elicense


def to_proto(fields):
    return json_format.ParseDict(fields, pb.License(), ignore_unknown_fields=True)


def key_to_proto(key):
    return pb.SigningKey(key_id=key.key_id, region_code=key.region_code, public_key=key.public_key,
                         active=key.active)


class ElicenseApi(pb_grpc.ElicenseServiceServicer):
    def __init__(self, elicense):
        self.elicense = elicense

    def GetLicense(self, request, context):
        return to_proto(self.elicense.get(request.license_id))

    def ListLicenses(self, request, context):
        return pb.ListLicensesResponse(licenses=[to_proto(f) for f in self.elicense.list(
            request.holder_code, request.case_no)])

    def RevokeLicense(self, request, context):
        """An officer of the issuing department and region, or an operator of that region."""
        actor = auth.actor_from_metadata(context.invocation_metadata())
        lic = self.elicense.get(request.license_id)
        issuer = lic.get("issuer_code", "")
        allowed = (actor.role == "operator" and issuer.startswith(actor.region or "-")) or (
            actor.role == "officer" and issuer == f"{actor.region}{actor.department.upper()}")
        if not allowed:
            raise PermissionDenied(f"only the issuing department ({issuer}) or an operator of its region "
                                   "may revoke this licence")
        return to_proto(self.elicense.revoke(request.license_id, request.reason, actor.label()))

    def ListSigningKeys(self, request, context):
        return pb.ListSigningKeysResponse(keys=[key_to_proto(k) for k in self.elicense.keys(request.region_code)])

    def RotateSigningKey(self, request, context):
        actor = auth.actor_from_metadata(context.invocation_metadata())
        if actor.role != "operator" or actor.region != request.region_code:
            raise PermissionDenied(f"only an operator of region {request.region_code} may rotate its signing key")
        return key_to_proto(self.elicense.rotate_key(request.region_code))

    def VerifyLicense(self, request, context):
        valid, reason, fields = self.elicense.verify(request.license_id)
        return pb.VerifyLicenseResponse(valid=valid, reason=reason, license=to_proto(fields))


def build(port=None):
    telemetry.setup("elicense")
    name = pb.DESCRIPTOR.services_by_name["ElicenseService"].full_name
    return ApiServer(port or settings().port("elicense"),
                     [(pb_grpc.add_ElicenseServiceServicer_to_server, ElicenseApi(build_elicense()))], [name])


if __name__ == "__main__":
    import logging
    logging.basicConfig(level=logging.INFO)
    build().serve_forever()
