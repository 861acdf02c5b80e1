"""A desk's own decision on a TaskAssigned (its JSON dict), and which rule applies to which item:
data per department and region, an officer by default, one rule standing in for all of it."""
import pathlib

import pytest
import yaml

from services.desk import rules
from services.desk.rules import MANUAL, MATERIALS_PRESENT, Decision, Opinion

LIC = "1.2.156.3005.2.CSYXZM.440100WSJK.202400000001.001.X"
DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "rules.yaml"


def material(code):
    return {"material_code": code, "object_key": f"cases/C1/{code}/u1", "sha256": "00" * 32}


def licence(license_id=LIC, type_code="CSYXZM", valid=True):
    return {"license_id": license_id, "type_code": type_code, "valid": valid}


def hukou_task(**changes):
    task = {"case_no": "440100XSECS202403050001", "item_code": "110000000003", "department_code": "gaj",
            "region_code": "440100", "material_codes": ["M01", "M02", "M03"], "license_inputs": ["CSYXZM"],
            "license_ids": [LIC], "licenses": [licence()], "site": "440100", "round": 0,
            "materials": [material("M01"), material("M02"), material("M03"), material("M04")]}
    task.update(changes)
    return task


# --- the rules --------------------------------------------------------------------------------------


def test_manual_leaves_it_to_an_officer():
    assert rules.decide(MANUAL, hukou_task(materials=[])) is None


def test_an_item_with_a_site_inspection_is_left_to_officers_whatever_the_rule():
    assert rules.decide(MATERIALS_PRESENT, hukou_task(inspection=True)) is None


def test_everything_present_is_approved_naming_the_licences_checked():
    assert rules.decide(MATERIALS_PRESENT, hukou_task()) == Opinion(
        Decision.APPROVE, f"materials present; licences {LIC} checked")


def test_an_item_without_licence_inputs_is_approved_on_its_materials():
    task = hukou_task(license_inputs=[], license_ids=[], licenses=[])
    assert rules.decide(MATERIALS_PRESENT, task) == Opinion(Decision.APPROVE, "materials present")


def test_a_payload_with_its_empty_fields_left_out_is_approved():
    # MessageToDict leaves out empty repeated fields and false booleans
    task = {"case_no": "C1", "item_code": "110000000007", "department_code": "wsjk"}
    assert rules.decide(MATERIALS_PRESENT, task) == Opinion(Decision.APPROVE, "materials present")


def test_missing_materials_are_rejected_each_by_name():
    decided = rules.decide(MATERIALS_PRESENT, hukou_task(materials=[material("M01"), material("M02")]))
    assert decided == Opinion(Decision.REJECT, "materials missing: M03")
    assert rules.decide(MATERIALS_PRESENT, hukou_task(materials=[])).reason == "materials missing: M01, M02, M03"


@pytest.mark.parametrize("licences", [
    [],                                              # none named
    [licence(valid=False)],                          # revoked or superseded since
    [licence(type_code="SBK")],                      # another type
    [licence(type_code="")],                         # a type nobody knows
])
def test_without_a_valid_licence_of_each_type_it_takes_the_item_is_rejected(licences):
    assert rules.decide(MATERIALS_PRESENT, hukou_task(licenses=licences)) == Opinion(
        Decision.REJECT, "no valid licence of type CSYXZM")


def test_one_valid_licence_among_others_is_enough():
    other = "1.2.156.3005.2.SBK.440100RSJ.202400000001.001.Y"
    task = hukou_task(licenses=[licence(other, "SBK"), licence(valid=False), licence("L2")])
    assert rules.decide(MATERIALS_PRESENT, task) == Opinion(Decision.APPROVE, "materials present; licences L2 checked")


def test_a_rule_that_does_not_exist_decides_nothing():
    with pytest.raises(rules.RulesError, match="'approve_everything' is not one of materials_present, manual"):
        rules.decide("approve_everything", hukou_task())


def test_the_opinion_id_is_the_same_for_the_same_task_and_round_only():
    assert rules.opinion_id(hukou_task()) == rules.opinion_id(dict(hukou_task(), materials=[]))
    assert rules.opinion_id(hukou_task()) == "opinion:440100XSECS202403050001:110000000003:0"
    assert rules.opinion_id(hukou_task(round=1)) != rules.opinion_id(hukou_task())
    assert rules.opinion_id(hukou_task(item_code="110000000004")) != rules.opinion_id(hukou_task())


# --- which rule for which item -------------------------------------------------------------------------


BOOK = {"gaj": {"440100": {"110000000003": MATERIALS_PRESENT}, "440300": {"*": MATERIALS_PRESENT}},
        "ybj": {"440100": {"*": MATERIALS_PRESENT, "110000000006": MANUAL}}}


@pytest.mark.parametrize("department, region, item, rule", [
    ("gaj", "440100", "110000000003", MATERIALS_PRESENT),   # named
    ("gaj", "440100", "190000000001", MANUAL),              # another item of the department: an officer
    ("gaj", "440300", "190000000001", MATERIALS_PRESENT),   # every item of the department there
    ("gaj", "440106", "110000000003", MANUAL),              # another region: the data says nothing
    ("ybj", "440100", "110000000006", MANUAL),              # an item named beats "*"
    ("ybj", "440100", "110000000004", MATERIALS_PRESENT),
    ("wsjk", "440100", "110000000001", MANUAL),             # a department the data does not name
])
def test_which_rule_decides_is_data_per_department_and_region_and_an_officer_by_default(department, region, item,
                                                                                        rule):
    assert rules.rule_book(BOOK).rule_for(department, region, item) == rule


def test_one_rule_may_stand_in_for_the_data():
    book = rules.rule_book(BOOK, override=MANUAL)
    assert book.rule_for("gaj", "440100", "110000000003") == MANUAL
    assert rules.rule_book(None, override=MATERIALS_PRESENT).rule_for("wsjk", "440100", "x") == MATERIALS_PRESENT
    assert rules.rule_book(None).rule_for("wsjk", "440100", "x") == MANUAL


@pytest.mark.parametrize("data, override, words", [
    ({"gaj": {"440100": {"*": "approve_everything"}}}, "", "gaj.440100.*: 'approve_everything' is not one of"),
    ({"gaj": {"4401": {"*": MANUAL}}}, "", "gaj: '4401' is not a six-digit region code"),
    ({"gaj": ["440100"]}, "", "gaj: expected region ->"),
    ({"gaj": {"440100": [MANUAL]}}, "", "gaj.440100: expected"),
    (["gaj"], "", "expected department -> region"),
    (None, "auto", "ONETHING_DESK_RULE must be one of materials_present, manual, not 'auto'"),
])
def test_rules_data_that_names_no_rule_is_refused_naming_where(data, override, words):
    with pytest.raises(rules.RulesError) as err:
        rules.rule_book(data, override, where="rules.yaml")
    assert words in str(err.value)


def test_the_shipped_rules_file_reads_and_leaves_the_birth_certificate_to_officers():
    book = rules.rule_book(yaml.safe_load(DATA.read_text(encoding="utf-8")), where=str(DATA))
    assert book.rule_for("wsjk", "440100", "110000000001") == MANUAL            # 出生医学证明
    assert book.rule_for("gaj", "440100", "110000000003") == MANUAL             # 出生登记（落户）
    assert book.rule_for("ybj", "440100", "110000000004") == MATERIALS_PRESENT  # 医保参保登记
    assert book.rule_for("ybj", "440300", "110000000004") == MANUAL
