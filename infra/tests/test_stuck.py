"""tools/stuck.py over fake readers: which step, which queue and which reason the tool gives for
which stored data. The documents are made with the services' own mappings to their stored forms
(intake's stored_case, joint review's new_session/advance/stored_session, delivery's to_stored),
so the tool reads what the stores really write."""
import datetime
import json
from typing import Any

import pytest

from services.delivery import domain as delivery_domain
from services.delivery.store import to_stored as stored_delivery
from services.intake import domain as intake_domain
from services.intake.store import stored_case
from services.joint_review import domain as review_domain
from tools import stuck

CST = datetime.timezone(datetime.timedelta(hours=8))
# a Monday; 2024-06-10 (端午) was a holiday
NOW = datetime.datetime(2024, 6, 17, 10, 0, tzinfo=CST)
HOUR = 3600.0

PACKAGE: dict[str, Any] = {
    "code": "newborn", "name": "新生儿出生一件事", "lead_department": "wsjk",
    "departments": [{"code": "wsjk", "name": "卫健委"}, {"code": "gaj", "name": "公安局"}],
    "promised_limit_days": 10, "statutory_limit_days": 20,
    "items": [
        {"code": "A01", "name": "出生医学证明", "department_code": "wsjk", "promised_limit_days": 3,
         "statutory_limit_days": 5, "result": {"type": "RESULT_TYPE_LICENSE", "license_type_code": "CSYXZM"}},
        {"code": "A02", "name": "出生登记", "department_code": "gaj", "prerequisites": ["A01"],
         "promised_limit_days": 3, "statutory_limit_days": 5},
    ]}


def iso(at):
    return at.isoformat()


def case_doc(case_no, status, last_at, region="440100"):
    """intake's stored case, its last history entry at `last_at` (submitted then, or a day before)."""
    submitted = last_at if status == intake_domain.SUBMITTED else last_at - datetime.timedelta(days=1)
    history = [intake_domain.HistoryEntry(intake_domain.SUBMITTED, iso(submitted), "submitted")]
    if status != intake_domain.SUBMITTED:
        history.append(intake_domain.HistoryEntry(status, iso(last_at), "moved"))
    case = intake_domain.Case(case_no=case_no, package_code="newborn", package_version=1, region_code=region,
                              applicant={"id_number": "x"}, status=status, submitted_at=submitted, history=history)
    return {"_id": case_no, **stored_case(case)}


def session_body(case_no, opened_at, region="440100", form=None, package=PACKAGE):
    """A session as joint review opens it: the first task (A01, 卫健) assigned at `opened_at`."""
    session = review_domain.new_session(case_no, region, package, iso(opened_at), form=form)
    review_domain.advance(session, iso(opened_at))
    return session


def stored(session):
    return review_domain.stored_session(session)


class FakeStores:
    def __init__(self, cases=(), sessions=None, licences=None, deliveries=None, outbox=()):
        self._cases = {c["_id"]: c for c in cases}
        self._sessions = sessions or {}
        self._licences = licences or {}
        self._deliveries = deliveries or {}
        self._outbox = list(outbox)

    def waiting_case_numbers(self):
        return ({n for n, c in self._cases.items() if c["status"] not in stuck._FINISHED}
                | {n for n, b in self._sessions.items() if b["status"] == "SESSION_STATUS_OPEN"})

    def cases(self, case_nos):
        return {n: self._cases[n] for n in case_nos if n in self._cases}

    def sessions(self, case_nos):
        return {n: self._sessions[n] for n in case_nos if n in self._sessions}

    def licences(self, case_nos):
        return {n: self._licences[n] for n in case_nos if n in self._licences}

    def deliveries(self, case_nos):
        return {n: self._deliveries[n] for n in case_nos if n in self._deliveries}

    def outbox(self):
        return self._outbox


