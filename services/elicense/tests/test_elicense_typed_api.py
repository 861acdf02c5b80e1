"""The api shows a licence's moments as Timestamps, its validity dates as google.type.Date and its
holder code type as HolderCodeType; what is kept, signed and embedded in the PDF stays the strings
it always was. The conversions (services.elicense.codec) one by one, then a licence issued before
the api was typed (its key, fields and signature pinned here) that still verifies, offline from its
PDF and at elicense, and reads back through the api with the right Date values."""
import base64
import datetime
import hashlib
import io

import pytest
from google.protobuf import json_format, timestamp_pb2
from google.type import date_pb2

from onething.elicense.v1 import elicense_pb2 as pb
from services.common import ids, policy
from services.common.audit import MemoryAuditLog
from services.common.auth import Actor
from services.elicense import codec, document, domain
from services.elicense.api import ElicenseApi
from services.elicense.fakes import MemoryBlobs, MemoryLicenseStore
from services.elicense.wiring import build_elicense

UTC = datetime.UTC


# --- moments: RFC 3339 strings <-> Timestamp ------------------------------------------------------

@pytest.mark.parametrize("kept", ["2026-11-27T02:30:15.123456+00:00", "2026-11-27T10:00:00+00:00",
                                  "0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59.999999+00:00"])
def test_a_kept_moment_round_trips_through_a_timestamp(kept):
    moment = codec.timestamp_of_iso(kept)
    assert isinstance(moment, timestamp_pb2.Timestamp)
    assert moment.ToDatetime(tzinfo=UTC) == datetime.datetime.fromisoformat(kept)
    assert codec.iso_of_timestamp(moment) == kept


def test_a_moment_with_an_offset_is_the_same_instant_and_comes_back_in_utc():
    moment = codec.timestamp_of_iso("2026-11-27T10:00:00+08:00")
    assert moment.ToJsonString() == "2026-11-27T02:00:00Z"
    assert codec.iso_of_timestamp(moment) == "2026-11-27T02:00:00+00:00"
    assert codec.timestamp_of_iso("2026-11-27T02:00:00Z") == moment
    assert codec.timestamp_of_iso("2026-11-27T02:00:00") == moment  # no offset: elicense writes UTC


def test_an_empty_moment_is_unset_and_unset_is_empty():
    assert codec.timestamp_of_iso("") is None and codec.timestamp_of_iso(None) is None
    assert codec.iso_of_timestamp(None) == ""


@pytest.mark.parametrize("bad", ["yesterday", "2026-13-01T00:00:00+00:00", "2026-11-27T25:00:00+00:00", "27/11/2026"])
def test_a_string_that_is_no_moment_is_refused(bad):
    with pytest.raises(ValueError, match="is not an RFC 3339 moment"):
        codec.timestamp_of_iso(bad)


@pytest.mark.parametrize("seconds, nanos, message", [(253402300800, 0, "out of range"),     # 10000-01-01
                                                     (-62135596801, 0, "out of range"),     # before year 1
                                                     (0, -1, "nanos"), (0, 1_000_000_000, "nanos")])
def test_a_timestamp_out_of_range_is_refused(seconds, nanos, message):
    with pytest.raises(ValueError, match=message):
        codec.iso_of_timestamp(timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos))


# --- calendar days: "YYYY-MM-DD" <-> google.type.Date ---------------------------------------------

@pytest.mark.parametrize("kept, ymd", [("2026-11-27", (2026, 11, 27)), ("2024-02-29", (2024, 2, 29)),
                                       ("0001-01-01", (1, 1, 1)), ("9999-12-31", (9999, 12, 31))])
def test_a_kept_day_round_trips_through_a_date(kept, ymd):
    day = codec.date_of_iso(kept)
    assert isinstance(day, date_pb2.Date) and (day.year, day.month, day.day) == ymd
    assert codec.iso_of_date(day) == kept


def test_an_empty_day_is_unset_and_unset_is_empty():
    assert codec.date_of_iso("") is None and codec.date_of_iso(None) is None
    assert codec.iso_of_date(None) == "" and codec.iso_of_date(date_pb2.Date()) == ""


