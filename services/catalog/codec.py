"""The catalog's values as onething.catalog.v1 carries them, in explicit tables: the strings the data
files, the stored definitions and the handlers keep ("switched_off", "e-licence", "citizen_id",
"draft_updated" ...) against the proto enums' numbers, and the moments the handlers give as ISO 8601
strings against google.protobuf.Timestamp. api.py encodes with these, once; renaming a proto enum
value changes a table here, never the data files or what MongoDB holds.

The values sent are the proto numbers (json_format.ParseDict takes a number for an enum field); the
Timestamps are RFC 3339 strings in UTC (what ParseDict takes for a Timestamp field)."""
import json

from onething.catalog.v1 import catalog_pb2, events_pb2
from services.catalog.definitions import STATUS_PROTO_NUMBERS, UpstreamVersion, digest
from services.common import wire
from services.common.errors import InvalidArgument

SKIP_REASONS = {"situation": catalog_pb2.SKIP_REASON_SITUATION,
                "switched_off": catalog_pb2.SKIP_REASON_SWITCHED_OFF}
MATERIAL_FORMS = {"paper": catalog_pb2.MATERIAL_FORM_PAPER, "scan": catalog_pb2.MATERIAL_FORM_SCAN,
                  "e-licence": catalog_pb2.MATERIAL_FORM_E_LICENCE}
ID_KINDS = {"citizen_id": catalog_pb2.ID_KIND_CITIZEN_ID, "credit_code": catalog_pb2.ID_KIND_CREDIT_CODE,
            "any": catalog_pb2.ID_KIND_ANY}
FIELD_TYPES = {"string": catalog_pb2.FIELD_TYPE_STRING, "date": catalog_pb2.FIELD_TYPE_DATE,
               "number": catalog_pb2.FIELD_TYPE_NUMBER, "bool": catalog_pb2.FIELD_TYPE_BOOL,
               "choice": catalog_pb2.FIELD_TYPE_CHOICE}
# "": the field has no validator
FIELD_VALIDATORS = {"": catalog_pb2.FIELD_VALIDATOR_UNSPECIFIED,
                    "citizen_id": catalog_pb2.FIELD_VALIDATOR_CITIZEN_ID,
                    "credit_code": catalog_pb2.FIELD_VALIDATOR_CREDIT_CODE,
                    "phone": catalog_pb2.FIELD_VALIDATOR_PHONE, "region": catalog_pb2.FIELD_VALIDATOR_REGION,
                    "bank_account": catalog_pb2.FIELD_VALIDATOR_BANK_ACCOUNT}
RELOAD_OUTCOMES = {"published": catalog_pb2.RELOAD_OUTCOME_PUBLISHED, "drafted": catalog_pb2.RELOAD_OUTCOME_DRAFTED,
                   "draft_updated": catalog_pb2.RELOAD_OUTCOME_DRAFT_UPDATED,
                   "unchanged": catalog_pb2.RELOAD_OUTCOME_UNCHANGED}


def _inverse(table):
    return {number: text for text, number in table.items()}


# the other way (a Package or PackageVersion read back: tests, tools)
SKIP_REASON_OF = _inverse(SKIP_REASONS)
MATERIAL_FORM_OF = _inverse(MATERIAL_FORMS)
ID_KIND_OF = _inverse(ID_KINDS)
FIELD_TYPE_OF = _inverse(FIELD_TYPES)
FIELD_VALIDATOR_OF = _inverse(FIELD_VALIDATORS)
RELOAD_OUTCOME_OF = _inverse(RELOAD_OUTCOMES)


def _encode(table, value, what):
    try:
        return table[value]
    except KeyError:
        raise ValueError(f"{what} {value!r} has no onething.catalog.v1 value (one of {', '.join(map(repr, table))})") \
            from None


# --- moments (services.common.wire) -----------------------------------------------------------------

