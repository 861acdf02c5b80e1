"""How elicense's domain values are written outside the domain, each mapping in one place:
- stored forms (MongoDB documents, the fields embedded in a licence PDF, the licence as the bus
  look-up `get_license` answers it): these strings are data kept for years, so they are spelt out
  here and stay what they are whatever the proto enums are called;
- protobuf: the incoming events decoded once (worker.py), the licence encoded for the api once
  (api.py), the events elicense publishes encoded for the outbox (store.py). The api shows the
  licence's moments as Timestamps, its validity dates as google.type.Date and its holder code type
  as the HolderCodeType enum; what is kept, signed and embedded in the PDF stays the strings it
  always was (RFC 3339, "YYYY-MM-DD", "111"/"001"): only the presentation is typed."""
import dataclasses

from google.protobuf import json_format

from onething.common.v1 import common_pb2
from onething.elicense.v1 import elicense_pb2 as pb
from onething.elicense.v1 import events_pb2
from services.common import ids, wire
from services.elicense.domain import (
    Decision,
    LicenseIssued,
    LicenseRevoked,
    LicenseStatus,
    Opinion,
    Party,
    ResultType,
    Supersedes,
    Withdrawal,
)

# --- stored forms -------------------------------------------------------------------------------

STATUS_STORED = {LicenseStatus.VALID: "LICENSE_STATUS_VALID",
                 LicenseStatus.REVOKED: "LICENSE_STATUS_REVOKED",
                 LicenseStatus.SUPERSEDED: "LICENSE_STATUS_SUPERSEDED"}
_STATUS_OF_STORED = {stored: status for status, stored in STATUS_STORED.items()}


def stored_status(status):
    return STATUS_STORED[LicenseStatus(status)]


def status_of_stored(value):
    try:
        return _STATUS_OF_STORED[value]
    except KeyError:
        raise ValueError(f"{value!r} is not a stored licence status") from None


def licence_to_stored(fields):
    """A licence's fields as they are kept (and as the bus look-up answers them)."""
    if fields is None:
        return None
    out = dict(fields)
    if out.get("status") is not None:
        out["status"] = stored_status(out["status"])
    return out


def licence_of_stored(stored):
    """A licence's fields as kept, with its status as a LicenseStatus."""
    if stored is None:
        return None
    out = dict(stored)
    if out.get("status"):
        out["status"] = status_of_stored(out["status"])
    return out


# --- typed values: the kept strings as protobuf values, and back -------------------------------
# Used by the api (encode) and by clients that want the kept form back (tools/client.py). Moments
# and days are services.common.wire's: an RFC 3339 moment as kept ("2026-11-27T09:00:00.123456+00:00";
# without an offset: UTC, as elicense writes it) <-> Timestamp, back in UTC; a calendar day as kept
# ("YYYY-MM-DD") <-> google.type.Date; "" (for valid_to: no end) <-> unset; ValueError for a value
# that is none (a Timestamp out of its range, a Date no day of the calendar).

timestamp_of_iso = wire.timestamp
iso_of_timestamp = wire.iso
date_of_iso = wire.date
iso_of_date = wire.day


# GB/T 36903 holder code types (services.common.ids.CODE_TYPES, a closed set: intake refuses any other
# and elicense derives one of them from the identifier's shape) <-> the api's HolderCodeType
CODE_TYPE_PROTO = {ids.CODE_TYPE_CITIZEN_ID: pb.HOLDER_CODE_TYPE_CITIZEN_ID,
                   ids.CODE_TYPE_CREDIT_CODE: pb.HOLDER_CODE_TYPE_CREDIT_CODE}
_CODE_TYPE_OF_PROTO = {number: code for code, number in CODE_TYPE_PROTO.items()}


def code_type_to_proto(code_type):
    """"111"/"001" as HolderCodeType; anything else (none kept: the set is closed) UNSPECIFIED."""
    return CODE_TYPE_PROTO.get(code_type or "", pb.HOLDER_CODE_TYPE_UNSPECIFIED)


def code_type_of_proto(number):
    """HolderCodeType as the GB/T 36903 code ("111"/"001"); "" for UNSPECIFIED."""
    if number == pb.HOLDER_CODE_TYPE_UNSPECIFIED:
        return ""
    try:
        return _CODE_TYPE_OF_PROTO[number]
    except KeyError:
        raise ValueError(f"holder_code_type must be one of "
                         f"{', '.join(pb.HolderCodeType.Name(n) for n in _CODE_TYPE_OF_PROTO)}, not {number}") from None


