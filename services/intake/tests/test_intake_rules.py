"""intake rules added for the one form, 减材料, 补正, withdrawal, case numbers, listing and upload types.
Pure functions over plain values; the package is a small one written here, not the seed data."""
import datetime
import itertools

import pytest

from services.common.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from services.intake import domain

CITIZEN = "11010519491231002X"
CREDIT_CODE = "91350100M000100Y43"

PACKAGE = {
    "code": "PKG", "implementing_code": "",
    "materials": [{"code": "M01", "name": "身份证", "license_type_code": "111"},
                  {"code": "M02", "name": "户口簿"},
                  {"code": "M05", "name": "出生医学证明", "license_type_code": "CSYXZM"}],
    "items": [{"code": "I1", "material_codes": ["M01", "M02"]}, {"code": "I3", "material_codes": ["M05"]}],
}
CSYXZM = {"license_id": "1.2.156.3005.2.CSYXZM.X.1.001.A", "type_code": "CSYXZM", "valid_from": "2026-01-01",
          "status": "LICENSE_STATUS_VALID"}


# --- case numbers -----------------------------------------------------------------------------


def test_case_prefix_is_the_implementing_code_when_the_catalog_has_one():
    pkg = dict(PACKAGE, implementing_code="11440100MB2C912345K1440100000001")
    assert domain.case_prefix(pkg, "440100") == "11440100MB2C912345K1440100000001"
    no = domain.case_number(domain.case_prefix(pkg, "440100"), datetime.date(2020, 10, 20), 8)
    assert no == "11440100MB2C912345K144010000000120201020" + "0008"
    domain.check_case_no(no)


@pytest.mark.parametrize("code", ["", None, "   ", "has space", "小写"])
def test_case_prefix_falls_back_to_region_and_package(code):
    assert domain.case_prefix(dict(PACKAGE, implementing_code=code), "440100") == "440100PKG"


def test_implementing_code_is_upper_cased():
    assert domain.case_prefix(dict(PACKAGE, implementing_code="11440100mb2c"), "440100") == "11440100MB2C"


# --- the one form ----------------------------------------------------------------------------

FIELDS = [
    {"key": "child_name", "label": "新生儿姓名", "type": "string", "required": True},
    {"key": "birth_date", "label": "出生日期", "type": "date", "required": True},
    {"key": "child_gender", "label": "新生儿性别", "type": "choice", "choices": ["男", "女"]},
    {"key": "mother_id", "label": "母亲公民身份号码", "type": "string", "validator": "citizen_id"},
    {"key": "company", "label": "统一社会信用代码", "type": "string", "validator": "credit_code"},
    {"key": "phone", "label": "联系电话", "type": "string", "validator": "phone"},
    {"key": "region", "label": "区划", "type": "string", "validator": "region"},
    {"key": "bank", "label": "银行账号", "type": "string", "validator": "bank_account"},
    {"key": "count", "label": "人数", "type": "number"},
    {"key": "agree", "label": "同意", "type": "bool"},
]
GOOD = {"child_name": "李小明", "birth_date": "2026-11-20", "child_gender": "男", "mother_id": CITIZEN,
        "company": CREDIT_CODE, "phone": "13800000000", "region": "440106", "bank": "6222020200112233",
        "count": "3", "agree": "true"}


def test_good_form_passes():
    assert domain.check_form(FIELDS, GOOD) is None


def test_no_form_fields_means_nothing_to_check():
    assert domain.check_form([], {"anything": "goes"}) is None
    assert domain.check_form(None, None) is None


def test_optional_fields_may_be_left_out_and_unknown_keys_are_left_alone():
    assert domain.check_form(FIELDS, {"child_name": "李小明", "birth_date": "2026-11-20", "extra": "x"}) is None


@pytest.mark.parametrize("key", ["child_name", "birth_date"])
@pytest.mark.parametrize("value", [None, "", "   "])
def test_required_field_missing_names_it(key, value):
    form = dict(GOOD)
    if value is None:
        del form[key]
    else:
        form[key] = value
    with pytest.raises(InvalidArgument, match=rf"form: .* \({key}\) is required"):
        domain.check_form(FIELDS, form)


