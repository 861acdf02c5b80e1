"""Joint review domain: the task graph of a case and how opinions and licences move it."""
import copy
import pathlib

import pytest
import yaml

from services.catalog.resolution import resolve
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.joint_review import domain

DATA = pathlib.Path(__file__).resolve().parents[2] / "catalog" / "data"
C01, C02, C03, C04, C05, C06, C07 = (f"11000000000{i}" for i in range(1, 8))
DEPT = {C01: "wsjk", C02: "jkzx", C03: "gaj", C04: "ybj", C05: "rsj", C06: "ybj", C07: "wsjk"}
NOW = "2024-03-05T08:00:00+00:00"
LATER = "2024-03-05T09:00:00+00:00"
LIC01 = "1.2.156.3005.2.CSYXZM.440100WSJK.202400000001.001.X"
LIC05 = "1.2.156.3005.2.SBK.440100RSJ.202400000001.001.Y"


@pytest.fixture(scope="module")
def package():
    departments = yaml.safe_load((DATA / "departments.yaml").read_text(encoding="utf-8"))
    pkg = yaml.safe_load((DATA / "packages" / "newborn.yaml").read_text(encoding="utf-8"))
    return resolve(pkg, "440100", departments)


@pytest.fixture
def session(package):
    s = domain.new_session("440100XSECS202403050001", "440100", package, NOW)
    domain.advance(s, NOW)
    return s


def state(session, code):
    return domain.task_of(session, code)["state"]


def approve(session, code, now=LATER):
    return domain.record_opinion(session, code, DEPT[code], domain.APPROVE, "", f"desk:{DEPT[code]}", now)


def assigned(effects):
    return [e[1]["item_code"] for e in effects if e[0] == "assign"]


# --- new session ------------------------------------------------------------------------------


def test_new_session_has_one_pending_task_per_item(package):
    s = domain.new_session("440100XSECS202403050001", "440100", package, NOW)
    assert s["status"] == domain.OPEN and s["package_code"] == "XSECS" and s["opened_at"] == NOW
    assert [t["item_code"] for t in s["tasks"]] == [C01, C02, C03, C04, C05, C06, C07]
    assert all(t["state"] == domain.PENDING for t in s["tasks"])
    t01, t03 = domain.task_of(s, C01), domain.task_of(s, C03)
    assert t01["result_type"] == domain.LICENSE and t01["license_type_code"] == "CSYXZM"
    assert t03["prerequisites"] == [C01] and t03["license_inputs"] == ["CSYXZM"]
    assert t03["material_codes"] == ["M01", "M02", "M03"] and t03["region_code"] == "440100"
    assert domain.task_of(s, C02)["result_type"] == "RESULT_TYPE_RECORD"


def test_new_session_does_not_share_lists_with_the_package(package):
    before = copy.deepcopy(package)
    s = domain.new_session("C1", "440100", package, NOW)
    domain.task_of(s, C03)["prerequisites"].append("X")
    domain.task_of(s, C03)["material_codes"].clear()
    assert package == before


def test_first_advance_assigns_items_without_prerequisites(package):
    s = domain.new_session("440100XSECS202403050001", "440100", package, NOW)
    effects = domain.advance(s, NOW)
    assert assigned(effects) == [C01, C02, C06, C07]
    assert all(e[0] == "assign" for e in effects)
    for code in (C01, C02, C06, C07):
        assert state(s, code) == domain.ASSIGNED and domain.task_of(s, code)["assigned_at"] == NOW
    for code in (C03, C04, C05):
        assert state(s, code) == domain.PENDING


def test_advance_again_assigns_nothing_new(session):
    assert domain.advance(session, LATER) == []


def test_task_of_unknown_item(session):
    with pytest.raises(NotFound, match="119999999999"):
        domain.task_of(session, "119999999999")


# --- opinions and licences -------------------------------------------------------------------


