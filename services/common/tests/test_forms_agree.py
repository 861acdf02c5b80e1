"""The one form has one set of rules (services.common.forms): one table of values, run through the
catalog's CheckForm (the handler behind the gRPC call, on a package whose merged form has every
field type and validator) and through intake's SubmitCase check (intake's domain check_form, given
the merged form the catalog answers): both accept or both refuse every row, and the outcome is the
one forms.py decided. Also the China facts those rules rest on (services.common.china)."""
import datetime

import pytest

from services.catalog import definitions
from services.catalog.fakes import MemoryCatalogStore
from services.catalog.wiring import build_catalog
from services.common import china, forms, ids, privacy
from services.common.address import check_address
from services.common.audit import MemoryAuditLog
from services.common.errors import InvalidArgument
from services.intake import domain as intake

CITIZEN = "11010519491231002X"
CREDIT_CODE = "91350100M000100Y43"

FIELDS = {
    "child_name": {"label": "新生儿姓名", "type": "string", "required": True},
    "birth_date": {"label": "出生日期", "type": "date", "required": True},
    "child_gender": {"label": "新生儿性别", "type": "choice", "choices": ["男", "女"]},
    "agree": {"label": "同意", "type": "bool"},
    "count": {"label": "人数", "type": "number"},
    "household_region": {"label": "户籍所在地区划代码", "type": "string", "validator": "region"},
    "contact_phone": {"label": "联系电话", "type": "string", "validator": "phone"},
    "mother_id": {"label": "母亲公民身份号码", "type": "string", "validator": "citizen_id"},
    "credit_code": {"label": "统一社会信用代码", "type": "string", "validator": "credit_code"},
    "bank_account": {"label": "银行账号", "type": "string", "validator": "bank_account"},
}
GOOD = {"child_name": "李小明", "birth_date": "2026-11-20", "child_gender": "男", "agree": "true", "count": "3",
        "household_region": "440106", "contact_phone": "13800000000", "mother_id": CITIZEN,
        "credit_code": CREDIT_CODE, "bank_account": "6222020200112233"}


def wrong_check(value):
    return value[:-1] + ("1" if value[-1] != "1" else "2")


ACCEPTED = [
    ("the good form", {}),
    ("false", {"agree": "false"}),
    ("zero", {"count": "0"}),
    ("a decimal", {"count": "3.5"}),
    ("leading zeros", {"count": "007"}),
    ("a province", {"household_region": "440000"}),
    ("a city", {"household_region": "440100"}),
    ("a county of a province (省直辖)", {"household_region": "429004"}),
    ("Hong Kong", {"household_region": "810000"}),
    ("a lower-case x check digit", {"mother_id": CITIZEN.lower()}),
    ("white space around a value", {"contact_phone": " 13800000000 ", "birth_date": "2026-11-20 "}),
    ("optional fields left blank", {"agree": "", "count": "   ", "contact_phone": None}),
    ("a key the form does not have", {"shoe_size": "42"}),
    ("keys of another package's form", {"enterprise_name": "某某公司", "legal_rep_id": CITIZEN}),
]

