"""JointReview use cases over the in-memory store and a RecordingBus (no MongoDB, no broker)."""
import json
import pathlib

import pytest
import yaml

from onething.elicense.v1 import events_pb2 as license_events
from onething.intake.v1 import events_pb2 as intake_events
from onething.joint_review.v1 import events_pb2 as review_events
from services.catalog.resolution import resolve
from services.common.bus import RecordingBus
from services.common.errors import InvalidArgument, NotFound, PermissionDenied
from services.common.events import from_payload, to_payload
from services.elicense.domain import identifier_valid, license_identifier
from services.intake.domain import package_snapshot
from services.joint_review import domain, handlers
from services.joint_review.domain import Conflict
from services.joint_review.fakes import FakeSessionStore
from services.joint_review.worker import case_submitted

DATA = pathlib.Path(__file__).resolve().parents[2] / "catalog" / "data"
REGION = "440100"
CASE_NO = "440100XSECS202403050001"
C01, C02, C03, C04, C05, C06, C07 = (f"11000000000{i}" for i in range(1, 8))
DEPT = {C01: "wsjk", C02: "jkzx", C03: "gaj", C04: "ybj", C05: "rsj", C06: "ybj", C07: "wsjk"}
APPLICANT = {"id_number": "11010519491231002X", "name": "张三", "phone": "13800000000"}
NEWBORN = {"role": "newborn", "name": "张小宝", "id_number": "440106202611200014", "code_type": "111"}
LIC01 = license_identifier("CSYXZM", "440100WSJK", "202400000001")
LIC05 = license_identifier("SBK", "440100RSJ", "202400000001")


@pytest.fixture
def bus():
    return RecordingBus("joint_review")


@pytest.fixture
def store(bus):
    """The one in-memory fake of the store (services/joint_review/fakes.py), publishing on `bus`."""
    return FakeSessionStore(bus)


@pytest.fixture
def review(store):
    return handlers.JointReview(store, site=REGION)


@pytest.fixture(scope="module")
def package():
    departments = yaml.safe_load((DATA / "departments.yaml").read_text(encoding="utf-8"))
    pkg = yaml.safe_load((DATA / "packages" / "newborn.yaml").read_text(encoding="utf-8"))
    return resolve(pkg, REGION, departments)


def submitted_event(package, case_no=CASE_NO):
    """case_submitted as intake sends it, with the snapshot intake takes of the catalog's package
    (services.intake.domain.package_snapshot)."""
    materials = [{"material_code": c, "name": n, "object_key": f"cases/{case_no}/{c}/u{c}", "sha256": "ab" * 32,
                  "size": 1024, "content_type": "application/pdf"}
                 for c, n in (("M01", "父母居民身份证"), ("M02", "居民户口簿"), ("M03", "结婚证"), ("M04", "母亲银行卡"))]
    return from_payload(intake_events.CaseSubmitted, {
        "case_no": case_no, "region_code": REGION, "applicant": APPLICANT,
        "package_snapshot": package_snapshot(package),
        "materials": materials, "delivery": {"channel": "DELIVERY_CHANNEL_ELECTRONIC"}, "parties": [NEWBORN]})


def submitted(package, case_no=CASE_NO):
    """The submitted case as the worker decodes case_submitted (worker.case_submitted): what
    open_session takes."""
    return case_submitted(to_payload(submitted_event(package, case_no)))


def issued(item_code, license_id, case_no=CASE_NO, type_code="", document_key=""):
    return license_events.LicenseIssued(license_id=license_id, case_no=case_no, item_code=item_code,
                                        type_code=type_code, document_key=document_key)


def doc_key(license_id):
    return f"licenses/{license_id}.pdf"


def approve(review, code, case_no=CASE_NO):
    return review.record_opinion(case_no, code, DEPT[code], domain.APPROVE, "", f"desk:{DEPT[code]}:{REGION}")


def assigned_items(bus, start=0):
    return [p["item_code"] for t, p, _ in bus.published[start:] if t.startswith("task_assigned.")]