@pytest.mark.parametrize("key, value, words", [
    ("birth_date", "2026-02-30", "not a date"),
    ("birth_date", "20261120", "not a date"),
    ("birth_date", "yesterday", "not a date"),
    ("child_gender", "未知", "one of 男、女"),
    ("mother_id", "110105194912310021", "check digit"),
    ("mother_id", "12345", "18 characters"),
    ("company", "91350100M000100Y44", "check character"),
    ("phone", "12345", "mobile"),
    ("region", "44010", "region code"),
    ("bank", "62-22", "bank account"),
    ("count", "three", "not a number"),
    ("agree", "yes", "true or false"),
])
def test_bad_field_value_names_the_field(key, value, words):
    with pytest.raises(InvalidArgument) as err:
        domain.check_form(FIELDS, dict(GOOD, **{key: value}))
    assert f"({key})" in err.value.message and words in err.value.message


def test_situation_answers_must_not_be_blank():
    domain.check_situations({"maternity": "yes"})
    with pytest.raises(InvalidArgument, match="situations"):
        domain.check_situations({"maternity": " "})


# --- 减材料: a licence the applicant holds stands in for a material ----------------------------


def test_material_with_a_held_licence_is_not_asked_for():
    covered = domain.check_materials(PACKAGE, ["M01", "M02"], [CSYXZM])
    assert list(covered) == ["M05"] and covered["M05"]["license_id"] == CSYXZM["license_id"]


def test_without_the_licence_the_material_is_asked_for():
    with pytest.raises(FailedPrecondition, match=r"出生医学证明 \(M05\)"):
        domain.check_materials(PACKAGE, ["M01", "M02"], [])


def test_a_licence_of_another_type_does_not_stand_in():
    with pytest.raises(FailedPrecondition, match="M05"):
        domain.check_materials(PACKAGE, ["M01", "M02"], [dict(CSYXZM, type_code="SBK")])


def test_an_uploaded_material_wins_over_the_licence():
    assert domain.check_materials(PACKAGE, ["M01", "M02", "M05"], [CSYXZM]) == {}


def test_a_licence_only_covers_materials_the_package_needs():
    pkg = dict(PACKAGE, items=[{"code": "I1", "material_codes": ["M01", "M02"]}])
    assert domain.check_materials(pkg, ["M01", "M02"], [CSYXZM]) == {}


def test_several_licences_of_a_type_the_latest_is_used():
    older = dict(CSYXZM, license_id="OLD", valid_from="2025-01-01")
    covered = domain.licences_standing_in(PACKAGE, ["M05"], [CSYXZM, older])
    assert covered["M05"]["license_id"] == CSYXZM["license_id"]


@pytest.mark.parametrize("change, counts", [
    ({}, True),
    ({"status": "LICENSE_STATUS_REVOKED"}, False),
    ({"valid_from": "2027-01-01"}, False),
    ({"valid_to": "2026-06-30"}, False),
    ({"valid_to": "2026-07-01"}, True),
    ({"valid_to": "2026-07-01T00:00:00+08:00"}, True),
])
def test_only_valid_licences_count(change, counts):
    got = domain.valid_licences([dict(CSYXZM, **change)], datetime.date(2026, 7, 1))
    assert (got != []) is counts


# --- status order, withdrawal and 补正 ---------------------------------------------------------

ALL = [domain.SUBMITTED, domain.IN_REVIEW, domain.RECTIFYING, domain.APPROVED, domain.REJECTED, domain.DELIVERED,
       domain.RATED, domain.WITHDRAWN, domain.DELIVERY_FAILED]


@pytest.mark.parametrize("new", ALL)
def test_nothing_moves_a_withdrawn_case(new):
    assert domain.advance(domain.WITHDRAWN, new) is None


def test_a_case_waiting_for_materials_can_still_be_concluded():
    assert domain.advance(domain.RECTIFYING, domain.APPROVED) == domain.APPROVED
    assert domain.advance(domain.RECTIFYING, domain.REJECTED) == domain.REJECTED
    assert domain.advance(domain.APPROVED, domain.RECTIFYING) is None


@pytest.mark.parametrize("status", ALL)
def test_withdraw_only_before_conclusion(status):
    if status in (domain.SUBMITTED, domain.IN_REVIEW, domain.RECTIFYING):
        assert domain.check_withdraw(status, "搬家了") is None
    else:
        with pytest.raises(FailedPrecondition, match="only a case not yet concluded"):
            domain.check_withdraw(status, "")


