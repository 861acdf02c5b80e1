"""elicense api role: native grpcio server. A licence is read by its holder, the applicant of its
case (a clerk on their behalf; intake says whether the case is theirs), officers whose task needs it
(joint_review says which) and the platform's services; anyone else is answered as for a licence that
does not exist. VerifyLicense is public: the identifier and the QR code's token, masked fields;
VerifyLicenseDocument too: the document itself, issued by this site or any other.
Revocation and key rotation by region authority, compared by the GB/T 2260 hierarchy."""
import hmac

from onething.elicense.v1 import elicense_pb2 as pb
from onething.elicense.v1 import elicense_pb2_grpc as pb_grpc
from services.common import policy, telemetry
from services.common.config import settings
from services.common.errors import InvalidArgument, NotFound, PermissionDenied
from services.common.grpc_server import ApiServer
from services.common.privacy import mask_id
from services.elicense import codec, document, domain
from services.elicense.access import CaseAccess
from services.elicense.wiring import build_elicense

# what public verification shows: no case, document, signature or full holder
_PUBLIC_FIELDS = ("license_id", "type_code", "type_name", "license_no", "issuer_name", "issuer_code", "valid_from",
                  "valid_to", "holder_code_type", "status", "revoked_at", "superseded_at", "key_id")


def to_proto(fields):
    return codec.licence_to_proto(fields)


def mask_name(name):
    """李华 -> 李*, 欧阳小明 -> 欧***; an enterprise keeps its first 2 and last 2 characters."""
    name = name or ""
    if len(name) <= 1:
        return "*" * len(name)
    if len(name) > 6:
        return name[:2] + "*" * (len(name) - 4) + name[-2:]
    return name[0] + "*" * (len(name) - 1)


def masked(fields):
    """The licence as the public sees it when verifying: directory fields, the holder masked."""
    out = {k: fields[k] for k in _PUBLIC_FIELDS if fields.get(k)}
    out["holder_name"] = mask_name(fields.get("holder_name", ""))
    out["holder_code"] = mask_id(fields.get("holder_code", ""))
    return out


def _shown(fields):
    """A document's licence for the api; a document that did not verify may carry dates that are
    none (it was made by someone else): those are left out rather than failing the answer."""
    try:
        return to_proto(fields)
    except ValueError:
        return to_proto({k: v for k, v in fields.items()
                         if k not in ("valid_from", "valid_to", "revoked_at", "superseded_at", "issued_at")})


def issuer_region(fields):
    return (fields.get("issuer_code") or "")[:6]