class FakeBroker:
    def __init__(self, queues=None, letters=()):
        self._queues = queues
        self._letters = list(letters) if letters is not None else None

    def queues(self):
        if self._queues is None:
            return stuck.QueueListing(None, problem="no management API, no rabbitmqctl")
        return stuck.QueueListing({q.name: q for q in self._queues}, "fake")

    def dead_letters(self):
        return self._letters


def one_site(stores, broker=None, region="440100", served=None):
    return {region: stuck.Site(region, served or (region,), stores, broker or FakeBroker([]))}


def q(name, messages=0, consumers=1, growing=None):
    return stuck.QueueState(name, messages, consumers, growing)


def entry(event_type, case_no, at, attempts=0, last_error=""):
    e = {"id": "e1", "event_type": event_type, "at": at.timestamp(), "attempts": attempts, "payload": {},
         "case_no": case_no}
    if last_error:
        e["last_error"] = last_error
    return e


def letter(case_no, queue, error="KeyError: 'x'"):
    return {"message_id": "m1", "queue": queue, "event": "case_submitted", "case_no": case_no, "attempts": 5,
            "failed_at": "2024-06-17T01:00:00Z", "error": error}


def find(sites, min_idle=30 * 60, inspected=None):
    return stuck.find_stuck(sites, inspected or list(sites), min_idle, now=NOW)


def kinds(reasons):
    return sorted(r.kind for r in reasons)


# --- durations ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [("30m", 1800), ("45s", 45), ("2h", 7200), ("1d", 86400),
                                           ("1h30m", 5400), ("0s", 0), (" 2H ", 7200)])
def test_durations_are_read_with_their_unit(text, seconds):
    assert stuck.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "m", "-5m", "1.5h", "30x", "30m2h", "soon"])
def test_a_duration_without_a_unit_or_in_another_form_is_refused(text):
    with pytest.raises(ValueError, match="not a duration"):
        stuck.parse_duration(text)


def test_the_cli_refuses_a_bad_duration_with_a_clear_message(capsys):
    with pytest.raises(SystemExit) as exc:
        stuck.main(["--for", "ten minutes"])
    assert exc.value.code == 2
    assert "--for: 'ten minutes' is not a duration" in capsys.readouterr().err


def test_the_cli_refuses_a_site_that_is_not_one_of_run_sites(capsys):
    with pytest.raises(SystemExit):
        stuck.main(["--site", "110000"])
    assert "not a site of `make run-sites`" in capsys.readouterr().err


# --- which step ------------------------------------------------------------------------------------

def test_a_case_without_a_session_waits_at_intake_and_an_unpublished_case_submitted_says_why():
    at = NOW - datetime.timedelta(hours=2)
    stores = FakeStores([case_doc("C1", intake_domain.SUBMITTED, at)],
                        outbox=[("intake", "cases", "C1", entry("case_submitted", "C1", at, 3, "Unroutable: no queue"))])
    report = find(one_site(stores, FakeBroker([q("evt-intake-case_submitted--joint_review.on_case_submitted")])))
    [case] = report.stuck
    assert (case.case_no, case.status, case.package_code) == ("C1", "SUBMITTED", "newborn")
    assert case.idle_since == at.astimezone(datetime.UTC)
    [wait] = case.waits
    assert wait.step == "intake"
    assert wait.queue.name == "evt-intake-case_submitted--joint_review.on_case_submitted"
    assert kinds(wait.reasons) == ["outbox"]
    assert "intake has not published case_submitted" in wait.reasons[0].text
    assert "3 failed attempts, last error: Unroutable: no queue" in wait.reasons[0].text
    assert case.reasons == []


def test_a_case_that_moved_recently_is_not_listed():
    stores = FakeStores([case_doc("C1", intake_domain.SUBMITTED, NOW - datetime.timedelta(minutes=10))])
    assert find(one_site(stores)).stuck == []
    assert [c.case_no for c in find(one_site(stores), min_idle=5 * 60).stuck] == ["C1"]