@pytest.mark.parametrize("bad, message", [("2026-02-30", "not a date of the calendar"),
                                          ("2025-02-29", "not a date of the calendar"),
                                          ("2026/11/27", "not a date"), ("20261127", "not a date"),
                                          ("2026-11-27T00:00:00+08:00", "not a date"), ("長期", "not a date")])
def test_a_string_that_is_no_day_is_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        codec.date_of_iso(bad)


@pytest.mark.parametrize("ymd", [(2026, 2, 30), (2026, 13, 1), (2026, 0, 1), (2026, 11, 0), (0, 11, 27),
                                 (10000, 1, 1), (2026, -1, 5)])
def test_a_date_that_is_no_day_of_the_calendar_is_refused(ymd):
    year, month, day = ymd
    with pytest.raises(ValueError, match="is not a date of the calendar"):
        codec.iso_of_date(date_pb2.Date(year=year, month=month, day=day))


# --- holder code types: "111"/"001" <-> HolderCodeType --------------------------------------------

def test_the_code_type_table_covers_the_closed_set_of_gbt_36903_codes_both_ways():
    assert set(codec.CODE_TYPE_PROTO) == set(ids.CODE_TYPES) == {"111", "001"}
    assert codec.code_type_to_proto("111") == pb.HOLDER_CODE_TYPE_CITIZEN_ID
    assert codec.code_type_to_proto("001") == pb.HOLDER_CODE_TYPE_CREDIT_CODE
    for code in ids.CODE_TYPES:
        assert codec.code_type_of_proto(codec.code_type_to_proto(code)) == code
    assert len(set(codec.CODE_TYPE_PROTO.values())) == len(pb.HolderCodeType.values()) - 1  # every value but 0


def test_no_code_type_is_unspecified_and_back():
    assert codec.code_type_to_proto("") == codec.code_type_to_proto(None) == pb.HOLDER_CODE_TYPE_UNSPECIFIED
    assert codec.code_type_to_proto("414") == pb.HOLDER_CODE_TYPE_UNSPECIFIED  # none kept: the set is closed
    assert codec.code_type_of_proto(pb.HOLDER_CODE_TYPE_UNSPECIFIED) == ""


def test_an_unknown_code_type_number_is_refused_naming_the_values():
    with pytest.raises(ValueError, match="holder_code_type must be one of HOLDER_CODE_TYPE_CITIZEN_ID, "
                                         "HOLDER_CODE_TYPE_CREDIT_CODE, not 7"):
        codec.code_type_of_proto(7)


# --- a licence issued before the api was typed ---------------------------------------------------
# Its key, fields and signature as elicense kept them (Ed25519 is deterministic: the pinned
# signature shows that the canonical form that is signed did not change).

PRIVATE = base64.b64encode(bytes(range(32))).decode()
PUBLIC = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
BIRTH = {"license_id": "1.2.156.3005.2.CSYXZM.440100WSJK.202600000007.001.J",
         "type_code": "CSYXZM", "type_name": "出生医学证明", "license_no": "CSYXZM202600000007",
         "issuer_name": "广州市卫生健康委员会", "issuer_code": "440100WSJK", "valid_from": "2026-11-27", "valid_to": "",
         "holder_name": "李华", "holder_code": "11010519491231002X", "holder_code_type": "111",
         "item_code": "110000000001", "case_no": "440100XSECS202611270001", "key_id": "440100-1",
         "status": domain.VALID, "issued_at": "2026-11-27T02:30:15.123456+00:00",
         "signature": "Du/9BNGVFWctFa3GOQIfQeTwtr1s1nhyYG8uSbq9TyPBrmZ7u79PVxBHc2v2lTEyUTcVDEth/yAWLmy6Gq92Bg==",
         "document_key": "licenses/440100XSECS202611270001/1.2.156.3005.2.CSYXZM.440100WSJK.202600000007.001.J.pdf"}