# --- open_session -----------------------------------------------------------------------------


def test_open_session_assigns_first_tasks_to_their_desks(review, store, bus, package):
    session = review.open_session(submitted(package))
    assert session["status"] == domain.OPEN
    assert bus.types() == [f"task_assigned.wsjk.{REGION}", f"task_assigned.jkzx.{REGION}",
                           f"task_assigned.ybj.{REGION}", f"task_assigned.wsjk.{REGION}", "tasks_assigned",
                           "session_opened"]
    assert assigned_items(bus) == [C01, C02, C06, C07]
    holders = bus.published[-2][1]  # who takes part, once: intake lets their officers read the case
    assert holders == {"case_no": CASE_NO, "holders": [{"department_code": d, "region_code": REGION}
                                                       for d in ("wsjk", "jkzx", "ybj")]}
    opened = bus.published[-1][1]  # intake moves the case to IN_REVIEW on it
    assert opened["case_no"] == CASE_NO and opened["region_code"] == REGION and opened["package_code"] == "XSECS"
    assert len(opened["item_codes"]) == 7 and set(opened["department_codes"]) == {"wsjk", "jkzx", "gaj", "ybj", "rsj"}
    assert all(headers["case_no"] == CASE_NO and headers["event_id"] for _, _, headers in bus.published)
    assert store.docs[CASE_NO]["outbox"] == []


def test_task_assigned_payload_carries_what_the_desk_needs(review, bus, package):
    review.open_session(submitted(package))
    payload = bus.published[0][1]
    assert payload["case_no"] == CASE_NO and payload["item_code"] == C01
    assert payload["item_name"] == "出生医学证明签发" and payload["department_code"] == "wsjk"
    assert payload["region_code"] == REGION and payload["material_codes"] == ["M01"]
    # only the materials this department reviews, and nothing of the applicant's record
    assert [m["material_code"] for m in payload["materials"]] == ["M01"]
    assert "applicant" not in payload
    text = json.dumps(bus.published, ensure_ascii=False)
    for event_type, body, _ in bus.published:
        if event_type.startswith("task_assigned."):
            assert set(body) <= {"case_no", "item_code", "item_name", "department_code", "region_code",
                                 "material_codes", "materials", "license_ids", "license_inputs", "inspection",
                                 "round", "site", "licenses"}
            assert body["site"] == REGION  # where the desk's opinion goes back to
            assert {m["material_code"] for m in body.get("materials", [])} <= set(body["material_codes"])
    assert APPLICANT["id_number"] not in text and APPLICANT["phone"] not in text and APPLICANT["name"] not in text
    assert "license_ids" not in payload and "licenses" not in payload  # nothing issued yet


def test_open_session_is_idempotent(review, store, bus, package):
    first = review.open_session(submitted(package))
    count = len(bus.published)
    again = review.open_session(submitted(package))
    assert len(bus.published) == count
    assert again == first
    assert store.docs[CASE_NO]["version"] == 0


def test_routing_key_shape():
    assert handlers.task_routing_key("gaj", "440100") == "task_assigned.gaj.440100"


def test_list_tasks_by_department_and_region(review, package):
    review.open_session(submitted(package))
    review.open_session(submitted(package, case_no="440100XSECS202403050002"))
    tasks, token = review.list_tasks("wsjk", REGION)
    assert token == ""  # one page
    assert sorted((t["case_no"], t["item_code"]) for t in tasks) == [
        (CASE_NO, C01), (CASE_NO, C07), ("440100XSECS202403050002", C01), ("440100XSECS202403050002", C07)]
    assert review.list_tasks("wsjk", "440300") == ([], "")
    assert [t["item_code"] for t in review.list_tasks("gaj", REGION, domain.PENDING)[0]] == [C03, C03]


