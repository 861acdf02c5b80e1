"""The catalog rules on the real seed data, through the handlers with an in-memory store: seed
shape, levels, situations, the one form, the one set of materials, the notice and the savings."""
import pathlib
import re

import pytest

from services.catalog import definitions
from services.catalog.definitions import VersionStatus
from services.common import ids
from services.common.errors import InvalidArgument, NotFound

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"
XSECS = [f"11000000000{i}" for i in range(1, 8)]


@pytest.fixture(scope="module")
def catalog(make_catalog):
    c = make_catalog(DATA)
    c.load()
    return c


def codes(pkg):
    return [i["code"] for i in pkg["items"]]


def item(pkg, code):
    return next(i for i in pkg["items"] if i["code"] == code)


# --- seed data ---------------------------------------------------------------------------------

def test_seed_has_the_required_packages_for_both_audiences(catalog):
    national = [p for p in catalog.list_packages("110000")]
    assert len(national) >= 12
    assert {p["audience"] for p in national} == {"AUDIENCE_PERSON", "AUDIENCE_ENTERPRISE"}
    names = " ".join(p["name"] for p in national)
    for wanted in ("新生儿出生", "开办企业", "开办餐饮店", "退休", "身后", "二手房转移登记及水电气网联动过户",
                   "工程建设项目竣工联合验收", "企业迁移", "教育入学", "残疾人服务"):
        assert wanted in names, wanted


def test_every_item_is_well_formed_in_every_city(catalog):
    for region in ("440100", "440300"):
        for pkg in catalog.list_packages(region):
            assert re.fullmatch(r"[0-9A-Z]{1,30}", pkg["implementing_code"])
            for i in pkg["items"]:
                assert re.fullmatch(r"[0-9A-Z]{12}", i["code"])
                assert 0 < i["promised_limit_days"] <= i["statutory_limit_days"]
                assert i["result"]["type"] in definitions.RESULT_TYPES
                body = i["implementing_body"]
                if body:  # implementing code = body's credit code + level digit + basic code
                    assert ids.credit_code_problem(body["credit_code"]) is None
                    assert i["implementing_code"] == body["credit_code"] + definitions.level_digit(
                        body["source_level"]) + i["code"]
            for m in pkg["materials"]:
                assert m["forms"] and set(m["forms"]) <= set(definitions.MATERIAL_FORMS)


def test_newborn_keeps_its_contract(catalog):
    pkg = catalog.get_package("XSECS", "440100")
    assert codes(pkg) == XSECS  # 06 selected by default (maternity=yes), 07 kept in 440100
    assert [m["code"] for m in pkg["materials"]] == ["M01", "M02", "M03", "M04"]
    assert [d["code"] for d in pkg["departments"]] == ["wsjk", "jkzx", "gaj", "ybj", "rsj"]
    assert item(pkg, XSECS[2])["prerequisites"] == [XSECS[0]]
    assert item(pkg, XSECS[3])["prerequisites"] == [XSECS[2]]
    assert item(pkg, XSECS[4])["prerequisites"] == [XSECS[3]]
    assert item(pkg, XSECS[2])["license_inputs"] == ["CSYXZM"]
    assert pkg["implementing_code"] == "440100XSECS"
    assert pkg["version"] == 1 and pkg["status"] is VersionStatus.PUBLISHED


def test_statutory_and_promised_limits_are_kept_apart(catalog):
    pkg = catalog.get_package("XSECS", "440100")
    hukou = item(pkg, XSECS[2])
    assert (hukou["statutory_limit_days"], hukou["promised_limit_days"]) == (10, 2)
    assert pkg["statutory_limit_days"] == 35 and pkg["promised_limit_days"] == 7


# --- levels ------------------------------------------------------------------------------------

def test_city_overlay_shortens_a_promised_limit_only_in_that_city(catalog):
    gz = item(catalog.get_package("XSECS", "440100"), XSECS[4])
    sz = item(catalog.get_package("XSECS", "440300"), XSECS[4])
    national = item(catalog.get_package("XSECS", "110000"), XSECS[4])
    assert (gz["promised_limit_days"], gz["promised_limit_source"]) == (3, "440100")
    assert (sz["promised_limit_days"], sz["promised_limit_source"]) == (5, "national")
    assert national["promised_limit_days"] == 5
    assert gz["statutory_limit_days"] == sz["statutory_limit_days"] == 15