COMPANY = {"license_id": "1.2.156.3005.2.YYZZ.440100SCJG.202600000003.001.1",
           "type_code": "YYZZ", "type_name": "营业执照", "license_no": "YYZZ202600000003",
           "issuer_name": "广州市市场监督管理局", "issuer_code": "440100SCJG", "valid_from": "2026-11-27",
           "valid_to": "2046-11-26", "holder_name": "广州一件事科技有限公司", "holder_code": "91350100M000100Y43",
           "holder_code_type": "001", "item_code": "150000000001", "case_no": "440100XSECS202611270002",
           "key_id": "440100-1", "status": domain.VALID, "issued_at": "2026-11-27T03:00:00+00:00",
           "signature": "f++dsOr1iCsIUnIOZbZBUVJG6iTylqtQuV6pmSC/w79tQBICg2bcjuOQuoCT9B6A3UCW/JPxofoSqJtD5mPLCA==",
           "document_key": "licenses/440100XSECS202611270002/1.2.156.3005.2.YYZZ.440100SCJG.202600000003.001.1.pdf"}
# sha256 of the PDF's /Keywords (the signed fields embedded for offline verification), as rendered by
# the code of before the change
KEYWORDS_SHA256 = {BIRTH["license_id"]: "932dc4d5171590e1b2450dd49175b598db21f7ea5ebe7cc0da445d3e9851b259",
                   COMPANY["license_id"]: "453def6e13deecc0d6899e0a556886f0e4d982dc64d5b75e46f22dca50849f29"}
NOW = datetime.datetime(2026, 11, 28, 1, 0, tzinfo=UTC)


def test_the_pinned_licences_are_what_elicense_signed_and_embedded():
    from pypdf import PdfReader
    assert domain.public_of(PRIVATE) == PUBLIC
    for fields in (BIRTH, COMPANY):
        assert domain.sign(fields, PRIVATE) == fields["signature"]  # the canonical form is unchanged
        assert domain.verify(fields, PUBLIC, today="2026-11-28") == (True, "signature, validity and status check out")
        keywords = PdfReader(io.BytesIO(document.render(fields, PUBLIC))).metadata["/Keywords"]
        assert hashlib.sha256(keywords.encode()).hexdigest() == KEYWORDS_SHA256[fields["license_id"]]
        embedded = document.read(document.render(fields, PUBLIC))
        assert embedded["valid_from"] == "2026-11-27" and embedded["valid_to"] == fields["valid_to"]
        assert embedded["holder_code_type"] == fields["holder_code_type"]


@pytest.fixture
def legacy():
    """elicense holding the pinned licences and their key, as kept before the api was typed."""
    store = MemoryLicenseStore()
    store.add_key(domain.SigningKey("440100-1", "440100", PRIVATE, PUBLIC))
    blobs = MemoryBlobs()
    for fields in (BIRTH, COMPANY):
        assert store.insert(dict(fields))
        blobs.put("results", fields["document_key"], document.render(fields, PUBLIC))
    return build_elicense(store=store, blobs=blobs, audit=MemoryAuditLog("elicense"), clock=lambda: NOW)


@pytest.fixture
def service():
    token = policy.bind(policy.Caller(Actor("intake", policy.SERVICE), "", "t", "/onething.elicense.v1.ElicenseService/GetLicense"))
    yield
    policy.unbind(token)


def test_a_licence_issued_before_reads_back_through_the_api_with_its_dates(legacy, service):
    api = ElicenseApi(legacy)
    birth = api.GetLicense(pb.GetLicenseRequest(license_id=BIRTH["license_id"]), None)
    assert birth.valid_from == date_pb2.Date(year=2026, month=11, day=27)
    assert not birth.HasField("valid_to")  # no end
    assert birth.holder_code_type == pb.HOLDER_CODE_TYPE_CITIZEN_ID
    assert birth.issued_at.ToJsonString() == "2026-11-27T02:30:15.123456Z"
    assert not birth.HasField("revoked_at") and not birth.HasField("superseded_at")
    assert (birth.signature, birth.status, birth.license_no) == (BIRTH["signature"], pb.LICENSE_STATUS_VALID,
                                                                 "CSYXZM202600000007")
    company = api.GetLicense(pb.GetLicenseRequest(license_id=COMPANY["license_id"]), None)
    assert (company.valid_from, company.valid_to) == (date_pb2.Date(year=2026, month=11, day=27),
                                                      date_pb2.Date(year=2046, month=11, day=26))
    assert company.holder_code_type == pb.HOLDER_CODE_TYPE_CREDIT_CODE
    # what the api shows gives back exactly the fields that were signed: it verifies with the key
    for shown, kept in ((birth, BIRTH), (company, COMPANY)):
        back = codec.licence_of_proto(shown)
        assert {k: back[k] for k in domain.SIGNED_FIELDS} == {k: kept[k] for k in domain.SIGNED_FIELDS}
        assert domain.verify(back, PUBLIC, today="2026-11-28")[0] is True
        assert (back["issued_at"], back["status"]) == (kept["issued_at"], domain.VALID)
    # the store keeps the strings it kept
    assert {k: legacy.store.get(BIRTH["license_id"])[k] for k in ("valid_from", "valid_to", "holder_code_type")} == {
        "valid_from": "2026-11-27", "valid_to": "", "holder_code_type": "111"}
    listed = api.ListLicenses(pb.ListLicensesRequest(holder_code=COMPANY["holder_code"]), None).licenses
    assert [l.valid_to for l in listed] == [date_pb2.Date(year=2046, month=11, day=26)]