def test_a_departments_list_comes_in_pages_of_whole_cases(review, package, all_tasks):
    numbers = [CASE_NO, "440100XSECS202403050002", "440100XSECS202403050003"]
    for no in reversed(numbers):
        review.open_session(submitted(package, case_no=no))
    everything = [(t["case_no"], t["item_code"]) for t in review.list_tasks("wsjk", REGION)[0]]
    assert everything == [(no, item) for no in sorted(numbers) for item in (C01, C07)]  # case order
    first, token = review.list_tasks("wsjk", REGION, page_size=1)  # a case's two tasks stay together
    assert [(t["case_no"], t["item_code"]) for t in first] == everything[:2] and token
    second, token = review.list_tasks("wsjk", REGION, page_size=3, page_token=token)
    assert [(t["case_no"], t["item_code"]) for t in second] == everything[2:4] and token
    last, token = review.list_tasks("wsjk", REGION, page_size=4, page_token=token)
    assert [(t["case_no"], t["item_code"]) for t in last] == everything[4:] and token == ""
    assert [(t["case_no"], t["item_code"]) for t in all_tasks(review, "wsjk", REGION, page_size=2)] == everything


@pytest.mark.parametrize("page_size, page_token, words", [
    (-1, "", "page_size cannot be negative"),
    (0, "not-a-token", "page_token is not one this service gave out"),
    (0, "eyJhZnRlciI6IDV9", "page_token is not one this service gave out"),  # {"after": 5}
])
def test_a_bad_page_is_refused_and_nothing_is_listed(review, package, page_size, page_token, words):
    review.open_session(submitted(package))
    before = len(review.audit.records)
    with pytest.raises(InvalidArgument, match=words):
        review.list_tasks("wsjk", REGION, page_size=page_size, page_token=page_token)
    assert len(review.audit.records) == before


def test_get_session_of_unknown_case(review):
    with pytest.raises(NotFound, match="NOCASE"):
        review.get_session("NOCASE")
    with pytest.raises(NotFound):
        approve(review, C01, case_no="NOCASE")


# --- opinions ---------------------------------------------------------------------------------


def test_opinion_on_a_record_carries_no_personal_data(review, bus, package):
    review.open_session(submitted(package))
    start = len(bus.published)
    task = approve(review, C02)
    assert task["state"] == domain.DONE and task["case_no"] == CASE_NO
    assert bus.types()[start:] == ["opinion_recorded"]
    payload = bus.published[start][1]
    assert payload["decision"] == "DECISION_APPROVE" and payload["item_code"] == C02
    assert payload["department_code"] == "jkzx" and payload["result_type"] == "RESULT_TYPE_RECORD"
    assert "applicant" not in payload and "holder" not in payload  # elicense issues nothing for a record


def test_approved_licence_opinion_names_its_holder_party_and_issuer(review, bus, package):
    """出生医学证明 is the newborn's: the opinion carries the newborn (with its code type) and the
    issuer's name from the package snapshot, not the applicant."""
    review.open_session(submitted(package))
    start = len(bus.published)
    approve(review, C01)
    payload = bus.published[start][1]
    assert payload["holder"] == NEWBORN
    assert payload["issuer_name"] == "卫生健康委员会"   # no implementing body in this bare resolution: the department
    assert "supersedes" not in payload and "applicant" not in payload
    assert APPLICANT["id_number"] not in str(payload)


def test_rejected_licence_opinion_names_no_holder(review, bus, package):
    review.open_session(submitted(package))
    start = len(bus.published)
    review.record_opinion(CASE_NO, C01, "wsjk", domain.REJECT, "出生信息不符", "desk:wsjk:440100")
    payload = next(p for t, p, _ in bus.published[start:] if t == "opinion_recorded")
    assert "holder" not in payload and "issuer_name" not in payload


def test_redelivered_opinion_publishes_nothing(review, store, bus, package):
    review.open_session(submitted(package))
    approve(review, C02)
    count, version = len(bus.published), store.docs[CASE_NO]["version"]
    approve(review, C02)
    assert len(bus.published) == count
    assert store.docs[CASE_NO]["version"] == version