class ElicenseApi(pb_grpc.ElicenseServiceServicer):
    def __init__(self, elicense, access=None):
        self.elicense = elicense
        self.access = access or CaseAccess()

    def _may_read(self, caller, fields, case_no=""):
        """licence_reader: the holder; the applicant of its case (a clerk on their behalf); an officer
        whose task needs it (in its own case, or in the case the request names: 减材料); a service."""
        if caller.is_(policy.SERVICE):
            return True
        if caller.is_(policy.APPLICANT, policy.CLERK):
            if caller.owns(fields.get("holder_code", ""), issuer_region(fields)):
                return True
            return self.access.case_visible(caller, fields.get("case_no", ""))
        if caller.is_(policy.OFFICER):
            return any(self.access.task_needs(caller, c, fields.get("license_id", ""))
                       for c in dict.fromkeys([fields.get("case_no", ""), case_no]) if c)
        return False

    def GetLicense(self, request, context):
        caller = policy.current()
        if caller.is_(policy.CLERK):
            caller.require_applicant()
        return to_proto(self.elicense.get(request.license_id, actor=caller.audit_actor(),
                                          allow=lambda fields: self._may_read(caller, fields, request.case_no)))

    def ListLicenses(self, request, context):
        caller = policy.current()

        def allow(holder_code, case_no):
            """licence_list: a service lists anyone's (减材料); an applicant their own, or their case's."""
            if caller.is_(policy.SERVICE):
                return
            applicant_id = caller.require_applicant()
            if holder_code and holder_code != applicant_id:
                raise PermissionDenied("an applicant lists their own licences only (holder_code is not theirs)",
                                       zh="只能查询本人的电子证照。")
            if not holder_code and case_no and not self.access.case_visible(caller, case_no):
                raise NotFound(f"there is no case {case_no}")
        return pb.ListLicensesResponse(licenses=[to_proto(f) for f in self.elicense.list(
            request.holder_code, request.case_no, actor=caller.audit_actor(), allow=allow)])

    def RevokeLicense(self, request, context):
        """issuer: an officer of the issuing department and region, or an operator whose region contains
        the issuer's (GB/T 2260 hierarchy: an operator of 440000 may, one of 440300 may not)."""
        caller = policy.current()
        lic = self.elicense.get(request.license_id)
        issuer, region = lic.get("issuer_code", ""), issuer_region(lic)
        allowed = (caller.is_(policy.OPERATOR) and caller.within(region)) or (
            caller.is_(policy.OFFICER) and caller.region == region and issuer == f"{region}{caller.department.upper()}")
        if not allowed:
            raise PermissionDenied(f"only the issuing department ({issuer}) or an operator of its region "
                                   "may revoke this licence")
        return to_proto(self.elicense.revoke(request.license_id, request.reason, caller.actor.label(),
                                             actor=caller.audit_actor()))

    def ListSigningKeys(self, request, context):
        """This site's own keys of the region and those of its key directory, each with its site."""
        return pb.ListSigningKeysResponse(keys=[codec.key_to_proto(k)
                                                for k in self.elicense.published_keys(request.region_code)])

    def RotateSigningKey(self, request, context):
        caller = policy.current()
        if not (caller.is_(policy.OPERATOR) and caller.within(request.region_code)):
            raise PermissionDenied(f"only an operator of region {request.region_code[:8]} (or of a region containing "
                                   "it) may rotate its signing key")
        key = self.elicense.rotate_key(request.region_code, actor=caller.audit_actor())
        return codec.key_to_proto(domain.published(key, self.elicense.site))

    def VerifyLicense(self, request, context):
        """Public: the identifier and the QR code's token; the answer has masked fields only. A wrong
        token is answered as an unknown licence."""
        if not request.license_id:
            raise InvalidArgument("name the licence (license_id)")
        if not request.token:
            raise InvalidArgument("give the verification token of the licence's QR code (token) with its identifier",
                                  zh="请提供电子证照二维码中的核验码。")
        fields = self.elicense.find(request.license_id)
        if fields is None or not hmac.compare_digest(request.token.encode(), document.qr_token(fields).encode()):
            raise NotFound(f"there is no licence {request.license_id} with that verification token")
        valid, reason, fields = self.elicense.verify(request.license_id)
        return pb.VerifyLicenseResponse(valid=valid, reason=reason, license=to_proto(masked(fields)))


    def VerifyLicenseDocument(self, request, context):
        """Public: the document carries the identifier and the QR code's token itself. A licence of
        any site; the answer has masked fields only, its status only where this site issued it."""
        check = self.elicense.verify_document(request.document)
        return pb.VerifyLicenseDocumentResponse(
            valid=check.valid, reason=check.reason, license=_shown(masked(check.fields)),
            issuing_site=check.issuing_site, status_check=codec.status_check_to_proto(check.status_check))


def build(port=None):
    telemetry.setup("elicense-api")
    name = pb.DESCRIPTOR.services_by_name["ElicenseService"].full_name
    return ApiServer(port or settings().port("elicense"),
                     [(pb_grpc.add_ElicenseServiceServicer_to_server, ElicenseApi(build_elicense()))], [name])


if __name__ == "__main__":
    from services.common import logs
    logs.configure()
    build().serve_forever()
