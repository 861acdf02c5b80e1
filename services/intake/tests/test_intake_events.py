"""What the other services report, as intake records it on the case (unit: the shared in-memory
store, services/intake/fakes.py, with the same compare-and-set rules as IntakeStore; no servers):
IN_REVIEW when the review opens, 督办 and the other notes, DELIVERY_FAILED and back, revoked
licences. Every event applied twice changes nothing the second time."""
import datetime

import pytest

from services.common.bus import RecordingBus
from services.intake import domain
from services.intake.fakes import FakeIntakeStore
from services.intake.handlers import Intake

CASE = "440100XSECS202611260001"
SUB, REV, RECT, APP, REJ, FAIL, DEL, RATED, WD = (
    domain.SUBMITTED, domain.IN_REVIEW, domain.RECTIFYING, domain.APPROVED, domain.REJECTED,
    domain.DELIVERY_FAILED, domain.DELIVERED, domain.RATED, domain.WITHDRAWN)


def add(store, status=SUB, **fields):
    """A case of `status` in the store, as submitted and moved there."""
    history = [domain.HistoryEntry(SUB, "t0", "submitted")]
    if status != SUB:
        history.append(domain.HistoryEntry(status, "t1", ""))
    case = domain.Case(case_no=CASE, package_code="XSECS", package_version=1, region_code="440100",
                       applicant={"id_number": "11010519491231002X"}, status=status,
                       submitted_at=datetime.datetime(2026, 11, 26, tzinfo=datetime.UTC), history=history)
    for name, value in fields.items():
        setattr(case, name, value)
    assert store.insert_case(case)


@pytest.fixture
def store():
    return FakeIntakeStore(RecordingBus("intake"))


@pytest.fixture
def intake(store):
    return Intake(store, None, None, 1024)


def doc(store):
    return store.case(CASE)


def statuses(store, notes=False):
    return [h.status for h in doc(store).history if notes or not h.note_only]


def twice(fn, event):
    """Apply an event, then its redelivery: the second changes nothing."""
    first = fn(event)
    return first, fn(event)


# --- IN_REVIEW -------------------------------------------------------------------------------


def opened(case_no=CASE):
    return domain.SessionOpened(case_no=case_no, item_codes=("I1", "I2"), department_codes=("gaj", "wsjk"))


def test_the_review_opening_moves_a_submitted_case_to_in_review_once(intake, store):
    add(store, SUB)
    assert twice(intake.session_opened, opened()) == (True, False)
    assert doc(store).status == REV and statuses(store) == [SUB, REV]
    assert "gaj, wsjk" in doc(store).history[-1].note


@pytest.mark.parametrize("status", [APP, REJ, DEL, RATED, WD, REV])
def test_a_late_review_opening_moves_no_case_backwards(intake, store, status):
    add(store, status)
    before = doc(store)
    assert not intake.session_opened(opened())
    assert doc(store) == before


def test_a_case_waiting_for_materials_returns_to_in_review_after_the_supplement(intake, store):
    add(store, RECT, rectification={"material_codes": ["M02"], "requests": [], "resume_status": SUB})
    assert twice(intake.session_opened, opened()) == (True, False)
    assert doc(store).status == RECT and doc(store).rectification["resume_status"] == REV
    assert doc(store).history[-1].note_only


def test_events_of_unknown_cases_change_nothing(intake, store):
    add(store, SUB)
    before = doc(store)
    other = "440100XSECS209901019999"
    assert not intake.session_opened(opened(other))
    assert not intake.task_overdue(domain.TaskOverdue(case_no=other, item_code="I1"))
    assert not intake.delivery_failed(domain.DeliveryFailed(case_no=other, attempt=1))
    assert not intake.license_revoked(domain.LicenseRevoked(case_no=other, license_id="L1"))
    assert not intake.license_revoked(domain.LicenseRevoked(case_no="", license_id="L1"))
    assert doc(store) == before and store.case(other) is None  # nothing written


class AlwaysBeaten(FakeIntakeStore):
    """Another change of the case always comes first: every save finds a newer version."""

    def __init__(self):
        super().__init__()
        self.tries = 0

    def save(self, case, expected_version, events=()):
        self.tries += 1
        return False


def test_a_case_that_keeps_changing_is_retried_then_left_to_the_queue():
    store = AlwaysBeaten()
    add(store, SUB)
    with pytest.raises(RuntimeError, match="kept changing"):
        Intake(store, None, None, 1024).session_opened(opened())
    assert store.tries == 10 and doc(store).status == SUB