def test_province_overlay_reaches_every_city(catalog):
    for region in ("440100", "440300", "440200"):
        hukou = item(catalog.get_package("XSECS", region), XSECS[2])
        assert (hukou["promised_limit_days"], hukou["promised_limit_source"]) == (2, "440000")
    assert item(catalog.get_package("XSECS", "110000"), XSECS[2])["promised_limit_days"] == 3


def test_district_without_overlay_resolves_to_its_city(catalog):
    pkg = catalog.get_package("XSECS", "440106")
    assert pkg["levels"] == ["national", "440000", "440100"]
    assert pkg["region_code"] == "440106" and pkg["region_name"] == "天河区"
    hukou = item(pkg, XSECS[2])
    assert hukou["implementing_body"]["name"] == "广州市公安局"
    assert hukou["implementing_body"]["source_level"] == "440100"
    assert item(pkg, XSECS[4])["promised_limit_days"] == 3


def test_city_without_overlay_takes_the_provincial_bodies(catalog):
    pkg = catalog.get_package("XSECS", "440200")
    assert pkg["levels"] == ["national", "440000"]
    assert item(pkg, XSECS[2])["implementing_body"]["name"] == "广东省公安厅"
    assert item(pkg, XSECS[2])["implementing_code"].endswith("2110000000003")  # level digit 2: province
    assert item(pkg, XSECS[3])["implementing_body"] == {} and item(pkg, XSECS[3])["implementing_code"] == ""


def test_region_outside_every_overlay_gets_the_national_base(catalog):
    pkg = catalog.get_package("XSECS", "110105")
    assert pkg["levels"] == ["national"] and pkg["implementing_code"] == "110105XSECS"
    assert all(i["source_level"] == "national" and not i["implementing_code"] for i in pkg["items"])


def test_cities_set_their_own_implementing_bodies(catalog):
    gz = item(catalog.get_package("XSECS", "440100"), XSECS[2])
    sz = item(catalog.get_package("XSECS", "440300"), XSECS[2])
    assert gz["implementing_body"]["name"] == "广州市公安局" and sz["implementing_body"]["name"] == "深圳市公安局"
    assert gz["implementing_code"] != sz["implementing_code"]
    assert gz["implementing_code"] == "11440100177777868Q" + "3" + XSECS[2]


def test_city_switches_an_optional_item_off(catalog):
    sz = catalog.get_package("XSECS", "440300")
    assert XSECS[6] not in codes(sz)
    skipped = next(s for s in sz["skipped_items"] if s["code"] == XSECS[6])
    assert skipped["reason"] == "switched_off" and skipped["source_level"] == "440300"
    assert XSECS[6] in codes(catalog.get_package("XSECS", "440100"))


def test_city_adds_an_item_to_a_base_package(catalog):
    gz = catalog.get_package("SH", "440100")
    added = item(gz, "440100000021")
    assert added["source_level"] == "440100" and added["prerequisites"] == ["150000000003"]
    assert "440100000021" not in codes(catalog.get_package("SH", "440300"))


def test_province_adds_a_situation_and_its_item(catalog):
    pkg = catalog.get_package("XSECS", "440100", {"allowance": "yes"})
    assert item(pkg, "440000000011")["source_level"] == "440000"
    assert next(s for s in pkg["situations"] if s["key"] == "allowance")["source_level"] == "440000"
    with pytest.raises(InvalidArgument, match="allowance"):
        catalog.get_package("XSECS", "110000", {"allowance": "yes"})  # not asked outside 广东


def test_local_package_is_offered_only_in_its_region(catalog):
    assert catalog.get_package("RCYJ", "440304")["source_level"] == "440300"
    with pytest.raises(NotFound, match="RCYJ"):
        catalog.get_package("RCYJ", "440100")
    assert "RCYJ" in [p["code"] for p in catalog.list_packages("440300")]
    assert "RCYJ" not in [p["code"] for p in catalog.list_packages("440100")]