def test_the_last_activity_is_the_latest_of_every_store_not_intakes_alone():
    """intake's case last moved 3 h ago, but joint review assigned its task 10 min ago."""
    old = NOW - datetime.timedelta(hours=3)
    stores = FakeStores([case_doc("C1", intake_domain.IN_REVIEW, old)],
                        sessions={"C1": stored(session_body("C1", NOW - datetime.timedelta(minutes=10)))})
    assert find(one_site(stores)).stuck == []


def test_a_task_at_a_desk_says_department_region_clock_and_an_overdue_of_six_working_days():
    assigned = datetime.datetime(2024, 6, 3, 9, 0, tzinfo=CST)  # limit 3: ran out on Thursday 6 June
    stores = FakeStores([case_doc("C1", intake_domain.IN_REVIEW, assigned)],
                        sessions={"C1": stored(session_body("C1", assigned))})
    report = find(one_site(stores, FakeBroker([q("desk.wsjk.440100", messages=4, consumers=0),
                                               q("joint_review.desk_opinions")])))
    [case] = report.stuck
    [wait] = case.waits
    assert (wait.step, wait.department, wait.region, wait.item_code) == ("joint_review", "wsjk", "440100", "A01")
    assert wait.since == assigned
    assert wait.clock["elapsed_days"] == 9 and wait.clock["limit_days"] == 3
    assert wait.clock["overdue_days"] == 6 and wait.clock["due_date"] == "2024-06-06"
    assert wait.queue == q("desk.wsjk.440100", messages=4, consumers=0)
    assert kinds(wait.reasons) == ["no_consumer", "overdue"]
    assert "nobody consumes desk.wsjk.440100 (4 waiting)" in [r.text for r in wait.reasons]
    text = stuck.as_text(report)
    assert "OVERDUE by 6 working day(s)" in text and "queue desk.wsjk.440100 (site 440100): 4 waiting, 0 consumer(s)" in text


def test_a_task_within_its_limit_with_a_consumer_has_no_reason_and_says_so():
    assigned = datetime.datetime(2024, 6, 14, 9, 0, tzinfo=CST)
    stores = FakeStores([case_doc("C1", intake_domain.IN_REVIEW, assigned)],
                        sessions={"C1": stored(session_body("C1", assigned))})
    report = find(one_site(stores, FakeBroker([q("desk.wsjk.440100", messages=1, consumers=1),
                                               q("joint_review.desk_opinions")])))
    [wait] = report.stuck[0].waits
    assert wait.clock["overdue"] is False and wait.clock["remaining_days"] == 2
    assert wait.reasons == []
    assert "why: not known" in stuck.as_text(report)


def test_a_desk_that_answered_is_not_heard_while_nobody_takes_the_opinions():
    assigned = datetime.datetime(2024, 6, 14, 9, 0, tzinfo=CST)
    stores = FakeStores([case_doc("C1", intake_domain.IN_REVIEW, assigned)],
                        sessions={"C1": stored(session_body("C1", assigned))})
    report = find(one_site(stores, FakeBroker([q("desk.wsjk.440100"),
                                               q("joint_review.desk_opinions", messages=2, consumers=0)])))
    [wait] = report.stuck[0].waits
    assert kinds(wait.reasons) == ["no_consumer"]
    assert "joint_review.desk_opinions (2 waiting)" in wait.reasons[0].text


def test_a_desk_queue_that_does_not_exist_is_a_reason():
    assigned = datetime.datetime(2024, 6, 14, 9, 0, tzinfo=CST)
    stores = FakeStores([case_doc("C1", intake_domain.IN_REVIEW, assigned)],
                        sessions={"C1": stored(session_body("C1", assigned))})
    [wait] = find(one_site(stores, FakeBroker([]))).stuck[0].waits
    assert kinds(wait.reasons) == ["no_queue"]
    assert wait.queue.messages is None