def test_withdraw_reason_is_bounded():
    with pytest.raises(InvalidArgument, match="500"):
        domain.check_withdraw(domain.SUBMITTED, "x" * 501)


def test_only_the_applicant_acts_on_a_case():
    assert domain.check_owner(CITIZEN, CITIZEN, "withdraw") is None
    with pytest.raises(PermissionDenied, match="only the applicant"):
        domain.check_owner(CITIZEN, "11010519491231003X", "withdraw")
    with pytest.raises(InvalidArgument, match="applicant_id"):
        domain.check_owner(CITIZEN, "", "supplement")


REQ = {"item_code": "I3", "department_code": "gaj", "material_codes": ["M02"], "reason": "模糊"}


def test_rectification_request_puts_the_case_on_hold_and_remembers_where_it_was():
    rect = domain.rectify({"status": domain.IN_REVIEW, "rectification": {}}, REQ)
    assert rect["material_codes"] == ["M02"] and rect["resume_status"] == domain.IN_REVIEW
    assert rect["requests"][0]["department_code"] == "gaj"


def test_second_department_adds_its_materials_and_a_redelivery_changes_nothing():
    first = domain.rectify({"status": domain.SUBMITTED, "rectification": {}}, REQ)
    case = {"status": domain.RECTIFYING, "rectification": first}
    assert domain.rectify(case, dict(REQ)) is None
    both = domain.rectify(case, {"item_code": "I1", "department_code": "wsjk", "material_codes": ["M01", "M02"]})
    assert both["material_codes"] == ["M02", "M01"] and len(both["requests"]) == 2
    assert both["resume_status"] == domain.SUBMITTED


@pytest.mark.parametrize("status", [domain.APPROVED, domain.REJECTED, domain.DELIVERED, domain.RATED,
                                    domain.WITHDRAWN])
def test_rectification_after_conclusion_changes_nothing(status):
    assert domain.rectify({"status": status, "rectification": {}}, REQ) is None


def test_rectification_naming_no_material_changes_nothing():
    assert domain.rectify({"status": domain.SUBMITTED, "rectification": {}}, dict(REQ, material_codes=[])) is None


RECT = {"material_codes": ["M01", "M02"], "requests": [], "resume_status": domain.SUBMITTED}


def test_supplement_of_exactly_the_named_materials_passes():
    assert domain.check_supplement(domain.RECTIFYING, RECT, ["M02", "M01"]) is None


@pytest.mark.parametrize("status", [s for s in ALL if s != domain.RECTIFYING])
def test_supplement_needs_a_case_waiting_for_materials(status):
    with pytest.raises(FailedPrecondition, match="RECTIFYING"):
        domain.check_supplement(status, RECT, ["M01", "M02"])


def test_supplement_with_a_material_not_asked_for_is_invalid():
    with pytest.raises(InvalidArgument, match="did not ask for M04"):
        domain.check_supplement(domain.RECTIFYING, RECT, ["M01", "M02", "M04"])


def test_supplement_missing_a_named_material_is_refused():
    with pytest.raises(FailedPrecondition, match="asks for M02 as well"):
        domain.check_supplement(domain.RECTIFYING, RECT, ["M01"])


def test_supplement_with_a_material_twice_is_invalid():
    with pytest.raises(InvalidArgument, match="more than once"):
        domain.check_supplement(domain.RECTIFYING, RECT, ["M01", "M01", "M02"])


# --- listing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value, words", [("", "name the applicant"), ("123", "neither"),
                                          ("110105194912310021", "neither")])
def test_applicant_id_must_be_an_identifier(value, words):
    with pytest.raises(InvalidArgument, match=words):
        domain.check_applicant_id(value)


def test_citizen_and_credit_code_are_applicant_ids():
    assert domain.check_applicant_id(CITIZEN) is None and domain.check_applicant_id(CREDIT_CODE) is None


def test_page_size():
    assert domain.page_size(0) == 20 and domain.page_size(5) == 5 and domain.page_size(1000) == 100
    with pytest.raises(InvalidArgument, match="negative"):
        domain.page_size(-1)


# --- uploads ---------------------------------------------------------------------------------


