"""What the other services report, as intake records it on the case (unit: an in-memory store with
the same compare-and-set rules as IntakeStore, no servers): IN_REVIEW when the review opens, 督办
and the other notes, DELIVERY_FAILED and back, revoked licences. Every event applied twice changes
nothing the second time."""
import copy
import types

import pytest

from onething.common.v1 import common_pb2
from onething.delivery.v1 import events_pb2 as delivery_events
from onething.elicense.v1 import events_pb2 as license_events
from onething.evaluation.v1 import events_pb2 as evaluation_events
from onething.joint_review.v1 import events_pb2 as review_events
from services.intake import domain
from services.intake.handlers import Intake

CASE = "440100XSECS202611260001"
SUB, REV, RECT, APP, REJ, FAIL, DEL, RATED, WD = (
    domain.SUBMITTED, domain.IN_REVIEW, domain.RECTIFYING, domain.APPROVED, domain.REJECTED,
    domain.DELIVERY_FAILED, domain.DELIVERED, domain.RATED, domain.WITHDRAWN)
MAIL, ELECTRONIC = common_pb2.DELIVERY_CHANNEL_MAIL, common_pb2.DELIVERY_CHANNEL_ELECTRONIC


def _get(d, dotted):
    for part in dotted.split("."):
        d = (d or {}).get(part) if isinstance(d, dict) else getattr(d, part, None)
    return d


class FakeIntakeStore:
    """IntakeStore's event methods in memory, compare-and-set like the real one."""

    def __init__(self):
        self.docs = {}
        self.writes = 0

    def add(self, status=SUB, **fields):
        doc = dict(case_no=CASE, status=status, history=[{"status": SUB, "at": "t0", "note": "submitted"}],
                   license_ids=[], revoked_license_ids=[], delivery_attempt=0, noted=[], rectification={},
                   applicant={"id_number": "11010519491231002X"})
        if status != SUB:
            doc["history"].append({"status": status, "at": "t1", "note": ""})
        doc.update(fields)
        self.docs[doc["case_no"]] = doc

    def case(self, case_no):
        doc = self.docs.get(case_no)
        return types.SimpleNamespace(**copy.deepcopy(doc)) if doc else None

    def record(self, case_no, expected_status, status, note, key, set_fields=None, add_to_set=None, raise_attempt=0,
               expect=None):
        doc = self.docs.get(case_no)
        if doc is None or doc["status"] != expected_status or key in doc["noted"]:
            return False
        if any(_get(doc, k) != v for k, v in (expect or {}).items()):
            return False
        self.writes += 1
        entry = {"status": status, "at": "t", "note": note}
        if status == expected_status:
            entry["note_only"] = True
        doc["status"] = status
        for k, v in (set_fields or {}).items():
            *path, last = k.split(".")
            target = doc
            for part in path:
                target = target.setdefault(part, {})
            target[last] = v
        doc["history"].append(entry)
        doc["noted"].append(key)
        for k, v in (add_to_set or {}).items():
            if v not in doc[k]:
                doc[k].append(v)
        doc["delivery_attempt"] = max(doc["delivery_attempt"], int(raise_attempt or 0))
        return True

    def move_status(self, case_no, expected, status, note, outbox=None, license_ids=None):
        doc = self.docs.get(case_no)
        if doc is None or doc["status"] != expected:
            return False
        self.writes += 1
        doc["status"] = status
        doc["history"].append({"status": status, "at": "t", "note": note})
        for lid in license_ids or ():
            if lid not in doc["license_ids"]:
                doc["license_ids"].append(lid)
        return True

    def add_licenses(self, case_no, license_ids):
        for lid in license_ids:
            if lid not in self.docs[case_no]["license_ids"]:
                self.docs[case_no]["license_ids"].append(lid)


@pytest.fixture
def store():
    return FakeIntakeStore()


@pytest.fixture
def intake(store):
    return Intake(store, None, None, None, 1024)


def doc(store):
    return store.docs[CASE]


def statuses(store, notes=False):
    return [h["status"] for h in doc(store)["history"] if notes or not h.get("note_only")]