# --- 督办 and other notes: the status stays ----------------------------------------------------


def overdue(item="110000000003"):
    return domain.TaskOverdue(case_no=CASE, item_code=item, department_code="gaj", elapsed_days=6, limit_days=5)


def test_an_overdue_task_is_in_the_case_history_once_and_the_status_stays(intake, store):
    add(store, REV)
    assert twice(intake.task_overdue, overdue()) == (True, False)
    assert intake.task_overdue(overdue("110000000004"))
    notes = [h for h in doc(store).history if h.note_only]
    assert len(notes) == 2 and all(h.status == REV for h in notes)
    assert "督办" in notes[0].note and "gaj" in notes[0].note and "6 of 5" in notes[0].note
    assert doc(store).status == REV and statuses(store) == [SUB, REV]


def test_the_joint_inspection_result_is_noted(intake, store):
    add(store, REV)
    event = domain.SessionConcluded(case_no=CASE, kind="INSPECTION", report_key="inspections/x.pdf",
                                    passed=False, concluded_at="2026-01-05T10:00:00+08:00")
    assert twice(intake.session_concluded, event) == (True, False)
    assert "defects found" in doc(store).history[-1].note and doc(store).status == REV
    again = domain.SessionConcluded(case_no=CASE, kind="INSPECTION", report_key="inspections/x.pdf",
                                    passed=True, concluded_at="2026-01-09T10:00:00+08:00")
    assert intake.session_concluded(again)  # a second inspection is a second note


def test_bad_review_opened_and_closed_are_noted_once_each(intake, store):
    add(store, RATED)
    opened_ = domain.BadReviewOpened(case_no=CASE, channel="online", department_code="wsjk", deadline="2026-12-03")
    closed = domain.BadReviewClosed(case_no=CASE, channel="online", department_code="wsjk", on_time=True,
                                    result="已整改")
    assert twice(intake.bad_review_opened, opened_) == (True, False)
    assert twice(intake.bad_review_closed, closed) == (True, False)
    notes = [h.note for h in doc(store).history if h.note_only]
    assert "2026-12-03" in notes[0] and "on time" in notes[1] and "已整改" in notes[1]
    assert doc(store).status == RATED


def test_a_withdrawal_after_the_conclusion_tells_the_applicant_the_conclusion_is_void(intake, store):
    add(store, WD)
    late = domain.SessionWithdrawn(case_no=CASE, after_conclusion=True, overridden="approved")
    assert not intake.session_withdrawn(domain.SessionWithdrawn(case_no=CASE))  # before: nothing to add
    assert twice(intake.session_withdrawn, late) == (True, False)
    assert "(approved)" in doc(store).history[-1].note and doc(store).status == WD


# --- revoked licences --------------------------------------------------------------------------


def test_a_revoked_licence_is_listed_on_the_case_with_a_history_entry(intake, store):
    add(store, DEL, license_ids=["L1", "L2"])
    revoked = domain.LicenseRevoked(license_id="L1", case_no=CASE, reason="信息有误")
    assert twice(intake.license_revoked, revoked) == (True, False)
    assert intake.license_revoked(domain.LicenseRevoked(license_id="L2", case_no=CASE))
    assert doc(store).revoked_license_ids == ["L1", "L2"]
    assert "L1 revoked: 信息有误" in doc(store).history[-2].note
    assert doc(store).status == DEL and doc(store).license_ids == ["L1", "L2"]


def test_a_superseded_licence_is_listed_with_what_superseded_it(intake, store):
    """The seller's 不动产权证书, superseded by the buyer's: listed like a revocation, said as it is."""
    add(store, DEL, license_ids=["L1"])
    superseded = domain.LicenseRevoked(license_id="L1", case_no=CASE, reason="superseded by …", superseded_by="L9")
    assert twice(intake.license_revoked, superseded) == (True, False)
    assert doc(store).revoked_license_ids == ["L1"] and doc(store).status == DEL
    entry = doc(store).history[-1]
    assert entry.note == "licence L1 superseded by L9: it is no longer valid" and entry.note_only


# --- delivery failed, corrected, delivered -----------------------------------------------------


def failed(attempt=1):
    return domain.DeliveryFailed(case_no=CASE, reason="地址不详，查无此人", attempt=attempt)


def dispatched(attempt=1, by_mail=True):
    return domain.DeliveryDispatched(case_no=CASE, by_mail=by_mail, carrier="EMS",
                                     tracking_number=f"EA47312482{attempt}CN", attempt=attempt)


