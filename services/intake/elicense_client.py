"""elicense as intake sees it: the licences an applicant holds (减材料), over gRPC, in domain errors.
intake asks as a service (its own service token: the parties a material is about are not the
caller), which elicense's policy lets list any holder's licences. A licence comes back as the dict
intake's rules read (domain.valid_licences, domain.check_materials): its validity days as
"YYYY-MM-DD" (google.type.Date in the contract), its moments as RFC 3339 strings, its holder code
type as the standard's code ("111", "001")."""
import logging

import grpc
from google.protobuf import json_format

from onething.elicense.v1 import elicense_pb2, elicense_pb2_grpc
from services.common import auth
from services.common.errors import InvalidArgument, Unavailable
from services.common.grpc_client import channel
from services.intake import convert

log = logging.getLogger(__name__)

# elicense's HolderCodeType -> the GB/T 36903 code the licence carries
HOLDER_CODE_TYPES = {elicense_pb2.HOLDER_CODE_TYPE_CITIZEN_ID: "111", elicense_pb2.HOLDER_CODE_TYPE_CREDIT_CODE: "001"}
DAYS = ("valid_from", "valid_to")
MOMENTS = ("revoked_at", "superseded_at", "issued_at")


def licence_dict(lic):
    """A License as the dict intake reads; a validity day that is none (month 13) is InvalidArgument."""
    out = json_format.MessageToDict(lic, preserving_proto_field_name=True)
    for field in DAYS:
        out.pop(field, None)
        if value := convert.day(lic, field):
            out[field] = value
    for field in MOMENTS:
        out.pop(field, None)
        if value := convert.iso(lic, field):
            out[field] = value
    out.pop("holder_code_type", None)
    if code := convert.word(HOLDER_CODE_TYPES, lic.holder_code_type):
        out["holder_code_type"] = code
    return out


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
        held = []
        for lic in resp.licenses:
            try:
                held.append(licence_dict(lic))
            except InvalidArgument as exc:  # not counted: the material it would stand in for is asked for
                log.warning("licence %s from elicense not readable, not counted: %s", lic.license_id, exc.message)
        return held