def test_without_management_api_or_rabbitmqctl_the_depth_is_unknown_and_the_rest_still_reasons():
    assigned = datetime.datetime(2024, 6, 3, 9, 0, tzinfo=CST)
    stores = FakeStores([case_doc("C1", intake_domain.IN_REVIEW, assigned)],
                        sessions={"C1": stored(session_body("C1", assigned))})
    report = find(one_site(stores, FakeBroker(None)))
    [wait] = report.stuck[0].waits
    assert wait.queue == stuck.QueueState("desk.wsjk.440100")
    assert wait.queue_note.startswith("queue depth unknown")
    assert kinds(wait.reasons) == ["overdue"]
    assert "queue desk.wsjk.440100 (site 440100): queue depth unknown" in stuck.as_text(report)
    assert any("queue depth unknown" in n for n in report.notes)


def test_a_task_waiting_for_the_applicants_supplement_says_so_with_its_clock_paused():
    assigned = datetime.datetime(2024, 6, 11, 9, 0, tzinfo=CST)
    session = session_body("C1", assigned)
    review_domain.record_opinion(session, "A01", "wsjk", review_domain.RECTIFY, "photo unreadable", "desk",
                                 iso(assigned + datetime.timedelta(days=1)), materials=["M01"])
    stores = FakeStores([case_doc("C1", intake_domain.RECTIFYING, assigned)], sessions={"C1": stored(session)})
    [wait] = find(one_site(stores)).stuck[0].waits
    assert (wait.step, wait.waits_on) == ("joint_review", "applicant")
    assert "M01" in wait.what and wait.clock["paused"] is True and wait.clock["paused_for"] == "RECTIFICATION"


def test_an_approved_item_without_its_licence_waits_at_elicense():
    assigned = datetime.datetime(2024, 6, 11, 9, 0, tzinfo=CST)
    session = session_body("C1", assigned)
    review_domain.record_opinion(session, "A01", "wsjk", review_domain.APPROVE, "", "desk", iso(assigned))
    stores = FakeStores([case_doc("C1", intake_domain.IN_REVIEW, assigned)], sessions={"C1": stored(session)})
    broker = FakeBroker([q("evt-joint_review-opinion_recorded--elicense.on_opinion_recorded", 3, 0)])
    [wait] = find(one_site(stores, broker)).stuck[0].waits
    assert wait.step == "elicense" and "licence not yet issued" in wait.what
    assert wait.queue.name == "evt-joint_review-opinion_recorded--elicense.on_opinion_recorded"
    assert kinds(wait.reasons) == ["no_consumer"]


def test_an_issued_licence_joint_review_has_not_recorded_is_told_apart():
    assigned = datetime.datetime(2024, 6, 11, 9, 0, tzinfo=CST)
    session = session_body("C1", assigned)
    review_domain.record_opinion(session, "A01", "wsjk", review_domain.APPROVE, "", "desk", iso(assigned))
    licence = {"license_id": "L1", "case_no": "C1", "item_code": "A01", "issued_at": iso(assigned)}
    stores = FakeStores([case_doc("C1", intake_domain.IN_REVIEW, assigned)], sessions={"C1": stored(session)},
                        licences={"C1": [licence]})
    [wait] = find(one_site(stores)).stuck[0].waits
    assert wait.step == "elicense" and "licence L1" in wait.what and "has not recorded it" in wait.what
    assert wait.event == "license_issued"


def concluded(case_no, at):
    session = session_body(case_no, at, package={**PACKAGE, "items": [
        {**PACKAGE["items"][1], "prerequisites": []}]})
    review_domain.record_opinion(session, "A02", "gaj", review_domain.APPROVE, "", "desk", iso(at))
    review_domain.advance(session, iso(at))
    assert session["status"] == review_domain.S_APPROVED
    return stored(session)


def delivery(case_no, status, at, channel=delivery_domain.WINDOW, **more):
    body = {"case_no": case_no, "channel": channel, "status": status, "results": [], "applicant_id": "x",
            "history": [{"status": status, "at": iso(at), "note": "", "by": ""}], **more}
    return stored_delivery(body)


def test_a_concluded_case_without_a_delivery_waits_at_delivery():
    at = NOW - datetime.timedelta(hours=5)
    stores = FakeStores([case_doc("C1", intake_domain.APPROVED, at)], sessions={"C1": concluded("C1", at)})
    [wait] = find(one_site(stores)).stuck[0].waits
    assert wait.step == "delivery" and wait.event == "case_concluded"