# a moment (an ISO 8601 string or a datetime; without an offset: UTC, as MongoDB gives them back) as a
# Timestamp; None for "" or None (unset)
timestamp = wire.timestamp


def iso(value):
    """A Timestamp as an ISO 8601 string in UTC ("" when unset: None or the empty message)."""
    if value is None or not value.ByteSize():
        return ""
    return wire.iso(value)


# --- messages (dicts for json_format.ParseDict) --------------------------------------------------


def _material(m):
    return dict(m, forms=[_encode(MATERIAL_FORMS, f, f"material {m.get('code')}: form") for f in m.get("forms") or []])


def _form_field(f):
    return dict(f, type=_encode(FIELD_TYPES, f.get("type") or "string", f"form field {f.get('key')}: type"),
                validator=_encode(FIELD_VALIDATORS, f.get("validator") or "", f"form field {f.get('key')}: validator"))


def package(pkg):
    """A resolved package (handlers.get_package) as the JSON of catalog.v1.Package: VersionStatus,
    SkipReason, MaterialForm, IdKind, FieldType and FieldValidator as their numbers."""
    out = dict(pkg)
    if pkg.get("status"):
        out["status"] = STATUS_PROTO_NUMBERS[pkg["status"]]
    out["skipped_items"] = [dict(s, reason=_encode(SKIP_REASONS, s.get("reason"), f"skipped item {s.get('code')}: reason"))
                            for s in pkg.get("skipped_items") or []]
    out["materials"] = [_material(m) for m in pkg.get("materials") or []]
    out["waived_materials"] = [_material(m) for m in pkg.get("waived_materials") or []]
    out["parties"] = [dict(p, id_kind=_encode(ID_KINDS, p.get("id_kind") or "any", f"party {p.get('role')}: id_kind"))
                      for p in pkg.get("parties") or []]
    out["form_fields"] = [_form_field(f) for f in pkg.get("form_fields") or []]
    return out


def version(view):
    """A version (handlers.version_view) as the JSON of catalog.v1.PackageVersion: the status as its
    number, the moments as RFC 3339 UTC strings, left out when unset."""
    out = {k: v for k, v in view.items() if k not in ("created_at", "published_at", "retired_at")}
    if view.get("status"):
        out["status"] = STATUS_PROTO_NUMBERS[view["status"]]
    for key in ("created_at", "published_at", "retired_at"):
        moment = wire.rfc3339(view.get(key))
        if moment is not None:
            out[key] = moment
    return out


def reload_change(code, version_number, outcome):
    """One (code, version, outcome) of handlers.reload as the JSON of catalog.v1.ReloadChange."""
    return {"code": code, "version": version_number, "outcome": _encode(RELOAD_OUTCOMES, outcome, "reload outcome")}


# --- package_published (catalog.v1.PackagePublished) -----------------------------------------------


def package_published(code, version_number, name, definition):
    """A version a province hands down (definitions.handed_down's part) as the event's message: the
    definition as compact JSON (characters as they are; keys in their order, which is meaningful:
    a situation's answers are a mapping whose order is the order the applicant is offered them),
    with its digest."""
    text = json.dumps(definition, ensure_ascii=False, separators=(",", ":"))
    return events_pb2.PackagePublished(code=code, version=version_number, digest=digest(definition), name=name,
                                       definition_json=text)


def upstream_version(site, event):
    """A PackagePublished received from `site` as definitions.UpstreamVersion; InvalidArgument when
    it carries no JSON object (its content is checked by the use case)."""
    try:
        definition = json.loads(event.definition_json)
    except ValueError as exc:
        raise InvalidArgument(f"version {event.version} of {event.code} from {site}: definition_json is not JSON "
                              f"({exc})") from None
    if not isinstance(definition, dict):
        raise InvalidArgument(f"version {event.version} of {event.code} from {site}: definition_json is not a "
                              "JSON object")
    return UpstreamVersion(site=site, code=event.code, version=event.version, digest=event.digest,
                           definition=definition)