REFUSED = [  # (what, changes, key refused first, words in both messages, reason)
    ("是", {"agree": "是"}, "agree", "true or false", forms.WRONG_TYPE),
    ("否", {"agree": "否"}, "agree", "true or false", forms.WRONG_TYPE),
    ("yes", {"agree": "yes"}, "agree", "true or false", forms.WRONG_TYPE),
    ("True", {"agree": "True"}, "agree", "true or false", forms.WRONG_TYPE),
    ("a negative number", {"count": "-1"}, "count", "not a number", forms.WRONG_TYPE),
    ("a negative decimal", {"count": "-0.5"}, "count", "not a number", forms.WRONG_TYPE),
    ("an exponent", {"count": "1e3"}, "count", "not a number", forms.WRONG_TYPE),
    ("nan", {"count": "nan"}, "count", "not a number", forms.WRONG_TYPE),
    ("inf", {"count": "inf"}, "count", "not a number", forms.WRONG_TYPE),
    ("a thousands separator", {"count": "1,000"}, "count", "not a number", forms.WRONG_TYPE),
    ("a plus sign", {"count": "+3"}, "count", "not a number", forms.WRONG_TYPE),
    ("words", {"count": "three"}, "count", "not a number", forms.WRONG_TYPE),
    ("region 000000", {"household_region": "000000"}, "household_region", "province-level", forms.INVALID_VALUE),
    ("region of no province", {"household_region": "990000"}, "household_region", "province-level",
     forms.INVALID_VALUE),
    ("region 19xxxx", {"household_region": "190000"}, "household_region", "province-level", forms.INVALID_VALUE),
    ("a county part without a city part", {"household_region": "440006"}, "household_region", "county part",
     forms.INVALID_VALUE),
    ("five digits", {"household_region": "44010"}, "household_region", "6-digit", forms.INVALID_VALUE),
    ("seven digits", {"household_region": "4401060"}, "household_region", "6-digit", forms.INVALID_VALUE),
    ("a full-width digit", {"household_region": "44０106"}, "household_region", "6-digit", forms.INVALID_VALUE),
    ("a phone starting 12", {"contact_phone": "12345678901"}, "contact_phone", "mobile", forms.INVALID_VALUE),
    ("a 10-digit phone", {"contact_phone": "1380000000"}, "contact_phone", "mobile", forms.INVALID_VALUE),
    ("a 12-digit phone", {"contact_phone": "138000000000"}, "contact_phone", "mobile", forms.INVALID_VALUE),
    ("a phone with +86", {"contact_phone": "+8613800000000"}, "contact_phone", "mobile", forms.INVALID_VALUE),
    ("a landline", {"contact_phone": "020-12345678"}, "contact_phone", "mobile", forms.INVALID_VALUE),
    ("a wrong ID check digit", {"mother_id": wrong_check(CITIZEN)}, "mother_id", "check digit", forms.INVALID_VALUE),
    ("a short ID number", {"mother_id": "12345"}, "mother_id", "18 characters", forms.INVALID_VALUE),
    ("an ID birth date that is no day", {"mother_id": "110105194902301234"}, "mother_id", "not a real date",
     forms.INVALID_VALUE),
    ("a wrong credit code check character", {"credit_code": wrong_check(CREDIT_CODE)}, "credit_code",
     "check character", forms.INVALID_VALUE),
    ("a credit code with an O", {"credit_code": "91350100M000100O43"}, "credit_code", "capital letters",
     forms.INVALID_VALUE),
    ("30 February", {"birth_date": "2026-02-30"}, "birth_date", "not a date", forms.WRONG_TYPE),
    ("a date without dashes", {"birth_date": "20261120"}, "birth_date", "not a date", forms.WRONG_TYPE),
    ("a date with slashes", {"birth_date": "2026/11/20"}, "birth_date", "not a date", forms.WRONG_TYPE),
    ("a date in words", {"birth_date": "yesterday"}, "birth_date", "not a date", forms.WRONG_TYPE),
    ("a choice not offered", {"child_gender": "未知"}, "child_gender", "must be one of 男、女", forms.WRONG_TYPE),
    ("a bank account with a dash", {"bank_account": "62-22"}, "bank_account", "bank account", forms.INVALID_VALUE),
    ("a short bank account", {"bank_account": "12345"}, "bank_account", "bank account", forms.INVALID_VALUE),
    ("a required field missing", {"child_name": None}, "child_name", "required", forms.REQUIRED),
    ("a required field empty", {"child_name": ""}, "child_name", "required", forms.REQUIRED),
    ("a required field blank", {"birth_date": "   "}, "birth_date", "required", forms.REQUIRED),
]


def form(changes):
    values = dict(GOOD)
    for key, value in changes.items():
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
    return values


@pytest.fixture(scope="module")
def catalog():
    """A catalog (the wiring, the in-memory store) offering one package whose form has every field."""
    pkg = {"code": "FORMS", "name": "表单一件事", "lead_department": "gaj", "audience": "AUDIENCE_PERSON",
           "form_fields": list(FIELDS), "materials": [],
           "items": [{"code": "110000000099", "name": "登记", "department_code": "gaj", "statutory_limit_days": 5,
                      "promised_limit_days": 5, "result": {"type": "RESULT_TYPE_RECORD"}}]}
    store = MemoryCatalogStore()
    store.add_version("FORMS", 1, definitions.VersionStatus.PUBLISHED,
                      definitions.bare_definition(pkg, {"gaj": "公安局"}, FIELDS), "digest")
    return build_catalog(store=store, audit=MemoryAuditLog("catalog"), serves=lambda region: True)


@pytest.fixture(scope="module")
def merged_form(catalog):
    """What intake is given: the merged form of the package as the catalog resolves it."""
    return catalog.get_package("FORMS", "440100")["form_fields"]


def check_form(catalog, values):
    """The catalog's CheckForm."""
    return catalog.check_form("FORMS", "440100", values=values)


def submit_case(merged_form, values):
    """intake's SubmitCase check: None when accepted, the InvalidArgument when refused."""
    try:
        intake.check_form(merged_form, values)
    except InvalidArgument as exc:
        return exc
    return None


def test_the_package_asks_every_field_type_and_validator(merged_form):
    assert {f["type"] for f in merged_form} == set(forms.FIELD_TYPES)
    assert {f["validator"] for f in merged_form} - {""} == set(forms.VALIDATORS)