def test_list_filters_by_audience(catalog):
    enterprise = catalog.list_packages("440100", "AUDIENCE_ENTERPRISE")
    assert enterprise and {p["audience"] for p in enterprise} == {"AUDIENCE_ENTERPRISE"}
    assert "KBCYD" in [p["code"] for p in enterprise] and "XSECS" not in [p["code"] for p in enterprise]
    with pytest.raises(InvalidArgument, match="audience"):
        catalog.list_packages("440100", "AUDIENCE_ROBOT")


@pytest.mark.parametrize("region", ["4401", "44010a", "", "４４０１００"])
def test_bad_region_is_refused(catalog, region):
    with pytest.raises(InvalidArgument, match="6-digit"):
        catalog.get_package("XSECS", region)


def test_unknown_package_is_not_found(catalog):
    with pytest.raises(NotFound, match="NOPE"):
        catalog.get_package("NOPE", "440100")


# --- situations --------------------------------------------------------------------------------

def test_restaurant_situations_select_items(catalog):
    plain = catalog.get_package("KBCYD", "440100")
    assert "130000000004" not in codes(plain) and "130000000002" not in codes(plain)
    assert {s["reason"] for s in plain["skipped_items"]} == {"situation"}
    full = catalog.get_package("KBCYD", "440100", {"tobacco": "yes", "signboard": "yes"})
    assert {"130000000004", "130000000002"} <= set(codes(full))
    assert {"yc", "cg"} <= {d["code"] for d in full["departments"]}
    assert "R06" in [m["code"] for m in full["materials"]] and "R06" not in [m["code"] for m in plain["materials"]]
    assert {s["key"]: s["answer"] for s in full["situations"]}["tobacco"] == "yes"


def test_newborn_without_maternity_drops_the_item_and_its_material(catalog):
    pkg = catalog.get_package("XSECS", "440100", {"maternity": "no"})
    assert XSECS[5] not in codes(pkg) and "M04" not in [m["code"] for m in pkg["materials"]]
    default = catalog.get_package("XSECS", "440100")
    assert next(s for s in default["situations"] if s["key"] == "maternity")["answer"] == "yes"


def test_unknown_situation_key_is_refused_naming_the_questions(catalog):
    with pytest.raises(InvalidArgument) as err:
        catalog.get_package("XSECS", "440100", {"twins": "yes"})
    assert "'twins'" in err.value.message and "maternity" in err.value.message


def test_unknown_situation_answer_is_refused_naming_the_answers(catalog):
    with pytest.raises(InvalidArgument) as err:
        catalog.get_package("KBCYD", "440100", {"tobacco": "maybe"})
    assert "'maybe'" in err.value.message and "yes" in err.value.message and "no" in err.value.message


def test_prerequisites_of_items_not_selected_are_dropped(catalog):
    pkg = catalog.get_package("JYRX", "440100", {"residence": "social_insurance"})
    assert item(pkg, "190000000004")["prerequisites"] == ["190000000003"]
    pkg = catalog.get_package("JYRX", "440100")
    assert item(pkg, "190000000004")["prerequisites"] == ["190000000001", "190000000002"]


# --- one form ----------------------------------------------------------------------------------

def test_merged_form_asks_each_shared_field_once(catalog):
    pkg = catalog.get_package("XSECS", "440100")
    keys = [f["key"] for f in pkg["form_fields"]]
    assert len(keys) == len(set(keys))
    child = next(f for f in pkg["form_fields"] if f["key"] == "child_name")
    assert set(child["item_codes"]) == {XSECS[0], XSECS[1], XSECS[2], XSECS[3], XSECS[4], XSECS[6]}
    assert child["required"] and child["type"] == "string"
    assert next(f for f in pkg["form_fields"] if f["key"] == "mother_id")["validator"] == "citizen_id"
    assert "bank_account" not in [f["key"] for f in catalog.get_package("XSECS", "440100", {"maternity": "no"})[
        "form_fields"] if XSECS[5] in f["item_codes"] or f["key"] == "bank_account"]


def citizen_id(first17="11010519491231002"):
    return first17 + ids.citizen_id_check_digit(first17)


