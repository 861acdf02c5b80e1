"""How elicense's domain values are written outside the domain, each mapping in one place:
- stored forms (MongoDB documents, the fields embedded in a licence PDF, the licence as the bus
  look-up `get_license` answers it): these strings are data kept for years, so they are spelt out
  here and stay what they are whatever the proto enums are called;
- protobuf: the incoming events decoded once (worker.py), the licence encoded for the api once
  (api.py), the events elicense publishes encoded for the outbox (store.py)."""
import dataclasses

from google.protobuf import json_format

from onething.common.v1 import common_pb2
from onething.elicense.v1 import elicense_pb2 as pb
from onething.elicense.v1 import events_pb2
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


def licence_to_proto(fields):
    """The licence for the api (fields it does not know are left out)."""
    fields = dict(fields)
    status = fields.pop("status", None)
    message = json_format.ParseDict(fields, pb.License(), ignore_unknown_fields=True)
    if status is not None:
        message.status = STATUS_PROTO[LicenseStatus(status)]
    return message


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