def test_licence_item_waits_for_its_licence(session):
    assert approve(session, C01) is True
    t01 = domain.task_of(session, C01)
    assert t01["state"] == domain.APPROVED and t01["decision"] == domain.APPROVE
    assert t01["decided_by"] == "desk:wsjk" and t01["decided_at"] == LATER
    assert domain.advance(session, LATER) == []
    assert state(session, C03) == domain.PENDING

    assert domain.license_issued(session, C01, LIC01) is True
    assert state(session, C01) == domain.DONE
    effects = domain.advance(session, LATER)
    assert assigned(effects) == [C03]
    assert domain.licenses_for(session, domain.task_of(session, C03)) == [LIC01]


def test_licence_issued_twice_changes_nothing(session):
    approve(session, C01)
    assert domain.license_issued(session, C01, LIC01) is True
    snapshot = copy.deepcopy(session)
    assert domain.license_issued(session, C01, LIC01) is False
    assert session == snapshot


def test_a_licence_keeps_its_type_and_document_key_for_the_results(session):
    approve(session, C01)
    assert domain.license_issued(session, C01, LIC01, "CSYXZM", f"licenses/{LIC01}.pdf") is True
    t01 = domain.task_of(session, C01)
    assert t01["license_issued_type_code"] == "CSYXZM" and t01["license_document_key"] == f"licenses/{LIC01}.pdf"
    assert domain.results(session) == [{"license_id": LIC01, "item_code": C01, "type_code": "CSYXZM",
                                        "document_key": f"licenses/{LIC01}.pdf"}]


def test_results_of_a_session_stored_with_licence_ids_only_have_no_document_key(session):
    """A session stored before the keys were kept: its tasks have license_id and nothing more."""
    run_to_the_end(session)
    domain.license_issued(session, C05, LIC05, "SBK", f"licenses/{LIC05}.pdf")
    for task in session["tasks"]:
        if task["item_code"] == C01:
            del task["license_issued_type_code"], task["license_document_key"]
    assert domain.results(session) == [
        {"license_id": LIC01, "item_code": C01, "type_code": "CSYXZM", "document_key": ""},  # the item's type
        {"license_id": LIC05, "item_code": C05, "type_code": "SBK", "document_key": f"licenses/{LIC05}.pdf"}]
    assert [r["license_id"] for r in domain.results(session)] == domain.all_licenses(session)


def test_licenses_for_only_gives_wanted_types(session):
    approve(session, C01)
    domain.license_issued(session, C01, LIC01)
    domain.advance(session, LATER)
    for code in (C03, C04):
        approve(session, code)
        domain.advance(session, LATER)
    approve(session, C05)
    domain.license_issued(session, C05, LIC05)
    assert domain.licenses_for(session, domain.task_of(session, C03)) == [LIC01]
    assert domain.licenses_for(session, domain.task_of(session, C04)) == []
    assert domain.all_licenses(session) == [LIC01, LIC05]


def test_record_item_is_done_at_once(session):
    assert approve(session, C02) is True
    assert state(session, C02) == domain.DONE


def test_wrong_department_is_denied(session):
    snapshot = copy.deepcopy(session)
    with pytest.raises(PermissionDenied) as err:
        domain.record_opinion(session, C01, "gaj", domain.APPROVE, "", "x", LATER)
    assert "wsjk" in err.value.message and "gaj" in err.value.message
    assert session == snapshot


def test_redelivered_same_decision_returns_false_and_changes_nothing(session):
    assert approve(session, C02) is True
    snapshot = copy.deepcopy(session)
    assert domain.record_opinion(session, C02, "jkzx", domain.APPROVE, "", "other", "2030-01-01") is False
    assert session == snapshot


def test_different_decision_after_one_was_recorded_is_refused(session):
    approve(session, C02)
    with pytest.raises(FailedPrecondition, match="done"):
        domain.record_opinion(session, C02, "jkzx", domain.REJECT, "late change of mind", "x", LATER)
    assert domain.task_of(session, C02)["decision"] == domain.APPROVE


def test_opinion_on_a_pending_task_is_refused(session):
    with pytest.raises(FailedPrecondition, match="pending"):
        domain.record_opinion(session, C03, "gaj", domain.APPROVE, "", "x", LATER)


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_reject_needs_a_reason(session, reason):
    snapshot = copy.deepcopy(session)
    with pytest.raises(InvalidArgument, match="reason"):
        domain.record_opinion(session, C02, "jkzx", domain.REJECT, reason, "x", LATER)
    assert session == snapshot