def test_a_concluded_case_intake_has_not_heard_of_waits_at_intake_too():
    at = NOW - datetime.timedelta(hours=5)
    stores = FakeStores([case_doc("C1", intake_domain.IN_REVIEW, at)], sessions={"C1": concluded("C1", at)},
                        deliveries={"C1": delivery("C1", delivery_domain.READY_FOR_PICKUP, at)})
    waits = find(one_site(stores)).stuck[0].waits
    assert [(w.step, w.waits_on) for w in waits] == [("intake", "intake worker"), ("delivery", "applicant")]


def test_a_failed_delivery_waits_for_a_clerk_with_its_reason():
    at = NOW - datetime.timedelta(hours=5)
    stores = FakeStores([case_doc("C1", intake_domain.DELIVERY_FAILED, at)], sessions={"C1": concluded("C1", at)},
                        deliveries={"C1": delivery("C1", delivery_domain.FAILED, at, delivery_domain.MAIL,
                                                   failure_reason="address unknown")})
    [wait] = find(one_site(stores)).stuck[0].waits
    assert wait.waits_on == "clerk" and "address unknown" in wait.what


def test_a_completed_delivery_intake_has_not_recorded_is_a_wait():
    at = NOW - datetime.timedelta(hours=5)
    stores = FakeStores([case_doc("C1", intake_domain.APPROVED, at)], sessions={"C1": concluded("C1", at)},
                        deliveries={"C1": delivery("C1", delivery_domain.COMPLETED, at, delivery_domain.ELECTRONIC)})
    [wait] = find(one_site(stores)).stuck[0].waits
    assert wait.step == "delivery" and wait.event == "delivery_completed" and wait.waits_on == "intake worker"


def test_a_delivered_case_waiting_for_its_rating_is_not_stuck_unless_something_else_waits():
    at = NOW - datetime.timedelta(days=3)
    case = case_doc("C1", intake_domain.DELIVERED, at)
    deliveries = {"C1": delivery("C1", delivery_domain.COMPLETED, at, delivery_domain.ELECTRONIC)}
    stores = FakeStores([case], sessions={"C1": concluded("C1", at)}, deliveries=deliveries)
    assert find(one_site(stores)).stuck == []
    letters = [letter("C1", "evt-delivery-delivery_completed--evaluation.on_delivery_completed")]
    report = find(one_site(stores, FakeBroker([], letters)))
    [found] = report.stuck
    assert found.waits == [] and kinds(found.reasons) == ["dead_letter"]
    assert "failed 5 times in evt-delivery-delivery_completed--evaluation" in found.reasons[0].text


def test_a_withdrawn_case_whose_session_is_still_open_waits_at_joint_review():
    at = NOW - datetime.timedelta(hours=5)
    stores = FakeStores([case_doc("C1", intake_domain.WITHDRAWN, at)], sessions={"C1": stored(session_body("C1", at))})
    [wait] = find(one_site(stores)).stuck[0].waits
    assert wait.step == "joint_review" and wait.event == "case_withdrawn"


def test_finished_cases_are_not_listed():
    at = NOW - datetime.timedelta(days=3)
    stores = FakeStores([case_doc("C1", intake_domain.RATED, at), case_doc("C2", intake_domain.REJECTED, at),
                         case_doc("C3", intake_domain.WITHDRAWN, at)])
    assert find(one_site(stores)).stuck == []


# --- why: dead letters, outboxes ---------------------------------------------------------------------