def test_a_licence_issued_before_still_verifies_at_elicense_and_offline(legacy, tmp_path):
    from tools import verify_license
    api = ElicenseApi(legacy)
    for fields in (BIRTH, COMPANY):
        answer = api.VerifyLicense(pb.VerifyLicenseRequest(license_id=fields["license_id"],
                                                           token=document.qr_token(fields)), None)
        assert answer.valid, answer.reason
        assert answer.license.valid_from == date_pb2.Date(year=2026, month=11, day=27)
        assert answer.license.HasField("valid_to") == bool(fields["valid_to"])
        assert answer.license.holder_code_type == codec.CODE_TYPE_PROTO[fields["holder_code_type"]]
        assert not (answer.license.signature or answer.license.case_no or answer.license.HasField("issued_at"))
        path = tmp_path / f"{fields['type_code']}.pdf"
        path.write_bytes(legacy.blobs.get("results", fields["document_key"]))
        (valid, reason), embedded = verify_license.verify_file(str(path), PUBLIC, today="2026-11-28")
        assert valid, reason
        assert embedded == dict(fields, public_key=PUBLIC)
        assert verify_license.main([str(path), "--public-key", PUBLIC]) == 0


def test_a_revoked_licence_shows_when_as_a_timestamp(legacy, service):
    legacy.revoke(BIRTH["license_id"], "出生信息登记错误", "officer:o-1")
    assert legacy.store.get(BIRTH["license_id"])["revoked_at"] == "2026-11-28T01:00:00+00:00"  # kept as it was
    shown = ElicenseApi(legacy).GetLicense(pb.GetLicenseRequest(license_id=BIRTH["license_id"]), None)
    assert shown.status == pb.LICENSE_STATUS_REVOKED
    assert shown.revoked_at.ToDatetime(tzinfo=UTC) == NOW and not shown.HasField("superseded_at")
    assert codec.licence_of_proto(shown)["revoked_at"] == "2026-11-28T01:00:00+00:00"
    verified = ElicenseApi(legacy).VerifyLicense(pb.VerifyLicenseRequest(license_id=BIRTH["license_id"],
                                                                         token=document.qr_token(BIRTH)), None)
    assert not verified.valid and verified.license.revoked_at == shown.revoked_at


def test_a_superseded_licence_shows_when_as_a_timestamp():
    shown = codec.licence_to_proto(dict(BIRTH, status=domain.SUPERSEDED, superseded_by="L2",
                                        superseded_at="2026-11-28T01:00:00+00:00", supersede_reason="x"))
    assert shown.status == pb.LICENSE_STATUS_SUPERSEDED and shown.superseded_by == "L2"
    assert shown.superseded_at.ToJsonString() == "2026-11-28T01:00:00Z"


def test_the_licence_in_json_has_rfc_3339_moments_and_dates_as_year_month_day():
    shown = json_format.MessageToDict(codec.licence_to_proto(COMPANY), preserving_proto_field_name=True)
    assert shown["valid_from"] == {"year": 2026, "month": 11, "day": 27}
    assert shown["valid_to"] == {"year": 2046, "month": 11, "day": 26}
    assert shown["issued_at"] == "2026-11-27T03:00:00Z"
    assert shown["holder_code_type"] == "HOLDER_CODE_TYPE_CREDIT_CODE"
    assert "revoked_at" not in shown and "superseded_at" not in shown