def credit_code(first17="91440101MA5CXXXX0"):
    return first17 + ids.credit_code_check_char(first17)


def test_check_form_accepts_good_values(catalog):
    result = catalog.check_form("XSECS", "440100", values={
        "child_name": "李小明", "birth_date": "2026-11-20", "mother_id": citizen_id(), "child_gender": "男",
        "contact_phone": "13800138000", "household_region": "440106", "bank_account": "6222020200112233445"})
    assert result == {"ok": True, "problems": []}


def test_check_form_finds_a_wrong_citizen_id_check_digit(catalog):
    good = citizen_id()
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    result = catalog.check_form("XSECS", "440100", values={"child_name": "李小明", "birth_date": "2026-11-20",
                                                          "mother_id": bad})
    assert not result["ok"]
    assert [p["key"] for p in result["problems"]] == ["mother_id"]
    assert "check digit" in result["problems"][0]["problem"] and f"expected {good[-1]}" in result["problems"][0]["problem"]


def test_check_form_finds_a_wrong_credit_code_check_character(catalog):
    good = credit_code()
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    base = {"enterprise_name": "某某餐饮有限公司", "legal_rep_id": citizen_id()}
    assert catalog.check_form("KBCYD", "440100", values=dict(base, credit_code=good))["ok"]
    result = catalog.check_form("KBCYD", "440100", values=dict(base, credit_code=bad))
    assert [p["key"] for p in result["problems"]] == ["credit_code"]
    assert "check character" in result["problems"][0]["problem"]


@pytest.mark.parametrize("values, key, words", [
    ({"birth_date": "2026-11-20"}, "child_name", "required"),
    ({"child_name": "x", "birth_date": "20261120"}, "birth_date", "not a date"),
    ({"child_name": "x", "birth_date": "2026-11-20", "child_gender": "未知"}, "child_gender", "must be one of"),
    ({"child_name": "x", "birth_date": "2026-11-20", "contact_phone": "12345"}, "contact_phone", "mobile"),
    ({"child_name": "x", "birth_date": "2026-11-20", "household_region": "4401"}, "household_region", "6-digit"),
    ({"child_name": "x", "birth_date": "2026-11-20", "bank_account": "12ab"}, "bank_account", "bank account"),
    ({"child_name": "x", "birth_date": "2026-11-20", "shoe_size": "42"}, "shoe_size", "not a field"),
])
def test_check_form_problems(catalog, values, key, words):
    result = catalog.check_form("XSECS", "440100", values=values)
    assert [p["key"] for p in result["problems"]] == [key] and words in result["problems"][0]["problem"]
    # a key the form does not have is named, but does not refuse the form (services.common.forms)
    assert result["ok"] is (key == "shoe_size")


def test_check_form_number_field(catalog):
    result = catalog.check_form("KBCYD", "440100", values={"enterprise_name": "x", "legal_rep_id": citizen_id(),
                                                          "shop_area": "lots"})
    assert [p["key"] for p in result["problems"]] == ["shop_area"]


# --- one set of materials ----------------------------------------------------------------------

def test_materials_are_deduplicated_over_the_selected_items(catalog):
    pkg = catalog.get_package("XSECS", "440300")  # 07 switched off
    m01 = next(m for m in pkg["materials"] if m["code"] == "M01")
    assert m01["item_codes"] == [XSECS[0], XSECS[1], XSECS[2], XSECS[4], XSECS[5]]
    assert m01["license_type_code"] == "111" and m01["source_level"] == "national"


def test_a_held_licence_waives_its_material(catalog):
    pkg = catalog.get_package("XSECS", "440100", held_license_types=["111", "JHZ"])
    assert [m["code"] for m in pkg["materials"]] == ["M02", "M04"]
    assert {m["code"] for m in pkg["waived_materials"]} == {"M01", "M03"}
    assert all("M01" not in i["material_codes"] for i in pkg["items"])
    assert item(pkg, XSECS[2])["material_codes"] == ["M02"]


# --- notice and savings ------------------------------------------------------------------------