def test_a_dead_letter_goes_with_the_wait_whose_queue_failed_else_with_the_case():
    at = NOW - datetime.timedelta(hours=2)
    queue = "evt-intake-case_submitted--joint_review.on_case_submitted"
    stores = FakeStores([case_doc("C1", intake_domain.SUBMITTED, at), case_doc("C2", intake_domain.SUBMITTED, at)])
    broker = FakeBroker([q(queue)], [letter("C1", queue, "KeyError: 'package'"), letter("C2", "elsewhere.queue"),
                                     letter("C9", queue)])
    report = find(one_site(stores, broker))
    c9, c1, c2 = report.stuck  # a case of unknown age comes first
    assert c9.case_no == "C9" and c9.status == "unknown to intake"
    assert kinds(c1.waits[0].reasons) == ["dead_letter"] and "KeyError: 'package'" in c1.waits[0].reasons[0].text
    assert c1.reasons == []
    assert c2.waits[0].reasons == [] and kinds(c2.reasons) == ["dead_letter"]


def test_a_dead_letter_of_a_case_the_stores_do_not_know_is_still_listed():
    report = find(one_site(FakeStores(), FakeBroker([], [letter("C9", "q")])))
    [found] = report.stuck
    assert found.case_no == "C9" and found.status == "unknown to intake" and found.idle_since is None


def test_unreadable_dead_letters_are_noted():
    at = NOW - datetime.timedelta(hours=2)
    report = find(one_site(FakeStores([case_doc("C1", intake_domain.SUBMITTED, at)]), FakeBroker([], None)))
    assert "site 440100: the dead letters could not be read" in report.notes


def test_a_pending_task_assigned_goes_with_the_desk_it_was_for():
    assigned = NOW - datetime.timedelta(hours=2)
    stores = FakeStores([case_doc("C1", intake_domain.IN_REVIEW, assigned)],
                        sessions={"C1": stored(session_body("C1", assigned))},
                        outbox=[("joint_review", "sessions", "C1", entry("task_assigned.wsjk.440100", "C1", assigned)),
                                ("joint_review", "sessions", "C1", entry("task_overdue", "C1", assigned))])
    found = find(one_site(stores, FakeBroker([q("desk.wsjk.440100"), q("joint_review.desk_opinions")]))).stuck[0]
    assert [r.text.split(" (")[0] for r in found.waits[0].reasons] == ["joint_review has not published task_assigned.wsjk.440100"]
    assert [r.text.split(" (")[0] for r in found.reasons] == ["joint_review has not published task_overdue"]


# --- sites and links ---------------------------------------------------------------------------------

def three_sites(case_site_stores, brokers):
    sites = {}
    for region in ("440000", "440100", "440300"):
        stores = case_site_stores if region == "440100" else FakeStores()
        sites[region] = stuck.Site(region, (region,), stores, brokers.get(region) or FakeBroker([]))
    return sites


def cross_city_case():
    """A 广州 case one of whose items is decided in 深圳 (the region a form field names)."""
    package = {**PACKAGE, "items": [{**PACKAGE["items"][1], "prerequisites": [], "implementing_region_field": "from"}]}
    assigned = NOW - datetime.timedelta(hours=3)
    return FakeStores([case_doc("C1", intake_domain.IN_REVIEW, assigned)],
                      sessions={"C1": stored(session_body("C1", assigned, form={"from": "440305"}, package=package))})


def test_with_every_site_the_desk_queue_is_read_where_the_region_is_served_and_a_dead_link_is_a_reason():
    brokers = {
        "440100": FakeBroker([q("joint_review.desk_opinions"), q("link.440100.440000.joint_review.events", 7, 0),
                              q("link.440100.440000.evaluation.events", 0, 1)]),
        "440000": FakeBroker([q("link.440000.440300.joint_review.events", 9, 1, growing=True),
                              q("link.440000.440100.desk.opinions", 0, 1)]),
        "440300": FakeBroker([q("desk.gaj.440300", 0, 1)]),
    }
    report = find(three_sites(cross_city_case(), brokers), inspected=["440100"])
    [wait] = report.stuck[0].waits
    assert (wait.department, wait.region, wait.queue_site) == ("gaj", "440300", "440300")
    assert wait.queue == q("desk.gaj.440300", 0, 1)
    texts = [r.text for r in wait.reasons]
    assert kinds(wait.reasons) == ["link_down", "link_growing"]
    assert any("link.440100.440000.joint_review.events is down" in t and "(7 waiting)" in t for t in texts)
    assert any("link.440000.440300.joint_review.events keeps growing" in t for t in texts)
    # the report's links are those of the inspected site
    assert [(link.queue.name, bool(link.problem)) for link in report.links] == [
        ("link.440100.440000.evaluation.events", False), ("link.440100.440000.joint_review.events", True)]