def test_opinion_from_the_wrong_department_is_denied(review, store, bus, package):
    review.open_session(submitted(package))
    count = len(bus.published)
    with pytest.raises(PermissionDenied):
        review.record_opinion(CASE_NO, C01, "gaj", domain.APPROVE, "", "x")
    assert len(bus.published) == count and store.docs[CASE_NO]["version"] == 0


def test_licence_unlocks_the_next_item_with_the_licence(review, bus, package):
    review.open_session(submitted(package))
    start = len(bus.published)
    assert approve(review, C01)["state"] == domain.APPROVED
    assert assigned_items(bus, start) == []
    review.license_issued(issued(C01, LIC01))
    assigned = [(t, p) for t, p, _ in bus.published[start:] if t.startswith("task_assigned.")]
    assert [t for t, _ in assigned] == [f"task_assigned.gaj.{REGION}"]
    assert assigned[0][1]["item_code"] == C03 and assigned[0][1]["license_ids"] == [LIC01]
    assert assigned[0][1]["license_inputs"] == ["CSYXZM"]


def test_full_run_concludes_approved_once_with_both_licences(review, bus, package):
    review.open_session(submitted(package))
    approve(review, C01)
    review.license_issued(issued(C01, LIC01))
    for code in (C02, C06, C07, C03, C04):
        approve(review, code)
    approve(review, C05)
    assert "case_concluded" not in bus.types()
    review.license_issued(issued(C05, LIC05))
    # redeliveries after the end change nothing
    review.license_issued(issued(C05, LIC05))
    approve(review, C04)

    concluded = [p for t, p, _ in bus.published if t == "case_concluded"]
    assert len(concluded) == 1
    assert concluded[0]["approved"] is True
    assert concluded[0]["license_ids"] == [LIC01, LIC05]
    assert all(identifier_valid(i) for i in concluded[0]["license_ids"])
    assert concluded[0]["package_code"] == "XSECS" and concluded[0]["region_code"] == REGION
    assert concluded[0]["delivery"]["channel"] == "DELIVERY_CHANNEL_ELECTRONIC"
    assert concluded[0]["applicant"]["id_number"] == APPLICANT["id_number"]
    assert assigned_items(bus) == [C01, C02, C06, C07, C03, C04, C05]
    assert bus.types().count("opinion_recorded") == 7
    assert review.get_session(CASE_NO)["status"] == domain.S_APPROVED


def run_with_keys(review, package, before_last=None):
    """A case to its approval, elicense's license_issued events carrying type and document key;
    `before_last(review)` runs before the last licence arrives."""
    review.open_session(submitted(package))
    approve(review, C01)
    review.license_issued(issued(C01, LIC01, type_code="CSYXZM", document_key=doc_key(LIC01)))
    for code in (C02, C06, C07, C03, C04, C05):
        approve(review, code)
    if before_last:
        before_last(review)
    review.license_issued(issued(C05, LIC05, type_code="SBK", document_key=doc_key(LIC05)))


def test_case_concluded_carries_the_results_with_their_document_keys(review, bus, package):
    run_with_keys(review, package)
    [concluded] = [p for t, p, _ in bus.published if t == "case_concluded"]
    assert concluded["license_ids"] == [LIC01, LIC05]
    assert concluded["results"] == [  # one per licence id, in their order
        {"license_id": LIC01, "item_code": C01, "type_code": "CSYXZM", "document_key": doc_key(LIC01)},
        {"license_id": LIC05, "item_code": C05, "type_code": "SBK", "document_key": doc_key(LIC05)}]


def test_a_session_stored_before_the_keys_concludes_with_results_without_keys(review, store, bus, package):
    def stored_by_the_earlier_version(review):
        for task in store.docs[CASE_NO]["body"]["tasks"]:  # what an earlier version stored: the id alone
            task.pop("license_issued_type_code", None)
            task.pop("license_document_key", None)
        store.recent_copies.drop(CASE_NO)  # stored before this process ran: it has no copy of it

    run_with_keys(review, package, before_last=stored_by_the_earlier_version)
    [concluded] = [from_payload(review_events.CaseConcluded, p) for t, p, _ in bus.published
                   if t == "case_concluded"]
    assert [(r.license_id, r.item_code, r.type_code, r.document_key) for r in concluded.results] == [
        (LIC01, C01, "CSYXZM", ""),            # stored with its id only: delivery asks elicense for it
        (LIC05, C05, "SBK", doc_key(LIC05))]   # issued after the upgrade: its key is there
    assert list(concluded.license_ids) == [LIC01, LIC05]


