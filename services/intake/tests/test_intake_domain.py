"""Intake rules: applicant, delivery and materials checks, case numbers, status order, sniffing."""
import datetime
import itertools
import pathlib

import pytest
import yaml

from services.catalog.resolution import resolve
from services.common.errors import FailedPrecondition, InvalidArgument
from services.intake import domain

DATA = pathlib.Path(__file__).resolve().parents[2] / "catalog" / "data"
CITIZEN = "11010519491231002X"
CREDIT_CODE = "91350100M000100Y43"


@pytest.fixture(scope="module")
def newborn():
    departments = yaml.safe_load((DATA / "departments.yaml").read_text(encoding="utf-8"))
    pkg = yaml.safe_load((DATA / "packages" / "newborn.yaml").read_text(encoding="utf-8"))
    return resolve(pkg, "440100", departments)


# --- applicant --------------------------------------------------------------------------------


def test_valid_citizen_applicant_passes():
    assert domain.check_applicant({"id_number": CITIZEN, "name": "张三"}, "AUDIENCE_PERSON") is None


def test_valid_enterprise_applicant_passes():
    assert domain.check_applicant({"id_number": CREDIT_CODE, "name": "某某有限公司"}, "AUDIENCE_ENTERPRISE") is None


@pytest.mark.parametrize("applicant", [None, {}, {"name": "张三"}, {"id_number": "", "name": "张三"}])
def test_missing_id_number(applicant):
    with pytest.raises(InvalidArgument, match="ID number is missing"):
        domain.check_applicant(applicant, "AUDIENCE_PERSON")


@pytest.mark.parametrize("name", [None, "", "   ", "\t"])
def test_missing_name(name):
    with pytest.raises(InvalidArgument, match="name is missing"):
        domain.check_applicant({"id_number": CITIZEN, "name": name}, "AUDIENCE_PERSON")


def test_bad_citizen_id_is_explained():
    with pytest.raises(InvalidArgument) as err:
        domain.check_applicant({"id_number": "110105194912310021", "name": "张三"}, "AUDIENCE_PERSON")
    assert err.value.code == "INVALID_ARGUMENT"
    assert err.value.message.startswith("applicant: ")
    assert "expected X" in err.value.message


def test_credit_code_is_not_a_citizen_id():
    with pytest.raises(InvalidArgument, match="citizen ID"):
        domain.check_applicant({"id_number": CREDIT_CODE, "name": "某某有限公司"}, "AUDIENCE_PERSON")


def test_citizen_id_is_not_a_credit_code_for_enterprises():
    with pytest.raises(InvalidArgument, match="credit code"):
        domain.check_applicant({"id_number": CITIZEN, "name": "张三"}, "AUDIENCE_ENTERPRISE")


def test_unspecified_audience_is_checked_as_a_person():
    assert domain.check_applicant({"id_number": CITIZEN, "name": "张三"}, None) is None
    with pytest.raises(InvalidArgument):
        domain.check_applicant({"id_number": CREDIT_CODE, "name": "x"}, "AUDIENCE_UNSPECIFIED")


# --- delivery ---------------------------------------------------------------------------------


@pytest.mark.parametrize("delivery", [{"channel": "DELIVERY_CHANNEL_ELECTRONIC"}, {"channel": "DELIVERY_CHANNEL_WINDOW"},
                                      {"channel": "DELIVERY_CHANNEL_MAIL", "address": {"line": "广州市天河路1号", "recipient": "李华", "phone": "13800138000", "region_code": "440106", "postcode": "510620"}}])
def test_good_delivery(delivery):
    assert domain.check_delivery(delivery) is None


@pytest.mark.parametrize("delivery", [None, {}, {"channel": "DELIVERY_CHANNEL_UNSPECIFIED"}, {"channel": "EMAIL"}])
def test_delivery_channel_must_be_chosen(delivery):
    with pytest.raises(InvalidArgument, match="ELECTRONIC, WINDOW or MAIL"):
        domain.check_delivery(delivery)


@pytest.mark.parametrize("address", [None, {}, {"line": ""}, {"recipient": "张三", "postcode": "510000"}])
def test_mail_needs_an_address_line(address):
    delivery = {"channel": "DELIVERY_CHANNEL_MAIL"}
    if address is not None:
        delivery["address"] = address
    with pytest.raises(InvalidArgument, match="postal address"):
        domain.check_delivery(delivery)


# --- materials --------------------------------------------------------------------------------


def test_all_materials_present(newborn):
    assert domain.check_materials(newborn, ["M01", "M02", "M03", "M04"]) == {}
    assert domain.check_materials(newborn, {"M04", "M03", "M02", "M01"}) == {}


def test_missing_material_is_named_in_chinese_and_by_code(newborn):
    with pytest.raises(FailedPrecondition) as err:
        domain.check_materials(newborn, ["M01", "M02", "M04"])
    assert err.value.code == "FAILED_PRECONDITION"
    assert "结婚证 (M03)" in err.value.message
    assert "M01" not in err.value.message and "M04" not in err.value.message


def test_several_missing_materials_in_package_order(newborn):
    with pytest.raises(FailedPrecondition) as err:
        domain.check_materials(newborn, ["M02"])
    assert "父母居民身份证 (M01)、结婚证 (M03)、母亲银行卡 (M04)" in err.value.message


