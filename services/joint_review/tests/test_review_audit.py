"""What joint_review writes to its audit log (the in-memory fake of the port): officers' and desks'
decisions, claims, clocks, inspections and staff reads, each with its actor; refusals with their
status; applicants' and anonymous reads not at all. And no personal data in what it logs."""
import json
import logging

import pytest
from test_review_handlers import APPLICANT, C01, C02, C03, CASE_NO, REGION, bus, package, review, store, submitted  # noqa: F401

from services.common import audit
from services.common.auth import Actor
from services.common.errors import FailedPrecondition, PermissionDenied
from services.common.privacy import contains_personal_data
from services.joint_review import domain

OFFICER = Actor("officer-7", "officer", "jkzx", REGION)
DESK = audit.AuditActor(f"desk:wsjk:{REGION}", "service", "wsjk", REGION, auth=audit.SERVICE)


def records(review, action=None):
    return [r for r in review.audit.records if action is None or r["action"] == action]


def test_an_officers_claim_and_opinion_are_recorded_with_the_actor_from_the_token(review, package):
    review.open_session(submitted(package))
    review.claim(CASE_NO, C02, "jkzx", OFFICER.sub, actor=OFFICER)
    review.record_opinion(CASE_NO, C02, "jkzx", domain.APPROVE, "材料齐全", OFFICER.sub, actor=OFFICER)
    claim, opinion = records(review)
    assert (claim["action"], claim["target"], claim["outcome"]) == ("task.claim", CASE_NO, "ok")
    assert claim["details"] == {"item_code": C02, "department_code": "jkzx"}
    assert opinion["action"] == "opinion.record" and opinion["outcome"] == "ok"
    assert opinion["actor"] == {"sub": "officer-7", "role": "officer", "department": "jkzx", "region": REGION,
                                "on_behalf_of": "", "auth": "token"}
    # the decision as the audit log has always spelt it (the proto name), not the domain's enum value
    assert opinion["details"] == {"item_code": C02, "department_code": "jkzx", "decision": "DECISION_APPROVE",
                                  "material_codes": []}
    assert "材料齐全" not in json.dumps(opinion, ensure_ascii=False)  # free text stays with the task
    assert review.audit.verify() is None


def test_a_desks_decision_is_recorded_as_the_desk(review, package):
    review.open_session(submitted(package))
    review.record_opinion(CASE_NO, C01, "wsjk", domain.APPROVE, "materials present", DESK.sub, actor=DESK)
    [rec] = records(review, "opinion.record")
    assert rec["actor"]["sub"] == f"desk:wsjk:{REGION}" and rec["actor"]["auth"] == "service"


def test_refusals_are_recorded_with_their_status(review, package):
    review.open_session(submitted(package))
    with pytest.raises(PermissionDenied):
        review.record_opinion(CASE_NO, C01, "jkzx", domain.APPROVE, "", OFFICER.sub, actor=OFFICER)
    with pytest.raises(FailedPrecondition):
        review.claim(CASE_NO, C03, "gaj", "officer-9", actor=Actor("officer-9", "officer", "gaj", REGION))
    with pytest.raises(FailedPrecondition):
        review.schedule_inspection(CASE_NO, "wsjk", "2026-12-01T09:00", "天河路100号", "officer-1",
                                   actor=Actor("officer-1", "officer", "wsjk", REGION))
    assert [(r["action"], r["outcome"]) for r in records(review)] == [
        ("opinion.record", "PERMISSION_DENIED"), ("task.claim", "FAILED_PRECONDITION"),
        ("inspection.schedule", "FAILED_PRECONDITION")]
    assert "天河路" not in json.dumps(review.audit.records, ensure_ascii=False)  # the place is an address


def test_clock_suspension_and_resumption_are_recorded(review, package):
    review.open_session(submitted(package))
    review.suspend_clock(CASE_NO, C02, "jkzx", "HEARING", actor=OFFICER)
    review.resume_clock(CASE_NO, C02, "jkzx", actor=OFFICER)
    assert [(r["action"], r["details"].get("reason")) for r in records(review)] == [
        ("clock.suspend", "HEARING"), ("clock.resume", None)]


def test_staff_reads_are_recorded_and_applicants_and_internal_reads_are_not(review, package):
    review.open_session(submitted(package))
    review.open_session(submitted(package, case_no="440100XSECS202403050002"))
    review.get_session(CASE_NO, actor=OFFICER)
    review.get_session(CASE_NO)  # the api's own look-up (region check): not a person's read
    review.get_session(CASE_NO, actor=Actor(APPLICANT["id_number"], "applicant"))
    review.list_tasks("wsjk", REGION, actor=Actor("officer-8", "officer", "wsjk", REGION))
    read, listed = records(review)
    assert (read["action"], read["target"], read["actor"]["sub"]) == ("session.read", CASE_NO, "officer-7")
    assert listed["action"] == "tasks.list" and listed["details"]["case_nos"] == [
        CASE_NO, "440100XSECS202403050002"]
    with pytest.raises(Exception):
        review.get_session("NOCASE", actor=OFFICER)
    assert records(review)[-1]["outcome"] == "NOT_FOUND"


def test_handlers_log_no_identity_numbers_or_phones(review, package, caplog):
    caplog.set_level(logging.DEBUG)
    review.open_session(submitted(package))
    for item, dept in ((C01, "wsjk"), (C02, "jkzx")):
        review.record_opinion(CASE_NO, item, dept, domain.APPROVE, "", f"desk:{dept}:{REGION}")
    review.record_opinion(CASE_NO, "110000000006", "ybj", domain.RECTIFY, "看不清", "officer-3", ["M04"])
    with pytest.raises(PermissionDenied) as refused:
        review.record_opinion(CASE_NO, C01, "gaj", domain.APPROVE, "", "x")
    assert not contains_personal_data(str(refused.value))
    assert APPLICANT["id_number"] and not contains_personal_data(caplog.text)
    assert not contains_personal_data(json.dumps(review.audit.records, ensure_ascii=False))


def test_a_listing_by_state_records_the_state_as_the_audit_log_has_always_spelt_it(review, package):
    review.open_session(submitted(package))
    tasks, _ = review.list_tasks("wsjk", REGION, domain.ASSIGNED, actor=Actor("officer-8", "officer", "wsjk", REGION))
    assert {t["item_code"] for t in tasks} == {C01, "110000000007"}
    [listed] = records(review, "tasks.list")
    assert listed["details"]["state"] == "TASK_STATE_ASSIGNED" and listed["details"]["case_nos"] == [CASE_NO]
    review.list_tasks("wsjk", REGION, actor=Actor("officer-8", "officer", "wsjk", REGION))
    assert records(review, "tasks.list")[-1]["details"]["state"] == ""