@pytest.mark.parametrize("ctype", domain.ALLOWED_TYPES)
def test_scans_are_accepted(ctype):
    assert domain.check_content_type(ctype) is None
    assert domain.check_content_type(ctype, "application/octet-stream") is None
    assert domain.check_content_type(ctype, ctype.upper() + "; charset=binary") is None


@pytest.mark.parametrize("head", [b"PK\x03\x04\x14\x00\x06\x00", b"MZ\x90\x00\x03\x00\x00\x00", b"\x7fELF\x02\x01\x01",
                                  b"GIF89a\x01\x00", b"hello, world\n", b"\x00\x01\x02\xfe\xff\x80"])
def test_other_content_is_refused_whatever_the_name(head):
    with pytest.raises(InvalidArgument, match="not accepted for a material"):
        domain.check_content_type(domain.sniff_content_type(head), "application/pdf")


def test_declared_type_contradicting_the_content_is_refused():
    with pytest.raises(InvalidArgument, match="declared image/png but its content is application/pdf"):
        domain.check_content_type("application/pdf", "image/png")
    assert domain.check_content_type("image/jpeg", "image/jpg") is None


def test_manifest_lists_every_material_with_its_content_or_licence():
    mats = [{"material_code": "M01", "name": "身份证", "object_key": "content/sha256/ab", "sha256": "ab", "size": 3,
             "content_type": "application/pdf"},
            {"material_code": "M05", "name": "出生医学证明", "license_id": "L1"}]
    got = domain.manifest("C1", mats)
    assert got["case_no"] == "C1"
    assert [m["material_code"] for m in got["materials"]] == ["M01", "M05"]
    assert got["materials"][0]["object_key"] == "content/sha256/ab" and got["materials"][1]["license_id"] == "L1"
    assert domain.content_key("ab" * 32) == "content/sha256/" + "ab" * 32


def test_statuses_of_the_proto_are_the_domains():
    """Every status of the domain has its CaseStatus number (the api sends it) and its stored string."""
    from onething.intake.v1 import intake_pb2
    assert set(ALL) == set(domain.CaseStatus) == set(domain.PROTO_STATUS) == set(domain.STORED_STATUS)
    for status in ALL:
        assert intake_pb2.CaseStatus.Name(domain.PROTO_STATUS[status]) == f"CASE_STATUS_{status.value}"
    assert len(set(domain.PROTO_STATUS.values())) == len(ALL)
    assert set(itertools.chain(domain.OPEN, domain.FINAL)) <= set(ALL)


def test_stored_statuses_are_the_strings_cases_have_always_carried():
    """Data written before (and by tools reading the database) keeps its meaning."""
    assert domain.STORED_STATUS == {
        domain.SUBMITTED: "CASE_STATUS_SUBMITTED", domain.IN_REVIEW: "CASE_STATUS_IN_REVIEW",
        domain.APPROVED: "CASE_STATUS_APPROVED", domain.REJECTED: "CASE_STATUS_REJECTED",
        domain.DELIVERED: "CASE_STATUS_DELIVERED", domain.RATED: "CASE_STATUS_RATED",
        domain.RECTIFYING: "CASE_STATUS_RECTIFYING", domain.WITHDRAWN: "CASE_STATUS_WITHDRAWN",
        domain.DELIVERY_FAILED: "CASE_STATUS_DELIVERY_FAILED"}
    assert all(domain.STATUS_OF_STORED[stored] is status for status, stored in domain.STORED_STATUS.items())


def test_mail_delivery_address_is_checked_at_submission():
    import pytest as _pytest

    from services.common.errors import InvalidArgument as _Invalid
    from services.intake import domain as _d
    good = {"recipient": "李华", "phone": "13800138000", "region_code": "440106", "line": "天河路 100 号 1 栋",
            "postcode": "510620"}
    _d.check_delivery({"channel": "DELIVERY_CHANNEL_MAIL", "address": good})
    with _pytest.raises(_Invalid, match="postcode"):
        _d.check_delivery({"channel": "DELIVERY_CHANNEL_MAIL", "address": dict(good, postcode="51062")})
    with _pytest.raises(_Invalid, match="mobile"):
        _d.check_delivery({"channel": "DELIVERY_CHANNEL_MAIL", "address": dict(good, phone="020-1234")})
