"""A desk's own decision on a TaskAssigned payload."""
from services.joint_review import desk_rules, domain

LIC = "1.2.156.3005.2.CSYXZM.440100WSJK.202400000001.001.X"


def material(code):
    return {"material_code": code, "object_key": f"cases/C1/{code}/u1", "sha256": "00" * 32}


def hukou_task(**changes):
    task = {"case_no": "440100XSECS202403050001", "item_code": "110000000003", "department_code": "gaj",
            "region_code": "440100", "material_codes": ["M01", "M02", "M03"], "license_inputs": ["CSYXZM"],
            "license_ids": [LIC], "materials": [material("M01"), material("M02"), material("M03"), material("M04")]}
    task.update(changes)
    return task


class Licences:
    def __init__(self, **by_id):
        self.by_id, self.asked = by_id, []

    def __call__(self, license_id):
        self.asked.append(license_id)
        return self.by_id.get(license_id)


def valid(type_code="CSYXZM"):
    return {"type_code": type_code, "status": "LICENSE_STATUS_VALID"}


def test_manual_rule_leaves_it_to_a_person():
    fetch = Licences()
    assert desk_rules.decide("manual", hukou_task(materials=[]), fetch) is None
    assert fetch.asked == []


def test_everything_present_is_approved():
    fetch = Licences(**{LIC: valid()})
    decision, reason = desk_rules.decide("materials_present", hukou_task(), fetch)
    assert decision == domain.APPROVE
    assert LIC in reason
    assert fetch.asked == [LIC]


def test_item_without_licence_inputs_is_approved_on_materials():
    task = hukou_task(license_inputs=[], license_ids=[])
    assert desk_rules.decide("materials_present", task, Licences()) == (domain.APPROVE, "materials present")


def test_payload_with_empty_lists_left_out_is_approved():
    # MessageToDict leaves out empty repeated fields
    task = {"case_no": "C1", "item_code": "110000000007", "department_code": "wsjk"}
    assert desk_rules.decide("materials_present", task, Licences()) == (domain.APPROVE, "materials present")


def test_missing_material_is_rejected_by_name():
    task = hukou_task(materials=[material("M01"), material("M02")])
    decision, reason = desk_rules.decide("materials_present", task, Licences(**{LIC: valid()}))
    assert decision == domain.REJECT
    assert "M03" in reason and "M01" not in reason and "M02" not in reason


def test_several_missing_materials_are_all_named():
    decision, reason = desk_rules.decide("materials_present", hukou_task(materials=[]), Licences())
    assert decision == domain.REJECT and reason == "materials missing: M01, M02, M03"


def test_licence_input_missing_is_rejected():
    decision, reason = desk_rules.decide("materials_present", hukou_task(license_ids=[]), Licences())
    assert decision == domain.REJECT and "CSYXZM" in reason


def test_unknown_licence_is_rejected():
    decision, reason = desk_rules.decide("materials_present", hukou_task(), Licences())
    assert decision == domain.REJECT and "CSYXZM" in reason


def test_revoked_licence_is_rejected():
    fetch = Licences(**{LIC: {"type_code": "CSYXZM", "status": "LICENSE_STATUS_REVOKED"}})
    decision, reason = desk_rules.decide("materials_present", hukou_task(), fetch)
    assert decision == domain.REJECT and "CSYXZM" in reason


def test_licence_of_another_type_does_not_count():
    fetch = Licences(**{LIC: valid("SBK")})
    decision, reason = desk_rules.decide("materials_present", hukou_task(), fetch)
    assert decision == domain.REJECT and "CSYXZM" in reason


def test_one_valid_licence_among_others_is_enough():
    other = "1.2.156.3005.2.SBK.440100RSJ.202400000001.001.Y"
    fetch = Licences(**{LIC: valid(), other: valid("SBK")})
    decision, _ = desk_rules.decide("materials_present", hukou_task(license_ids=[other, LIC]), fetch)
    assert decision == domain.APPROVE