def test_a_province_task_goes_to_the_city_desk_when_the_city_is_a_site():
    sites = three_sites(cross_city_case(), {"440300": FakeBroker([q("desk.gaj.440300", 2, 0)]),
                                            "440000": FakeBroker([q("desk.gaj.440300", 0, 1)])})
    [wait] = find(sites, inspected=["440100"]).stuck[0].waits
    assert wait.queue_site == "440300" and kinds(wait.reasons) == ["no_consumer"]


def test_one_site_alone_says_the_desk_is_at_another_site():
    stores = cross_city_case()
    [wait] = find(one_site(stores, FakeBroker([q("link.440100.440000.joint_review.events", 3, 0)]))).stuck[0].waits
    assert kinds(wait.reasons) == ["elsewhere", "link_down"]
    assert wait.queue.name == "desk.gaj.440300" and "queue depth unknown" in wait.queue_note


# --- the report -----------------------------------------------------------------------------------

def test_cases_come_oldest_first_and_as_json():
    stores = FakeStores([case_doc("NEW", intake_domain.SUBMITTED, NOW - datetime.timedelta(hours=1)),
                         case_doc("OLD", intake_domain.SUBMITTED, NOW - datetime.timedelta(days=2))])
    report = find(one_site(stores))
    assert [c.case_no for c in report.stuck] == ["OLD", "NEW"]
    data = json.loads(json.dumps(stuck.as_json(report)))
    assert [c["case_no"] for c in data["stuck"]] == ["OLD", "NEW"]
    assert data["stuck"][0]["idle_seconds"] == 2 * 86400
    assert data["stuck"][0]["waits"][0]["step"] == "intake"
    assert data["stuck"][0]["idle_since"].endswith("+08:00")


def test_the_cli_says_no_stuck_cases_and_exits_0(monkeypatch, capsys):
    monkeypatch.setattr(stuck, "this_site", lambda *_: one_site(FakeStores()))
    assert stuck.main([]) == 0
    assert capsys.readouterr().out.startswith("no stuck cases")