def test_rejection_concludes_the_case_rejected(review, bus, package):
    review.open_session(submitted(package))
    review.record_opinion(CASE_NO, C06, "ybj", domain.REJECT, "银行卡户名不符", "李科员")
    concluded = [p for t, p, _ in bus.published if t == "case_concluded"]
    assert len(concluded) == 1
    assert concluded[0].get("approved", False) is False
    assert "银行卡户名不符" in concluded[0]["reason"]
    session = review.get_session(CASE_NO)
    assert session["status"] == domain.S_REJECTED
    assert domain.task_of(session, C01)["state"] == domain.CLOSED


# --- concurrency ------------------------------------------------------------------------------


def test_conflict_on_save_is_retried_without_losing_the_other_write(review, store, bus, package):
    review.open_session(submitted(package))
    real_save = store.save
    raced = []

    def racing_save(body, version, outbox):
        if not raced:
            raced.append(True)
            store.save = real_save
            approve(review, C07)  # another desk gets in first and bumps the version
            store.save = racing_save
        return real_save(body, version, outbox)

    store.save = racing_save
    start = len(bus.published)
    task = approve(review, C02)
    assert task["state"] == domain.DONE
    session = review.get_session(CASE_NO)
    assert domain.task_of(session, C02)["state"] == domain.DONE
    assert domain.task_of(session, C07)["state"] == domain.DONE  # not overwritten by the retry
    assert store.docs[CASE_NO]["version"] == 2
    opinions = [p["item_code"] for t, p, _ in bus.published[start:] if t == "opinion_recorded"]
    assert sorted(opinions) == [C02, C07]  # one each: the lost attempt's event was not kept


def test_save_that_always_conflicts_gives_up(review, store, package):
    review.open_session(submitted(package))

    def always_conflict(body, version, outbox):
        store.saves += 1
        raise Conflict(body["case_no"])

    store.save = always_conflict
    with pytest.raises(RuntimeError, match="kept changing"):
        approve(review, C02)
    assert store.saves == 20
    assert domain.task_of(review.get_session(CASE_NO), C02)["state"] == domain.ASSIGNED



def test_a_withdrawal_that_overtakes_the_submission_keeps_the_case_from_opening(review, bus, package):
    review.case_withdrawn(intake_events.CaseWithdrawn(case_no="W1", region_code="440100"))
    session = review.open_session(submitted(package, "W1"))
    assert session["status"] == domain.S_WITHDRAWN and session["tasks"] == []
    assert not [t for t in bus.types() if t.startswith("task_assigned")]


# --- withdrawal against conclusion: joint_review decides, the loser is compensated -------------


def withdrawn(case_no=CASE_NO, reason="不再办理"):
    return intake_events.CaseWithdrawn(case_no=case_no, reason=reason, region_code=REGION)


def sent(bus, kind, start=0):
    return [p for t, p, _ in bus.published[start:] if t == kind]


def run_to_approval(review, package):
    review.open_session(submitted(package))
    approve(review, C01)
    review.license_issued(issued(C01, LIC01))
    for code in (C02, C06, C07, C03, C04, C05):
        approve(review, code)
    review.license_issued(issued(C05, LIC05))
    assert review.get_session(CASE_NO)["status"] == domain.S_APPROVED


