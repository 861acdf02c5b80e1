"""The catalog as intake sees it: a gRPC client that speaks in domain errors.

The package comes back as a dict (json_format.MessageToDict, proto field names) in the words intake's
checks use (services.common.forms, services.intake.domain): the catalog's enums are mapped back to
the strings of its data files here, in explicit tables, so a renamed proto value cannot change them.
A value a table does not know (a newer catalog) is left as MessageToDict gives it."""
import grpc
from google.protobuf import json_format

from onething.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from services.common.errors import InvalidArgument, NotFound, Unavailable
from services.common.grpc_client import channel

# onething.catalog.v1 enum value names -> the strings intake reads (MessageToDict leaves out a
# field holding the zero value: a FormField without a validator has no "validator", as before)
FIELD_TYPES = {"FIELD_TYPE_STRING": "string", "FIELD_TYPE_DATE": "date", "FIELD_TYPE_NUMBER": "number",
               "FIELD_TYPE_BOOL": "bool", "FIELD_TYPE_CHOICE": "choice"}
FIELD_VALIDATORS = {"FIELD_VALIDATOR_CITIZEN_ID": "citizen_id", "FIELD_VALIDATOR_CREDIT_CODE": "credit_code",
                    "FIELD_VALIDATOR_PHONE": "phone", "FIELD_VALIDATOR_REGION": "region",
                    "FIELD_VALIDATOR_BANK_ACCOUNT": "bank_account"}
ID_KINDS = {"ID_KIND_CITIZEN_ID": "citizen_id", "ID_KIND_CREDIT_CODE": "credit_code", "ID_KIND_ANY": "any"}
MATERIAL_FORMS = {"MATERIAL_FORM_PAPER": "paper", "MATERIAL_FORM_SCAN": "scan", "MATERIAL_FORM_E_LICENCE": "e-licence"}
SKIP_REASONS = {"SKIP_REASON_SITUATION": "situation", "SKIP_REASON_SWITCHED_OFF": "switched_off"}


def _mapped(table, value):
    return table.get(value, value) if isinstance(value, str) else value


def _with(entries, key, table):
    """Each dict of `entries` with its `key` mapped by `table` (where the key is present)."""
    return [dict(e, **{key: _mapped(table, e[key])}) if key in e else e for e in entries]


def package_dict(pkg):
    """A catalog.v1.Package as the dict intake reads: enums as the catalog's data-file strings."""
    out = json_format.MessageToDict(pkg, preserving_proto_field_name=True)
    if "form_fields" in out:
        out["form_fields"] = _with(_with(out["form_fields"], "type", FIELD_TYPES), "validator", FIELD_VALIDATORS)
    if "parties" in out:
        out["parties"] = _with(out["parties"], "id_kind", ID_KINDS)
    for key in ("materials", "waived_materials"):
        if key in out:
            out[key] = [dict(m, forms=[_mapped(MATERIAL_FORMS, f) for f in m["forms"]]) if "forms" in m else m
                        for m in out[key]]
    if "skipped_items" in out:
        out["skipped_items"] = _with(out["skipped_items"], "reason", SKIP_REASONS)
    return out


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
        return package_dict(pkg)