def completed(attempt=1):
    return domain.DeliveryCompleted(case_no=CASE, attempt=attempt)


def test_a_failed_delivery_is_shown_then_the_redispatch_and_delivery_bring_the_case_on(intake, store):
    add(store, APP)
    assert twice(intake.delivery_dispatched, dispatched(1)) == (True, False)  # the tracking number, noted
    assert "EA473124821CN" in doc(store).history[-1].note and doc(store).status == APP
    assert twice(intake.delivery_failed, failed(1)) == (True, False)
    assert doc(store).status == FAIL and "查无此人" in doc(store).history[-1].note
    assert twice(intake.delivery_dispatched, dispatched(2)) == (True, False)
    assert doc(store).status == APP and "sent again" in doc(store).history[-1].note
    assert not intake.delivery_failed(failed(1))  # the old attempt's failure, redelivered late
    assert intake.delivery_completed(completed(2))
    assert statuses(store) == [SUB, APP, FAIL, APP, DEL]
    assert doc(store).delivery_attempt == 2


def test_a_redispatch_seen_before_the_old_failure_keeps_the_case_approved(intake, store):
    add(store, APP)
    assert intake.delivery_dispatched(dispatched(2))
    assert not intake.delivery_failed(failed(1))
    assert doc(store).status == APP


def test_the_redispatched_parcel_failing_again_fails_the_case_again(intake, store):
    add(store, APP)
    intake.delivery_failed(failed(1))
    intake.delivery_dispatched(dispatched(2))
    assert twice(intake.delivery_failed, failed(2)) == (True, False)
    assert statuses(store) == [SUB, APP, FAIL, APP, FAIL]


def test_the_stale_dispatch_of_the_failed_attempt_changes_nothing(intake, store):
    add(store, APP)
    intake.delivery_failed(failed(1))
    before = doc(store)
    assert not intake.delivery_dispatched(dispatched(1))
    assert doc(store) == before


def test_a_failure_reported_before_the_conclusion_keeps_the_licences_the_conclusion_brings(intake, store):
    add(store, REV)
    assert intake.delivery_failed(failed(1))
    assert not intake.case_concluded(domain.CaseConcluded(case_no=CASE, approved=True, license_ids=("L1",)))
    assert doc(store).status == FAIL and doc(store).license_ids == ["L1"]


def test_the_redispatched_results_delivered_before_the_dispatch_is_seen(intake, store):
    add(store, APP)
    intake.delivery_failed(failed(1))
    assert intake.delivery_completed(completed(2))
    assert not intake.delivery_dispatched(dispatched(2))
    assert statuses(store) == [SUB, APP, FAIL, DEL]


@pytest.mark.parametrize("status", [DEL, RATED, REJ, WD])
def test_delivery_news_moves_no_finished_case(intake, store, status):
    add(store, status)
    before = doc(store)
    assert not intake.delivery_failed(failed(1))
    assert not intake.delivery_dispatched(dispatched(2))
    assert not intake.delivery_ready_for_pickup(domain.DeliveryReadyForPickup(case_no=CASE))
    assert doc(store) == before


def test_electronic_links_need_no_note_and_the_window_tells_the_applicant_once(intake, store):
    add(store, APP)
    assert not intake.delivery_dispatched(dispatched(1, by_mail=False))  # ELECTRONIC
    event = domain.DeliveryReadyForPickup(case_no=CASE)  # WINDOW
    assert twice(intake.delivery_ready_for_pickup, event) == (True, False)
    assert "pickup code" in doc(store).history[-1].note and doc(store).status == APP


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


@pytest.mark.parametrize("react", [
    lambda i: i.case_concluded(domain.CaseConcluded(case_no=CASE, approved=True)),
    lambda i: i.delivery_completed(domain.DeliveryCompleted(case_no=CASE)),
    lambda i: i.rectification_requested(domain.RectificationRequested(case_no=CASE, item_code="I1",
                                                                      material_codes=("M02",))),
], ids=["case_concluded", "delivery_completed", "rectification_requested"])
def test_a_move_on_a_case_that_keeps_changing_is_left_to_the_queue_not_dropped(react):
    store = AlwaysBeaten()
    add(store, SUB)
    with pytest.raises(RuntimeError, match="kept changing"):
        react(Intake(store, None, None, 1024))
    assert store.tries == 10 and doc(store).status == SUB