# --- protobuf -----------------------------------------------------------------------------------

STATUS_PROTO = {LicenseStatus.VALID: pb.LICENSE_STATUS_VALID,
                LicenseStatus.REVOKED: pb.LICENSE_STATUS_REVOKED,
                LicenseStatus.SUPERSEDED: pb.LICENSE_STATUS_SUPERSEDED}
DECISION_OF_PROTO = {common_pb2.DECISION_APPROVE: Decision.APPROVE,
                     common_pb2.DECISION_REJECT: Decision.REJECT,
                     common_pb2.DECISION_RECTIFY: Decision.RECTIFY}
RESULT_TYPE_OF_PROTO = {common_pb2.RESULT_TYPE_LICENSE: ResultType.LICENSE,
                        common_pb2.RESULT_TYPE_RECORD: ResultType.RECORD,
                        common_pb2.RESULT_TYPE_PAYMENT: ResultType.PAYMENT}
EVENT_TYPES = {LicenseIssued: "license_issued", LicenseRevoked: "license_revoked"}
_EVENT_MESSAGES = {LicenseIssued: events_pb2.LicenseIssued, LicenseRevoked: events_pb2.LicenseRevoked}


_TIMESTAMPS = ("revoked_at", "superseded_at", "issued_at")
_DATES = ("valid_from", "valid_to")


def licence_to_proto(fields):
    """The licence for the api (fields it does not know are left out): moments as Timestamps,
    validity dates as Dates (no end: valid_to unset), the holder code type as HolderCodeType."""
    fields = dict(fields)
    status = fields.pop("status", None)
    moments = {name: fields.pop(name, "") for name in _TIMESTAMPS}
    days = {name: fields.pop(name, "") for name in _DATES}
    code_type = fields.pop("holder_code_type", "")
    message = json_format.ParseDict(fields, pb.License(), ignore_unknown_fields=True)
    if status is not None:
        message.status = STATUS_PROTO[LicenseStatus(status)]
    for name, value in moments.items():
        if (moment := timestamp_of_iso(value)) is not None:
            getattr(message, name).CopyFrom(moment)
    for name, value in days.items():
        if (day := date_of_iso(value)) is not None:
            getattr(message, name).CopyFrom(day)
    message.holder_code_type = code_type_to_proto(code_type)
    return message


_STATUS_OF_PROTO = {number: status for status, number in STATUS_PROTO.items()}


def licence_of_proto(message):
    """The api's licence back in the kept forms (strings; the status as a LicenseStatus, None when
    unspecified): for clients that compare with what was signed (tools/client.py)."""
    fields = json_format.MessageToDict(message, preserving_proto_field_name=True,
                                       always_print_fields_with_no_presence=True)
    fields["status"] = _STATUS_OF_PROTO.get(message.status)
    for name in _TIMESTAMPS:
        fields[name] = iso_of_timestamp(wire.field(message, name))
    for name in _DATES:
        fields[name] = iso_of_date(wire.field(message, name))
    fields["holder_code_type"] = code_type_of_proto(message.holder_code_type)
    return fields


def party_of(message):
    return Party(role=message.role, name=message.name, id_number=message.id_number, code_type=message.code_type)


def opinion_of(message):
    """joint_review's OpinionRecorded as the domain's Opinion."""
    supersedes = None
    if message.HasField("supersedes"):
        sup = message.supersedes
        supersedes = Supersedes(holder_code=sup.holder_code, license_type_code=sup.license_type_code,
                                license_ids=tuple(sup.license_ids), party=sup.party)
    return Opinion(case_no=message.case_no, item_code=message.item_code,
                   decision=DECISION_OF_PROTO.get(message.decision, Decision.UNSPECIFIED),
                   result_type=RESULT_TYPE_OF_PROTO.get(message.result_type, ResultType.UNSPECIFIED),
                   department_code=message.department_code, region_code=message.region_code,
                   license_type_code=message.license_type_code, license_type_name=message.license_type_name,
                   issuer_name=message.issuer_name, holder=party_of(message.holder), supersedes=supersedes)


def withdrawal_of(message):
    """joint_review's SessionWithdrawn as the domain's Withdrawal."""
    return Withdrawal(case_no=message.case_no, license_ids=tuple(message.license_ids),
                      after_conclusion=message.after_conclusion)


def event_message(event):
    """(event type, protobuf message) of an event elicense publishes."""
    kind = type(event)
    return EVENT_TYPES[kind], _EVENT_MESSAGES[kind](**dataclasses.asdict(event))