@pytest.mark.parametrize("decision", [domain.RECTIFY, "DECISION_UNSPECIFIED", "approve", ""])
def test_other_decisions_are_invalid(session, decision):
    with pytest.raises(InvalidArgument):
        domain.record_opinion(session, C02, "jkzx", decision, "why", "x", LATER)
    assert state(session, C02) == domain.ASSIGNED


# --- conclusion -------------------------------------------------------------------------------


def test_rejection_concludes_rejected_and_closes_open_tasks(session):
    approve(session, C02)
    approve(session, C01)  # APPROVED, waiting for its licence
    assert domain.record_opinion(session, C06, "ybj", domain.REJECT, "银行卡户名与母亲姓名不符", "张科员", LATER)
    effects = domain.advance(session, LATER)
    assert effects == [("conclude", False, "生育医疗费用报销: 银行卡户名与母亲姓名不符")]
    assert session["status"] == domain.S_REJECTED and session["concluded_at"] == LATER
    assert state(session, C06) == domain.REJECTED
    assert state(session, C02) == domain.DONE
    for code in (C01, C03, C04, C05, C07):
        assert state(session, code) == domain.CLOSED
    assert domain.advance(session, "later still") == []


def test_opinion_after_conclusion_is_refused(session):
    domain.record_opinion(session, C06, "ybj", domain.REJECT, "no", "x", LATER)
    domain.advance(session, LATER)
    with pytest.raises(FailedPrecondition):
        approve(session, C07)


def run_to_the_end(session):
    approve(session, C01)
    domain.license_issued(session, C01, LIC01)
    effects = domain.advance(session, LATER)
    for code in (C02, C06, C07, C03, C04):
        approve(session, code)
        effects += domain.advance(session, LATER)
    approve(session, C05)
    effects += domain.advance(session, LATER)
    return effects


def test_all_done_concludes_approved_once(session):
    effects = run_to_the_end(session)
    assert assigned(effects) == [C03, C04, C05]
    assert not any(e[0] == "conclude" for e in effects)          # 05 still waits for its licence
    assert session["status"] == domain.OPEN

    domain.license_issued(session, C05, LIC05)
    final = domain.advance(session, "2024-03-06T00:00:00+00:00")
    assert final == [("conclude", True, "all departments approved")]
    assert session["status"] == domain.S_APPROVED
    assert session["concluded_at"] == "2024-03-06T00:00:00+00:00"
    assert all(t["state"] == domain.DONE for t in session["tasks"])
    assert domain.advance(session, "2024-03-07T00:00:00+00:00") == []
    assert session["concluded_at"] == "2024-03-06T00:00:00+00:00"


def test_rejected_optional_item_does_not_reject_the_case(package):
    pkg = copy.deepcopy(package)
    next(i for i in pkg["items"] if i["code"] == C07)["optional"] = True
    s = domain.new_session("C2", "440100", pkg, NOW)
    domain.advance(s, NOW)
    domain.record_opinion(s, C07, "wsjk", domain.REJECT, "不需要", "x", LATER)
    assert domain.advance(s, LATER) == []
    assert s["status"] == domain.OPEN
    assert state(s, C01) == domain.ASSIGNED
    approve(s, C01)
    domain.license_issued(s, C01, LIC01)
    domain.advance(s, LATER)
    for code in (C02, C06, C03, C04, C05):
        approve(s, code)
        domain.advance(s, LATER)
    domain.license_issued(s, C05, LIC05)
    assert domain.advance(s, LATER) == [("conclude", True, "all departments approved")]
    assert state(s, C07) == domain.REJECTED


def test_materials_present():
    assert domain.materials_present(["M01", "M02"], {"M01", "M02", "M03"}) == (True, [])
    assert domain.materials_present(["M01", "M02", "M03"], {"M02"}) == (False, ["M01", "M03"])
    assert domain.materials_present([], set()) == (True, [])


