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
import datetime

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
    PublishedKey,
    ResultType,
    SigningAlgorithm,
    StatusCheck,
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


# a signing key's algorithm as kept in the key directory
ALGORITHM_STORED = {SigningAlgorithm.ED25519: "Ed25519"}
_ALGORITHM_OF_STORED = {stored: algorithm for algorithm, stored in ALGORITHM_STORED.items()}


def stored_algorithm(algorithm):
    return ALGORITHM_STORED[SigningAlgorithm(algorithm)]


def algorithm_of_stored(value):
    try:
        return _ALGORITHM_OF_STORED[value]
    except KeyError:
        raise ValueError(f"{value!r} is not a stored signing algorithm") from None


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
EVENT_TYPES = {LicenseIssued: "license_issued", LicenseRevoked: "license_revoked",
               PublishedKey: "signing_key_published"}
_EVENT_MESSAGES = {LicenseIssued: events_pb2.LicenseIssued, LicenseRevoked: events_pb2.LicenseRevoked}
ALGORITHM_PROTO = {SigningAlgorithm.ED25519: pb.SIGNING_ALGORITHM_ED25519}
_ALGORITHM_OF_PROTO = {number: algorithm for algorithm, number in ALGORITHM_PROTO.items()}
STATUS_CHECK_PROTO = {StatusCheck.CHECKED: pb.STATUS_CHECK_CHECKED,
                      StatusCheck.AT_ISSUING_SITE: pb.STATUS_CHECK_AT_ISSUING_SITE,
                      StatusCheck.NOT_REACHED: pb.STATUS_CHECK_NOT_REACHED}


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


def key_routing_key(site):
    """The routing key of `signing_key_published` from site `site`: the event type and the site,
    `signing_key_published.440100`, so that the links between sites can carry each site's keys to
    every other site and never back to where they came from (topic bindings only see the key)."""
    return f"{EVENT_TYPES[PublishedKey]}.{site}"


def event_message(event):
    """(routing key, protobuf message) of an event elicense publishes: its event type, for a
    signing key with the site that holds it (key_routing_key)."""
    kind = type(event)
    if kind is PublishedKey:
        return key_routing_key(event.site_region), published_key_message(event)
    return EVENT_TYPES[kind], _EVENT_MESSAGES[kind](**dataclasses.asdict(event))


# --- signing keys: what sites publish of them, and the api's SigningKey -------------------------
# A key's moments are kept as seconds since the epoch (0: not recorded / still signing) and travel
# as Timestamps (unset for 0).


def timestamp_of_seconds(seconds):
    if not seconds:
        return None
    return wire.timestamp(datetime.datetime.fromtimestamp(seconds, datetime.UTC))


def seconds_of_timestamp(moment):
    """A Timestamp (None: unset) as seconds since the epoch, 0 for unset; ValueError out of range."""
    if moment is None:
        return 0.0
    return datetime.datetime.fromisoformat(wire.iso(moment)).timestamp()


def published_key_message(key):
    """A PublishedKey as the SigningKeyPublished event."""
    message = events_pb2.SigningKeyPublished(
        site_region=key.site_region, key_id=key.key_id, public_key=key.public_key,
        issuer_region=key.issuer_region,
        algorithm=ALGORITHM_PROTO.get(key.algorithm, pb.SIGNING_ALGORITHM_UNSPECIFIED))
    for name in ("valid_from", "valid_until"):
        if (moment := timestamp_of_seconds(getattr(key, name))) is not None:
            getattr(message, name).CopyFrom(moment)
    return message


def published_key_of(message):
    """Another site's SigningKeyPublished as a PublishedKey; an algorithm this site does not know
    (or none) is None, for the key directory to refuse; a Timestamp out of range: ValueError."""
    return PublishedKey(site_region=message.site_region, key_id=message.key_id,
                        issuer_region=message.issuer_region, public_key=message.public_key,
                        algorithm=_ALGORITHM_OF_PROTO.get(message.algorithm),
                        valid_from=seconds_of_timestamp(wire.field(message, "valid_from")),
                        valid_until=seconds_of_timestamp(wire.field(message, "valid_until")))


def key_to_proto(key):
    """A PublishedKey (one of this site's own, or of its key directory) as the api's SigningKey."""
    message = pb.SigningKey(key_id=key.key_id, region_code=key.issuer_region, public_key=key.public_key,
                            active=key.active, site_region=key.site_region,
                            algorithm=ALGORITHM_PROTO.get(key.algorithm, pb.SIGNING_ALGORITHM_UNSPECIFIED))
    for name in ("valid_from", "valid_until"):
        if (moment := timestamp_of_seconds(getattr(key, name))) is not None:
            getattr(message, name).CopyFrom(moment)
    return message


def status_check_to_proto(check):
    return STATUS_CHECK_PROTO[StatusCheck(check)]