def test_a_withdrawal_while_open_closes_the_session_and_names_the_licences_issued_so_far(review, bus, package):
    review.open_session(submitted(package))
    approve(review, C01)
    review.license_issued(issued(C01, LIC01))
    session = review.case_withdrawn(withdrawn())
    assert session["status"] == domain.S_WITHDRAWN and not session.get("withdrawn_after")
    [event] = sent(bus, "session_withdrawn")
    assert event["license_ids"] == [LIC01] and not event.get("after_conclusion") and event["reason"] == "不再办理"
    count = len(bus.published)
    review.case_withdrawn(withdrawn())  # redelivered
    assert len(bus.published) == count
    with pytest.raises(Exception, match="closed, not waiting"):
        approve(review, C02)
    assert "case_concluded" not in bus.types()


@pytest.mark.parametrize("conclusion", [domain.S_APPROVED, domain.S_REJECTED])
def test_a_withdrawal_after_the_conclusion_wins_and_makes_the_conclusion_void(review, store, bus, package, conclusion):
    if conclusion == domain.S_APPROVED:
        run_to_approval(review, package)
    else:
        review.open_session(submitted(package))
        approve(review, C01)
        review.license_issued(issued(C01, LIC01))
        review.record_opinion(CASE_NO, C06, "ybj", domain.REJECT, "银行卡户名不符", "李科员")
    assert len(sent(bus, "case_concluded")) == 1
    version = store.docs[CASE_NO]["version"]
    session = review.case_withdrawn(withdrawn())
    assert session["status"] == domain.S_WITHDRAWN and session["withdrawn_after"] == conclusion
    assert store.docs[CASE_NO]["version"] == version + 1  # decided by one compare-and-set on the session
    [event] = sent(bus, "session_withdrawn")
    assert event["after_conclusion"] is True and event["overridden"] == {
        domain.S_APPROVED: "SESSION_STATUS_APPROVED", domain.S_REJECTED: "SESSION_STATUS_REJECTED"}[conclusion]
    assert event["license_ids"] == ([LIC01, LIC05] if conclusion == domain.S_APPROVED else [LIC01])
    count = len(bus.published)
    review.case_withdrawn(withdrawn())
    review.license_issued(issued(C01, LIC01))
    assert len(bus.published) == count and len(sent(bus, "case_concluded")) == 1


def test_a_licence_issued_after_the_withdrawal_is_named_for_revocation_once(review, bus, package):
    review.open_session(submitted(package))
    approve(review, C01)  # the opinion is out; elicense issues the licence after the withdrawal
    review.case_withdrawn(withdrawn())
    start = len(bus.published)
    review.license_issued(issued(C01, LIC01))
    [late] = sent(bus, "session_withdrawn", start)
    assert late["license_ids"] == [LIC01] and not late.get("after_conclusion")
    review.license_issued(issued(C01, LIC01))  # redelivered
    assert len(sent(bus, "session_withdrawn", start)) == 1
    assert not [t for t in bus.types()[start:] if t.startswith("task_assigned")]


def test_a_withdrawal_that_overtakes_the_submission_is_announced_once(review, bus, package):
    review.case_withdrawn(withdrawn("W2"))
    review.case_withdrawn(withdrawn("W2"))
    review.open_session(submitted(package, "W2"))
    [event] = sent(bus, "session_withdrawn")
    assert event["case_no"] == "W2" and not event.get("license_ids") and not event.get("after_conclusion")
    assert "session_opened" not in bus.types()


def test_a_withdrawal_racing_the_opening_withdraws_the_opened_session(review, store, bus, package):
    """The withdrawal finds no session, the submission opens one meanwhile: the withdrawal is not lost."""
    real_load = store.load
    calls = []

    def load(case_no):
        calls.append(case_no)
        if len(calls) == 1:
            review.open_session(submitted(package))  # opened between our look and our create
            return None, None, None
        return real_load(case_no)

    store.load = load
    session = review.case_withdrawn(withdrawn())
    store.load = real_load
    assert session["status"] == domain.S_WITHDRAWN
    assert review.get_session(CASE_NO)["status"] == domain.S_WITHDRAWN
    assert len(sent(bus, "session_withdrawn")) == 1