def test_the_cli_lists_stuck_cases_as_json_and_exits_1(monkeypatch, capsys):
    stores = FakeStores([case_doc("C1", intake_domain.SUBMITTED, datetime.datetime.now(datetime.UTC)
                                  - datetime.timedelta(hours=2))])
    monkeypatch.setattr(stuck, "this_site", lambda *_: one_site(stores))
    assert stuck.main(["--for", "1h", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [c["case_no"] for c in data["stuck"]] == ["C1"] and data["for_seconds"] == HOUR


def test_rabbitmqctl_output_is_read_with_or_without_its_header():
    text = "name\tmessages\tconsumers\ndesk.wsjk.440100\t4\t0\nodd line\nlink.a.b.c\t0\t1\n"
    assert stuck.parse_list_queues(text) == {"desk.wsjk.440100": q("desk.wsjk.440100", 4, 0),
                                             "link.a.b.c": q("link.a.b.c", 0, 1)}


def test_the_broker_falls_back_to_rabbitmqctl_and_says_unknown_when_neither_answers():
    calls = []

    def ctl(args):
        calls.append(args)
        return "name\nsome/vhost\n" if args[0] == "list_vhosts" else "desk.wsjk.440100\t4\t0\n"

    broker = stuck.RabbitBroker("amqp://guest:guest@127.0.0.1:5672/some%2Fvhost", "http://127.0.0.1:9", ctl=ctl)
    listing = broker.queues()
    assert listing.source == "rabbitmqctl" and listing.queues == {"desk.wsjk.440100": q("desk.wsjk.440100", 4, 0)}
    assert calls == [["list_vhosts", "name"], ["list_queues", "-p", "some/vhost", "name", "messages", "consumers"]]
    other = stuck.RabbitBroker("amqp://guest:guest@127.0.0.1:5672/gone", "http://127.0.0.1:9", ctl=ctl).queues()
    assert other.queues is None and "there is no vhost 'gone' on this broker" in other.problem
    nothing = stuck.RabbitBroker("amqp://guest:guest@127.0.0.1:5672/v", "http://127.0.0.1:9").queues()
    assert nothing.queues is None and "management API" in nothing.problem


def test_a_growing_link_backlog_is_told_by_a_second_look():
    answers = iter(["link.a.b.c\t5\t1\n", "link.a.b.c\t8\t1\n"])
    broker = stuck.RabbitBroker("amqp://guest:guest@127.0.0.1:5672/v", "http://127.0.0.1:9",
                                ctl=lambda args: "v\n" if args[0] == "list_vhosts" else next(answers),
                                link_sample_seconds=0.01)
    assert broker.queues().queues == {"link.a.b.c": q("link.a.b.c", 8, 1, growing=True)}


def test_the_management_api_is_asked_first_with_the_brokers_credentials():
    """A stand-in for the management API on a free local port: the tool asks for the vhost's queues
    with the AMQP URI's user, and a link whose backlog has a positive rate is growing."""
    import base64
    import http.server
    import threading

    asked = []

    class Api(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append((self.path, self.headers.get("Authorization")))
            body = json.dumps([
                {"name": "desk.wsjk.440100", "messages": 4, "consumers": 0, "messages_details": {"rate": 0.0}},
                {"name": "link.440100.440000.joint_review.events", "messages": 9, "consumers": 1,
                 "messages_details": {"rate": 0.4}}]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        broker = stuck.RabbitBroker("amqp://ops:s%40cret@127.0.0.1:5672/onething",
                                    f"http://127.0.0.1:{server.server_port}", ctl=lambda args: pytest.fail("not needed"))
        listing = broker.queues()
    finally:
        server.shutdown()
        server.server_close()
    assert listing.source == "management API"
    assert asked == [("/api/queues/onething", "Basic " + base64.b64encode(b"ops:s@cret").decode())]
    assert listing.queues == {
        "desk.wsjk.440100": q("desk.wsjk.440100", 4, 0, growing=False),
        "link.440100.440000.joint_review.events": q("link.440100.440000.joint_review.events", 9, 1, growing=True)}


def test_pending_events_about_no_case_are_not_cases():
    """A signing key's or a package's event waits in an outbox too; tools.outbox lists those."""
    at = NOW - datetime.timedelta(hours=2)
    stores = FakeStores(outbox=[("elicense", "signing_keys", "key-440100-1", entry("signing_key_published.440100", "", at)),
                                ("catalog", "packages", "newborn", entry("package_published", "", at))])
    assert find(one_site(stores)).stuck == []


def test_the_sites_of_run_sites_are_read_with_their_own_prefix_broker_and_management_port():
    from infra import multisite
    from services.common.config import settings
    sites = stuck.run_sites(link_sample_seconds=0)
    try:
        assert list(sites) == list(multisite.REGIONS)
        shenzhen = sites["440300"]
        stores, broker = shenzhen.stores, shenzhen.broker
        assert isinstance(stores, stuck.MongoStores) and isinstance(broker, stuck.RabbitBroker)
        assert shenzhen.served == ("440300",)
        assert stores.prefix == f"{settings().db_prefix}s440300_"
        node = multisite.node("440300")
        assert broker.amqp_uri == multisite.site_env("440300")["ONETHING_AMQP_URI"]
        assert broker.management_url == f"http://127.0.0.1:{node.management_port}"
        assert broker.vhost == "onething" and broker.ctl is not None
    finally:
        for site in sites.values():
            if isinstance(site.stores, stuck.MongoStores):
                site.stores.close()