def test_a_licence_with_nothing_typed_kept_shows_them_unset():
    shown = codec.licence_to_proto({"license_id": "L1", "valid_from": "", "valid_to": "", "issued_at": ""})
    assert not any(shown.HasField(f) for f in ("valid_from", "valid_to", "issued_at", "revoked_at", "superseded_at"))
    assert shown.holder_code_type == pb.HOLDER_CODE_TYPE_UNSPECIFIED
    back = codec.licence_of_proto(shown)
    assert (back["valid_from"], back["valid_to"], back["issued_at"], back["holder_code_type"], back["status"]) == (
        "", "", "", "", None)


def test_a_kept_date_that_is_no_date_is_not_shown_as_some_other_day():
    with pytest.raises(ValueError, match="not a date"):
        codec.licence_to_proto(dict(BIRTH, valid_to="2026-02-30"))


@pytest.mark.integration
def test_a_licence_kept_in_mongodb_before_reads_back_over_grpc_and_verifies(own_database):
    """The documents exactly as elicense wrote them before (the status in its stored form, dates and
    moments as strings), read by their holders and verified by the public over a real channel."""
    import grpc

    from onething.elicense.v1 import elicense_pb2_grpc as pb_grpc
    from services.common.grpc_server import ApiServer
    from services.elicense.store import LicenseDoc, LicenseStore, SigningKeyDoc
    from tools.client import bearer
    own_database("elicense")
    LicenseDoc._get_collection().insert_many([{"_id": f["license_id"], "fields": dict(f, status="LICENSE_STATUS_VALID"),
                                               "outbox": []} for f in (BIRTH, COMPANY)])
    SigningKeyDoc(key_id="440100-1", region_code="440100", private_key=PRIVATE, public_key=PUBLIC).save()
    elicense = build_elicense(store=LicenseStore(None), blobs=MemoryBlobs(), audit=MemoryAuditLog("elicense"),
                              clock=lambda: NOW)
    server = ApiServer(0, [(pb_grpc.add_ElicenseServiceServicer_to_server, ElicenseApi(elicense))],
                       ["onething.elicense.v1.ElicenseService"]).start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = pb_grpc.ElicenseServiceStub(channel)
            birth = stub.GetLicense(pb.GetLicenseRequest(license_id=BIRTH["license_id"]), timeout=5,
                                    metadata=bearer(BIRTH["holder_code"], "applicant"))
            assert birth.valid_from == date_pb2.Date(year=2026, month=11, day=27) and not birth.HasField("valid_to")
            assert birth.issued_at.ToJsonString() == "2026-11-27T02:30:15.123456Z"
            assert birth.holder_code_type == pb.HOLDER_CODE_TYPE_CITIZEN_ID and birth.status == pb.LICENSE_STATUS_VALID
            [company] = stub.ListLicenses(pb.ListLicensesRequest(holder_code=COMPANY["holder_code"]), timeout=5,
                                          metadata=bearer(COMPANY["holder_code"], "applicant")).licenses
            assert company.valid_to == date_pb2.Date(year=2046, month=11, day=26)
            assert company.holder_code_type == pb.HOLDER_CODE_TYPE_CREDIT_CODE
            for shown, kept in ((birth, BIRTH), (company, COMPANY)):
                back = codec.licence_of_proto(shown)
                assert {k: back[k] for k in domain.SIGNED_FIELDS} == {k: kept[k] for k in domain.SIGNED_FIELDS}
                answer = stub.VerifyLicense(pb.VerifyLicenseRequest(license_id=kept["license_id"],
                                                                    token=document.qr_token(kept)), timeout=5)
                assert answer.valid, answer.reason
                assert answer.license.valid_from == shown.valid_from and answer.license.valid_to == shown.valid_to
        stored = LicenseDoc._get_collection().find_one({"_id": BIRTH["license_id"]})["fields"]
        assert stored == dict(BIRTH, status="LICENSE_STATUS_VALID")  # read, not rewritten
    finally:
        server.stop(0)