def test_nothing_submitted_lists_every_material(newborn):
    with pytest.raises(FailedPrecondition) as err:
        domain.check_materials(newborn, [])
    for name in ("父母居民身份证", "居民户口簿", "结婚证", "母亲银行卡"):
        assert name in err.value.message


def test_unknown_material_is_invalid(newborn):
    with pytest.raises(InvalidArgument) as err:
        domain.check_materials(newborn, ["M01", "M02", "M03", "M04", "M77"])
    assert "M77" in err.value.message and "XSECS" in err.value.message


def test_missing_is_reported_before_unknown(newborn):
    with pytest.raises(FailedPrecondition):
        domain.check_materials(newborn, ["M01", "M77"])


# --- case numbers -----------------------------------------------------------------------------


def test_case_number_format():
    prefix = domain.implementing_code("440100", "XSECS")
    assert prefix == "440100XSECS"
    case_no = domain.case_number(prefix, datetime.date(2024, 3, 5), 7)
    assert case_no == "440100XSECS202403050007"
    domain.check_case_no(case_no)


def test_case_number_sequence_is_zero_padded_to_four():
    day = datetime.date(2025, 12, 31)
    assert domain.case_number("P", day, 1).endswith("202512310001")
    assert domain.case_number("P", day, 9999).endswith("202512319999")


def test_case_numbers_sort_by_day_then_sequence():
    numbers = [domain.case_number("440100XSECS", d, s)
               for d in (datetime.date(2024, 1, 9), datetime.date(2024, 1, 10)) for s in (2, 10)]
    assert numbers == sorted(numbers)


@pytest.mark.parametrize("case_no", ["", None, "abc", "440100xsecs202403050007", "4401-00", "12345", "A" * 65,
                                     "440100 XSECS"])
def test_bad_case_numbers(case_no):
    with pytest.raises(InvalidArgument, match="not a case number"):
        domain.check_case_no(case_no)


def test_today_is_china_standard_time():
    tz = datetime.timezone(datetime.timedelta(hours=8))
    before = datetime.datetime.now(tz).date()
    got = domain.today()
    after = datetime.datetime.now(tz).date()
    assert isinstance(got, datetime.date) and got in (before, after)


# --- status -----------------------------------------------------------------------------------

ORDER = [[domain.SUBMITTED], [domain.IN_REVIEW], [domain.APPROVED, domain.REJECTED], [domain.DELIVERED],
         [domain.RATED]]
RANK = {status: n for n, group in enumerate(ORDER) for status in group}


@pytest.mark.parametrize("current,new", list(itertools.product(RANK, RANK)))
def test_advance_never_moves_backwards(current, new):
    got = domain.advance(current, new)
    if RANK[new] > RANK[current]:
        assert got == new
    else:
        assert got is None


def test_late_in_review_after_approval_changes_nothing():
    assert domain.advance(domain.APPROVED, domain.IN_REVIEW) is None
    assert domain.advance(domain.REJECTED, domain.APPROVED) is None
    assert domain.advance(domain.SUBMITTED, domain.APPROVED) == domain.APPROVED


# --- content sniffing -------------------------------------------------------------------------


@pytest.mark.parametrize("head,ctype", [
    (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image/png"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image/jpeg"),
    (b"GIF89a\x01\x00\x01\x00", "image/gif"),
    (b"PK\x03\x04\x14\x00\x06\x00", "application/zip"),
    (b"hello, world\n", "text/plain"),
    ("父母居民身份证".encode()[:15], "text/plain"),
    (b"\x00\x01\x02\xfe\xff\x80", "application/octet-stream"),
])
def test_sniff_by_magic_bytes(head, ctype):
    assert domain.sniff_content_type(head) == ctype


def test_sniff_ignores_what_the_name_claims():
    # a PNG uploaded as "scan.pdf" and a PDF uploaded as "photo.png": only the bytes count
    assert domain.sniff_content_type(b"\x89PNG\r\n\x1a\n" + b"\x00" * 8) == "image/png"
    assert domain.sniff_content_type(b"%PDF-1.4 scan.png") == "application/pdf"
    assert domain.sniff_content_type(b"scan.pdf") == "text/plain"


def test_sniff_needs_the_whole_magic():
    assert domain.sniff_content_type(b"%PDF") != "application/pdf"
    assert domain.sniff_content_type(b"\x89PNG\r\n") != "image/png"


def test_sniff_utf8_text_cut_inside_a_character_is_text():
    # BUG (services/intake/domain.py:93): the handler sniffs data[:16]; a Chinese UTF-8 text file
    # whose 16th byte falls inside a character (3 bytes each) is reported as octet-stream.
    head = "新生儿出生一件事材料清单".encode()[:16]
    assert domain.sniff_content_type(head) == "text/plain"


def test_case_number_with_trailing_newline_is_rejected():
    # BUG (services/intake/domain.py:64): CASE_NO_RE ends in `$`, which also matches before a
    # trailing newline, so "…0007\n" passes check_case_no.
    with pytest.raises(InvalidArgument, match="not a case number"):
        domain.check_case_no("440100XSECS202403050007\n")