def test_notice_comes_from_the_same_resolution_as_get_package(catalog):
    notice = catalog.notice("KBCYD", "440100", {"tobacco": "yes"})
    assert notice["package"] == catalog.get_package("KBCYD", "440100", {"tobacco": "yes"})
    text = "\n".join(notice["text"])
    for part in ("申请条件", "经营场所符合食品安全", "是否同时经营卷烟零售", "烟草专卖零售许可", "广州市烟草专卖局",
                 "一套材料", "R05", "办理流程", "承诺", "法定", "收费", "食品经营许可证", "电子送达", "减材料"):
        assert part in text, part
    assert notice["steps"][0]["number"] == 1 and notice["steps"][-1]["name"].startswith("统一出件")


def test_notice_lists_what_does_not_apply_and_fees(catalog):
    text = "\n".join(catalog.notice("XSECS", "440300")["text"])
    assert "（不办理）110000000007 育儿指导登记：本地不提供" in text
    assert "按当年城乡居民医保个人缴费标准缴纳" in text


def test_savings_of_newborn_in_guangzhou(catalog):
    s = catalog.savings("XSECS", "440100")
    # promised limits 1+1+2+1+3+5+1 one by one; the longest chain 01->03->04->05 = 1+2+1+3 together
    assert (s["working_days_separately"], s["working_days_together"]) == (14, 7)
    assert (s["steps_separately"], s["steps_together"]) == (28, 7)  # 7 items x 4; apply, accept, 4 stages, deliver
    assert (s["materials_separately"], s["materials_together"]) == (10, 4)
    assert (s["trips_separately"], s["trips_together"]) == (12, 1)
    assert s["version"] == 1 and s["region_code"] == "440100"


def test_savings_follow_the_region_and_the_situations(catalog):
    assert catalog.savings("XSECS", "440300")["working_days_together"] == 9
    assert catalog.savings("XSECS", "440100", {"maternity": "no"})["materials_together"] == 3


def test_every_package_saves_something(catalog):
    for pkg in catalog.list_packages("440100"):
        s = catalog.savings(pkg["code"], "440100")
        assert s["trips_together"] < s["trips_separately"], pkg["code"]
        assert s["materials_together"] <= s["materials_separately"], pkg["code"]
        assert s["working_days_together"] <= s["working_days_separately"], pkg["code"]


# --- where an item is decided (sites) ------------------------------------------------------------

def test_an_item_a_provincial_department_implements_names_the_province(catalog):
    pkg = catalog.get_package("XSECS", "440300", {"allowance": "yes"})
    assert item(pkg, "440000000011")["implementing_region"] == "440000"
    assert "implementing_level" not in item(pkg, "440000000011")
    assert not item(pkg, "110000000001").get("implementing_region")


def test_a_cross_city_item_names_the_form_field_of_its_region(catalog):
    pkg = catalog.get_package("QYQY", "440100")
    assert item(pkg, "180000000005")["implementing_region_field"] == "move_from_region"
    assert item(pkg, "180000000001")["implementing_region_field"] == "move_to_region"
    assert item(pkg, "180000000001")["prerequisites"] == ["180000000005"]
    assert {"move_from_region", "move_to_region"} <= {f["key"] for f in pkg["form_fields"]}


def _item(**extra):
    return {"code": "440000000099", "name": "试", "department_code": "ybj", "statutory_limit_days": 5,
            "promised_limit_days": 5, "result": {"type": "RESULT_TYPE_RECORD"},
            "form_fields": ["move_to_region", "applicant_name"], **extra}


FIELDS = {"move_to_region": {"validator": "region"}, "applicant_name": {}}


@pytest.mark.parametrize("extra, problem", [
    ({"implementing_level": "county"}, "implementing_level must be one of province"),
    ({"implementing_region_field": "move_from_region"}, "is not one of the item's form fields"),
    ({"implementing_region_field": "applicant_name"}, "is not a region field"),
])
def test_where_an_item_is_decided_must_make_sense(extra, problem):
    with pytest.raises(InvalidArgument, match=problem):
        definitions.check_item(_item(**extra), "test", {"ybj": {}}, {}, FIELDS)
    definitions.check_item(_item(), "test", {"ybj": {}}, {}, FIELDS)  # without it: fine