@pytest.mark.parametrize("what, changes", ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_both_accept(catalog, merged_form, what, changes):
    values = form(changes)
    checked = check_form(catalog, values)
    refused = submit_case(merged_form, values)
    assert checked["ok"] is True and refused is None, (checked, refused)
    unknown = [k for k in values if k not in FIELDS]
    # CheckForm names a key the form does not have (a notice), and nothing else
    assert [p["key"] for p in checked["problems"]] == unknown
    assert all("not a field of this form" in p["problem"] for p in checked["problems"])


@pytest.mark.parametrize("what, changes, key, words, reason", REFUSED, ids=[r[0] for r in REFUSED])
def test_both_refuse(catalog, merged_form, what, changes, key, words, reason):
    values = form(changes)
    checked = check_form(catalog, values)
    refused = submit_case(merged_form, values)
    assert checked["ok"] is False and refused is not None, (checked, refused)
    assert [p["key"] for p in checked["problems"]] == [key]
    assert words in checked["problems"][0]["problem"] and checked["problems"][0]["problem"].startswith(
        FIELDS[key]["label"] + ": ")
    violation = refused.violations[0]
    assert violation.field == f'form["{key}"]' and violation.reason == reason
    assert words in refused.message and f"({key})" in refused.message
    assert refused.zh_message.startswith(f"表单“{FIELDS[key]['label']}”")


# refusals of personal data long enough to be told apart from the words around it (a credit code is
# an organisation's public identifier, a region code names no one)
PERSONAL = [r for r in REFUSED if r[2] not in ("credit_code", "household_region")
            and len((form(r[1]).get(r[2]) or "").strip()) >= 4]


@pytest.mark.parametrize("what, changes, key, words, reason", PERSONAL, ids=[r[0] for r in PERSONAL])
def test_no_refusal_repeats_the_value(catalog, merged_form, what, changes, key, words, reason):
    value = form(changes)[key].strip()
    text = " ".join([check_form(catalog, form(changes))["problems"][0]["problem"],
                     submit_case(merged_form, form(changes)).message,
                     submit_case(merged_form, form(changes)).violations[0].description])
    assert value not in text


def test_submit_case_refuses_with_the_first_problem_of_the_form():
    values = form({"child_name": None, "count": "-1", "shoe_size": "42"})
    problems = forms.check([dict(f, key=k) for k, f in FIELDS.items()], values)
    assert [(p.key, p.refuses) for p in problems] == [("shoe_size", False), ("child_name", True), ("count", True)]
    assert forms.accepts([], {"anything": "goes"}) and forms.accepts(None, None)


# --- the China facts the rules rest on ----------------------------------------------------------


def test_china_standard_time_is_utc_plus_8_all_year():
    assert china.CST is china.SHANGHAI
    for month in (1, 7):  # no daylight saving
        assert datetime.datetime(2026, month, 1, tzinfo=china.CST).utcoffset() == datetime.timedelta(hours=8)
    assert china.now().utcoffset() == datetime.timedelta(hours=8)
    utc_today = datetime.datetime.now(datetime.UTC)
    assert china.today() in (utc_today.date(), utc_today.date() + datetime.timedelta(days=1))


def test_the_day_in_china_of_a_moment():
    assert china.day_of("2026-11-27T16:00:00+00:00") == datetime.date(2026, 11, 28)
    assert china.day_of("2026-11-27T15:59:59+00:00") == datetime.date(2026, 11, 27)
    assert china.day_of(datetime.datetime(2026, 11, 28, 0, 30, tzinfo=china.CST)) == datetime.date(2026, 11, 28)
    with pytest.raises(ValueError, match="ambiguous"):
        china.day_of("2026-11-27T16:00:00")


@pytest.mark.parametrize("value, mobile", [("13800000000", True), ("19912345678", True), ("12345678901", False),
                                           ("1380000000", False), ("138000000001", False), ("１３８00000000", False),
                                           (" 13800000000", False), (None, False)])
def test_one_mobile_pattern_for_forms_addresses_and_masking(value, mobile):
    assert china.is_mobile(value) is mobile
    address = {"recipient": "李华", "phone": value, "region_code": "440106", "line": "天河路100号",
               "postcode": "510620"}
    if mobile:
        check_address(address)
        assert privacy.mask_text(f"tel {value}.") == f"tel {privacy.mask_phone(value)}."
    else:
        with pytest.raises(InvalidArgument, match="mobile"):
            check_address(address)
    field = {"key": "p", "label": "电话", "validator": "phone"}
    assert (forms.value_problem(field, value) is None) is (mobile or value is None or value.strip() == "13800000000")


def test_region_codes():
    assert all(china.region_code_problem(code) is None for code in ("110000", "440106", "429004", "650100"))
    assert len(china.PROVINCES) == 34
    for code in ("000000", "990000", "44010", "4401066", "440006", "abcdef"):
        assert china.region_code_problem(code)


def test_the_form_rules_keep_personal_data_out_of_messages():
    problem = forms.value_problem({"key": "mother_id", "label": "母亲", "validator": "citizen_id"},
                                  wrong_check(CITIZEN))
    assert wrong_check(CITIZEN) not in problem.text and privacy.mask_id(wrong_check(CITIZEN)) in problem.text
    assert ids.citizen_id_problem(CITIZEN) is None