def twice(fn, event):
    """Apply an event, then its redelivery: the second changes nothing."""
    first = fn(event)
    return first, fn(event)


# --- IN_REVIEW -------------------------------------------------------------------------------


def opened(case_no=CASE):
    return review_events.SessionOpened(case_no=case_no, region_code="440100", package_code="XSECS",
                                       item_codes=["I1", "I2"], department_codes=["gaj", "wsjk"])


def test_the_review_opening_moves_a_submitted_case_to_in_review_once(intake, store):
    store.add(SUB)
    assert twice(intake.session_opened, opened()) == (True, False)
    assert doc(store)["status"] == REV and statuses(store) == [SUB, REV]
    assert "gaj, wsjk" in doc(store)["history"][-1]["note"]


@pytest.mark.parametrize("status", [APP, REJ, DEL, RATED, WD, REV])
def test_a_late_review_opening_moves_no_case_backwards(intake, store, status):
    store.add(status)
    before = copy.deepcopy(store.docs)
    assert not intake.session_opened(opened())
    assert store.docs == before


def test_a_case_waiting_for_materials_returns_to_in_review_after_the_supplement(intake, store):
    store.add(RECT, rectification={"material_codes": ["M02"], "requests": [], "resume_status": SUB})
    assert twice(intake.session_opened, opened()) == (True, False)
    assert doc(store)["status"] == RECT and doc(store)["rectification"]["resume_status"] == REV
    assert doc(store)["history"][-1]["note_only"]


def test_events_of_unknown_cases_change_nothing(intake, store):
    store.add(SUB)
    other = "440100XSECS209901019999"
    assert not intake.session_opened(opened(other))
    assert not intake.task_overdue(review_events.TaskOverdue(case_no=other, item_code="I1"))
    assert not intake.delivery_failed(delivery_events.DeliveryFailed(case_no=other, attempt=1))
    assert not intake.license_revoked(license_events.LicenseRevoked(case_no=other, license_id="L1"))
    assert not intake.license_revoked(license_events.LicenseRevoked(case_no="", license_id="L1"))
    assert store.writes == 0


def test_a_case_that_keeps_changing_is_retried_then_left_to_the_queue(intake, store):
    store.add(SUB)
    store.record = lambda *a, **k: False  # another change always comes first
    with pytest.raises(RuntimeError, match="kept changing"):
        intake.session_opened(opened())


# --- 督办 and other notes: the status stays ----------------------------------------------------


def overdue(item="110000000003"):
    return review_events.TaskOverdue(case_no=CASE, item_code=item, department_code="gaj", region_code="440100",
                                     elapsed_days=6, limit_days=5)


def test_an_overdue_task_is_in_the_case_history_once_and_the_status_stays(intake, store):
    store.add(REV)
    assert twice(intake.task_overdue, overdue()) == (True, False)
    assert intake.task_overdue(overdue("110000000004"))
    notes = [h for h in doc(store)["history"] if h.get("note_only")]
    assert len(notes) == 2 and all(h["status"] == REV for h in notes)
    assert "督办" in notes[0]["note"] and "gaj" in notes[0]["note"] and "6 of 5" in notes[0]["note"]
    assert doc(store)["status"] == REV and statuses(store) == [SUB, REV]


def test_the_joint_inspection_result_is_noted(intake, store):
    store.add(REV)
    event = review_events.SessionConcluded(case_no=CASE, kind="INSPECTION", report_key="inspections/x.pdf",
                                           passed=False, concluded_at="2026-01-05T10:00:00+08:00")
    assert twice(intake.session_concluded, event) == (True, False)
    assert "defects found" in doc(store)["history"][-1]["note"] and doc(store)["status"] == REV
    again = review_events.SessionConcluded(case_no=CASE, kind="INSPECTION", report_key="inspections/x.pdf",
                                           passed=True, concluded_at="2026-01-09T10:00:00+08:00")
    assert intake.session_concluded(again)  # a second inspection is a second note