def test_a_withdrawal_that_can_neither_find_nor_create_its_session_is_left_to_the_queue(review, store, bus):
    store.load = lambda case_no: (None, None, None)
    store.create = lambda body, case, outbox: False
    with pytest.raises(RuntimeError, match="kept changing"):
        review.case_withdrawn(withdrawn())
    assert bus.published == []


# --- 督办 reaches the department's list ---------------------------------------------------------


def test_an_overdue_task_is_escalated_once_and_flagged_in_the_departments_list(review, bus, package):
    import datetime

    from services.joint_review.api import task_to_proto
    review.open_session(submitted(package))
    later = datetime.date.today() + datetime.timedelta(days=60)
    escalated = review.check_clocks(later)
    assert (CASE_NO, C01) in escalated
    overdue = sent(bus, "task_overdue")
    assert {p["item_code"] for p in overdue} == {C01, C02, C06, C07}
    assert all(p["elapsed_days"] > p["limit_days"] for p in overdue)
    assert review.check_clocks(later) == []  # once
    listed = [task_to_proto(t, later) for t in review.list_tasks("wsjk", REGION)[0]]
    assert {t.item_code: t.overdue for t in listed} == {C01: True, C07: True}


# -- the session as this process last saved or read it (store.recent) ------------------------------

def _other_process(store, bus):
    """Another process's store over the same sessions, with recent copies of its own."""
    other = FakeSessionStore(bus)
    other.docs = store.docs
    return handlers.JointReview(other, site=REGION)


def test_a_process_starts_from_its_recent_copy_and_reads_no_more(review, store, package):
    review.open_session(submitted(package))
    loads = []
    real_load = store.load
    store.load = lambda case_no: loads.append(case_no) or real_load(case_no)
    for item in (C01, C02):
        review.record_opinion(CASE_NO, item, DEPT[item], domain.APPROVE, "", f"desk:{DEPT[item]}:{REGION}")
    assert loads == []  # each started from the copy the last save left
    decided = {domain.APPROVED, domain.DONE}
    assert {domain.task_of(review.get_session(CASE_NO), i)["state"] for i in (C01, C02)} <= decided


def test_a_stale_copy_meets_the_version_check_and_the_change_is_made_on_a_fresh_read(review, store, bus, package):
    review.open_session(submitted(package))
    review.get_session(CASE_NO)
    _other_process(store, bus).record_opinion(CASE_NO, C01, "wsjk", domain.APPROVE, "", "desk:wsjk:440100")
    review.record_opinion(CASE_NO, C02, "jkzx", domain.APPROVE, "", "desk:jkzx:440100")  # from a stale copy
    session = review.get_session(CASE_NO)
    assert {domain.task_of(session, i)["state"] for i in (C01, C02)} <= {domain.APPROVED, domain.DONE}


@pytest.mark.parametrize("stale_says", ["nothing to change", "a refusal"])
def test_what_a_stale_copy_would_not_change_or_would_refuse_is_decided_on_a_fresh_read(review, store, bus, package,
                                                                                      stale_says):
    """Only a fresh read may decide that nothing changes, or refuse: the other process approved
    C01 after this process's copy was taken."""
    from services.common.errors import FailedPrecondition
    review.open_session(submitted(package))
    _other_process(store, bus).record_opinion(CASE_NO, C01, "wsjk", domain.APPROVE, "", "desk:wsjk:440100")
    seen = []

    def change(session, case):
        approved = domain.task_of(session, C01)["state"] == domain.APPROVED
        seen.append(approved)
        if not approved:
            if stale_says == "a refusal":
                raise FailedPrecondition("C01 is not approved yet")
            return None
        return []
    review._update(CASE_NO, change)
    assert seen == [False, True]  # the copy, then the fresh read that decided
    seen.clear()
    review._update(CASE_NO, change)
    assert seen == [True]  # the copy the save left is the stored session: no read


def test_a_fresh_read_that_changes_nothing_is_the_answer(review, store, package):
    review.open_session(submitted(package))
    store.recent_copies.drop(CASE_NO)
    calls = []
    assert review._update(CASE_NO, lambda s, c: calls.append(1)) is not None
    assert calls == [1]