def test_rejected_optional_item_closes_what_depends_on_it_and_the_case_still_concludes():
    from services.joint_review import domain as d
    pkg = {"code": "P", "items": [
        {"code": "A", "name": "可选事项", "department_code": "x", "optional": True},
        {"code": "B", "name": "后续事项", "department_code": "y", "prerequisites": ["A"]},
        {"code": "C", "name": "并行事项", "department_code": "z"}]}
    s = d.new_session("N1", "440100", pkg, "2025-10-09T10:00:00+08:00")
    d.advance(s, "2025-10-09T10:00:00+08:00")
    d.record_opinion(s, "A", "x", d.REJECT, "不符合条件", "o", "2025-10-09T11:00:00+08:00")
    d.record_opinion(s, "C", "z", d.APPROVE, "", "o", "2025-10-09T11:00:00+08:00")
    effects = d.advance(s, "2025-10-09T11:00:00+08:00")
    states = {t["item_code"]: t["state"] for t in s["tasks"]}
    assert states == {"A": d.REJECTED, "B": d.CLOSED, "C": d.DONE}
    assert effects == [("conclude", True, "all departments approved")]


# --- whose record: holder parties, issuers, what a result supersedes ------------------------------

BUYER = {"role": "buyer", "name": "买方甲", "id_number": "440106199001011238", "code_type": "111"}
SELLER = {"role": "seller", "name": "卖方乙", "id_number": "440106198002021233", "code_type": "111"}
TRANSFER = "160000000002"


@pytest.fixture(scope="module")
def house():
    """二手房 in 广州 with the city's implementing bodies (the catalog's full resolution)."""
    from services.catalog.definitions import build_definitions
    from services.catalog.store import read_catalog
    return resolve(build_definitions(read_catalog(str(DATA)))["ESFGH"], "440100", {})


def test_a_transfer_is_issued_to_the_buyer_by_the_implementing_body_and_supersedes_the_sellers(house):
    materials = [{"material_code": "H02", "license_id": "LIC-SELLER"}, {"material_code": "H03", "object_key": "k"}]
    s = domain.new_session("440100ESFGH202611270001", "440100", house, NOW, materials)
    task = domain.task_of(s, TRANSFER)
    assert task["holder_party"] == "buyer" and task["issuer_name"] == "广州市规划和自然资源局"
    assert task["supersedes"] == {"party": "seller", "license_type_code": "BDCQZ", "license_ids": ["LIC-SELLER"]}
    case = {"applicant": {"id_number": "440106197003031236", "name": "代理人丙"}, "parties": [BUYER, SELLER]}
    out = domain.licence_recipient(task, case)
    assert out["holder"] == BUYER and out["issuer_name"] == "广州市规划和自然资源局"
    assert out["supersedes"] == {"holder_code": SELLER["id_number"], "license_type_code": "BDCQZ",
                                 "license_ids": ["LIC-SELLER"], "party": "seller"}


def test_a_paper_certificate_names_no_licence_to_supersede(house):
    s = domain.new_session("440100ESFGH202611270002", "440100", house, NOW,
                           [{"material_code": "H02", "object_key": "k"}])
    assert domain.task_of(s, TRANSFER)["supersedes"]["license_ids"] == []
    assert domain.task_of(s, "160000000001")["supersedes"] is None  # a record supersedes nothing


def test_results_of_a_session_opened_before_parties_go_to_the_applicant(session):
    task = dict(domain.task_of(session, C01))
    task.pop("holder_party")
    out = domain.licence_recipient(task, {"applicant": {"id_number": "11010519491231002X", "name": "张三"}})
    assert out["holder"] == {"role": "applicant", "name": "张三", "id_number": "11010519491231002X",
                             "code_type": "111"}
    assert "supersedes" not in out


def test_a_holder_party_the_case_does_not_name_gives_a_holder_without_number(session):
    """elicense refuses such an opinion (dead letter) rather than issue it to someone else."""
    out = domain.licence_recipient(domain.task_of(session, C01), {"applicant": {"id_number": "11010519491231002X"}})
    assert out["holder"] == {"role": "newborn"}