def test_bad_review_opened_and_closed_are_noted_once_each(intake, store):
    store.add(RATED)
    opened_ = evaluation_events.BadReviewOpened(case_no=CASE, channel="online", department_code="wsjk",
                                                deadline="2026-12-03")
    closed = evaluation_events.BadReviewClosed(case_no=CASE, channel="online", department_code="wsjk", on_time=True,
                                               result="已整改")
    assert twice(intake.bad_review_opened, opened_) == (True, False)
    assert twice(intake.bad_review_closed, closed) == (True, False)
    notes = [h["note"] for h in doc(store)["history"] if h.get("note_only")]
    assert "2026-12-03" in notes[0] and "on time" in notes[1] and "已整改" in notes[1]
    assert doc(store)["status"] == RATED


def test_a_withdrawal_after_the_conclusion_tells_the_applicant_the_conclusion_is_void(intake, store):
    store.add(WD)
    late = review_events.SessionWithdrawn(case_no=CASE, after_conclusion=True, overridden="SESSION_STATUS_APPROVED",
                                          license_ids=["L1"])
    assert not intake.session_withdrawn(review_events.SessionWithdrawn(case_no=CASE))  # before: nothing to add
    assert twice(intake.session_withdrawn, late) == (True, False)
    assert "approved" in doc(store)["history"][-1]["note"] and doc(store)["status"] == WD


# --- revoked licences --------------------------------------------------------------------------


def test_a_revoked_licence_is_listed_on_the_case_with_a_history_entry(intake, store):
    store.add(DEL, license_ids=["L1", "L2"])
    revoked = license_events.LicenseRevoked(license_id="L1", case_no=CASE, reason="信息有误", revoked_by="officer")
    assert twice(intake.license_revoked, revoked) == (True, False)
    assert intake.license_revoked(license_events.LicenseRevoked(license_id="L2", case_no=CASE))
    assert doc(store)["revoked_license_ids"] == ["L1", "L2"]
    assert "L1 revoked: 信息有误" in doc(store)["history"][-2]["note"]
    assert doc(store)["status"] == DEL and doc(store)["license_ids"] == ["L1", "L2"]


def test_a_superseded_licence_is_listed_with_what_superseded_it(intake, store):
    """The seller's 不动产权证书, superseded by the buyer's: listed like a revocation, said as it is."""
    store.add(DEL, license_ids=["L1"])
    superseded = license_events.LicenseRevoked(license_id="L1", case_no=CASE, reason="superseded by …",
                                               superseded_by="L9")
    assert twice(intake.license_revoked, superseded) == (True, False)
    assert doc(store)["revoked_license_ids"] == ["L1"] and doc(store)["status"] == DEL
    entry = doc(store)["history"][-1]
    assert entry["note"] == "licence L1 superseded by L9: it is no longer valid" and entry["note_only"]


# --- delivery failed, corrected, delivered -----------------------------------------------------


def failed(attempt=1):
    return delivery_events.DeliveryFailed(case_no=CASE, channel=MAIL, reason="地址不详，查无此人", attempt=attempt)


def dispatched(attempt=1, channel=MAIL):
    return delivery_events.DeliveryDispatched(case_no=CASE, channel=channel, carrier="EMS",
                                              tracking_number=f"EA47312482{attempt}CN", attempt=attempt)


def completed(attempt=1):
    return delivery_events.DeliveryCompleted(case_no=CASE, channel=MAIL, attempt=attempt)


def test_a_failed_delivery_is_shown_then_the_redispatch_and_delivery_bring_the_case_on(intake, store):
    store.add(APP)
    assert twice(intake.delivery_dispatched, dispatched(1)) == (True, False)  # the tracking number, noted
    assert "EA473124821CN" in doc(store)["history"][-1]["note"] and doc(store)["status"] == APP
    assert twice(intake.delivery_failed, failed(1)) == (True, False)
    assert doc(store)["status"] == FAIL and "查无此人" in doc(store)["history"][-1]["note"]
    assert twice(intake.delivery_dispatched, dispatched(2)) == (True, False)
    assert doc(store)["status"] == APP and "sent again" in doc(store)["history"][-1]["note"]
    assert not intake.delivery_failed(failed(1))  # the old attempt's failure, redelivered late
    assert intake.delivery_completed(completed(2))
    assert statuses(store) == [SUB, APP, FAIL, APP, DEL]
    assert doc(store)["delivery_attempt"] == 2


def test_a_redispatch_seen_before_the_old_failure_keeps_the_case_approved(intake, store):
    store.add(APP)
    assert intake.delivery_dispatched(dispatched(2))
    assert not intake.delivery_failed(failed(1))
    assert doc(store)["status"] == APP


def test_the_redispatched_parcel_failing_again_fails_the_case_again(intake, store):
    store.add(APP)
    intake.delivery_failed(failed(1))
    intake.delivery_dispatched(dispatched(2))
    assert twice(intake.delivery_failed, failed(2)) == (True, False)
    assert statuses(store) == [SUB, APP, FAIL, APP, FAIL]


def test_the_stale_dispatch_of_the_failed_attempt_changes_nothing(intake, store):
    store.add(APP)
    intake.delivery_failed(failed(1))
    before = copy.deepcopy(store.docs)
    assert not intake.delivery_dispatched(dispatched(1))
    assert store.docs == before


def test_a_failure_reported_before_the_conclusion_keeps_the_licences_the_conclusion_brings(intake, store):
    store.add(REV)
    assert intake.delivery_failed(failed(1))
    assert not intake.case_concluded(review_events.CaseConcluded(case_no=CASE, approved=True, license_ids=["L1"]))
    assert doc(store)["status"] == FAIL and doc(store)["license_ids"] == ["L1"]


def test_the_redispatched_results_delivered_before_the_dispatch_is_seen(intake, store):
    store.add(APP)
    intake.delivery_failed(failed(1))
    assert intake.delivery_completed(completed(2))
    assert not intake.delivery_dispatched(dispatched(2))
    assert statuses(store) == [SUB, APP, FAIL, DEL]


@pytest.mark.parametrize("status", [DEL, RATED, REJ, WD])
def test_delivery_news_moves_no_finished_case(intake, store, status):
    store.add(status)
    before = copy.deepcopy(store.docs)
    assert not intake.delivery_failed(failed(1))
    assert not intake.delivery_dispatched(dispatched(2))
    assert not intake.delivery_ready_for_pickup(delivery_events.DeliveryReadyForPickup(case_no=CASE))
    assert store.docs == before


def test_electronic_links_need_no_note_and_the_window_tells_the_applicant_once(intake, store):
    store.add(APP)
    assert not intake.delivery_dispatched(dispatched(1, ELECTRONIC))
    event = delivery_events.DeliveryReadyForPickup(case_no=CASE, channel=common_pb2.DELIVERY_CHANNEL_WINDOW)
    assert twice(intake.delivery_ready_for_pickup, event) == (True, False)
    assert "pickup code" in doc(store)["history"][-1]["note"] and doc(store)["status"] == APP


@pytest.mark.parametrize("status, attempt, last, expected", [
    (APP, 1, 0, FAIL), (APP, 1, 1, FAIL), (APP, 1, 2, None), (REV, 1, 0, FAIL), (FAIL, 1, 1, None),
    (FAIL, 2, 1, FAIL), (DEL, 1, 0, None), (WD, 1, 0, None), (REJ, 1, 0, None)])
def test_after_failure(status, attempt, last, expected):
    assert domain.after_failure(status, attempt, last) == expected


@pytest.mark.parametrize("status, attempt, last, expected", [
    (APP, 1, 0, APP), (FAIL, 1, 1, None), (FAIL, 2, 1, APP), (APP, 1, 2, None), (DEL, 2, 1, None),
    (WD, 1, 0, None), (REV, 1, 0, REV)])
def test_after_dispatch(status, attempt, last, expected):
    assert domain.after_dispatch(status, attempt, last) == expected


def test_a_delivery_failed_case_can_be_delivered_but_not_withdrawn():
    assert domain.advance(FAIL, DEL) == DEL and domain.advance(FAIL, APP) is None
    with pytest.raises(Exception, match="only a case not yet concluded"):
        domain.check_withdraw(FAIL, "")
