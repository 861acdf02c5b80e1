"""End to end, intake over real gRPC against the running suite: idempotent and concurrent
submission, case numbers, uploads stored by content, 减材料 from licences elicense issued, 补正,
withdrawal, WatchCase and ListCases, and refusals that leave nothing behind."""
import datetime
import hashlib
import threading
import time
import uuid

import grpc
import pymongo
import pytest

from e2e.waits import events_of, item_of, rate_when_rateable, wait_event, wait_handled
from onething.common.v1 import common_pb2
from onething.intake.v1 import intake_pb2
from onething.joint_review.v1 import events_pb2 as review_events
from services.common.blobs import Blobs
from services.common.bus import Bus
from services.common.config import settings
from tools.client import citizen_id, demo_pdf

pytestmark = pytest.mark.e2e
S = intake_pb2


def person(first17, name="李华"):
    return common_pb2.Applicant(id_number=citizen_id(first17), name=name, phone="13800000000")


def _db():
    s = settings()
    client = pymongo.MongoClient(s.mongo_uri)
    return client, client[s.db_name("intake")]


def _count(collection, query=None):
    client, db = _db()
    with client:
        return db[collection].count_documents(query or {})


def _raises(code, fn, *args, **kwargs):
    with pytest.raises(grpc.RpcError) as err:
        fn(*args, **kwargs)
    assert err.value.code() == code, err.value.details()
    return err.value.details()


def _events(probe, case_no, wait_for=None, timeout=10):
    """The routing keys of the case's events, once `wait_for` has arrived (or `timeout` passed: the
    caller asserts on what is there)."""
    if wait_for:
        try:
            wait_event(probe, case_no, wait_for, timeout)
        except TimeoutError:
            pass
    return [k for k, _ in probe.for_case(case_no)]


# --- SubmitCase: idempotency, concurrency, case numbers ---------------------------------------


def _in_threads(fn, n):
    results, errors = [None] * n, []

    def run(i):
        try:
            results[i] = fn(i)
        except Exception as exc:
            errors.append(exc)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    return results


def test_twenty_concurrent_submissions_with_distinct_keys_get_twenty_case_numbers(client):
    applicant = person("44010619910505123")
    materials = client.upload_all(applicant.id_number, client.required_materials())
    run = uuid.uuid4().hex
    cases = _in_threads(lambda i: client.submit(applicant, materials, key=f"{run}-{i}"), 20)
    numbers = [c.case_no for c in cases]
    assert len(set(numbers)) == 20
    pkg = client.package()
    prefix = pkg.implementing_code or f"440100{pkg.code}"
    day = datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=8))).strftime("%Y%m%d")
    for no in numbers:
        assert no.startswith(prefix) and no[len(prefix):len(prefix) + 8] == day
        assert len(no) == len(prefix) + 12 and no[-4:].isdigit()
    assert _count("cases", {"_id": {"$in": numbers}}) == 20


def test_twenty_concurrent_submissions_with_one_key_give_one_case_and_one_event(client, probe):
    applicant = person("44010619910606123")
    materials = client.upload_all(applicant.id_number, client.required_materials())
    key = uuid.uuid4().hex
    before = _count("cases", {"applicant.id_number": applicant.id_number})
    cases = _in_threads(lambda i: client.submit(applicant, materials, key=key), 20)
    assert len({c.case_no for c in cases}) == 1
    assert _count("cases", {"applicant.id_number": applicant.id_number}) == before + 1
    no = cases[0].case_no
    _events(probe, no, "case_concluded", timeout=30)
    assert _events(probe, no).count("case_submitted") == 1
    again = client.submit(applicant, materials, key=key)  # later, the same answer and nothing new
    assert again.case_no == no
    time.sleep(0.5)  # deliberate: a pause in which a second case_submitted would show; none may
    assert _events(probe, no).count("case_submitted") == 1


# --- uploads ---------------------------------------------------------------------------------


def test_identical_content_is_stored_once(client):
    applicant = person("44010619910707123")
    data = demo_pdf("same bytes")
    a = client.upload(applicant.id_number, "M01", data)
    b = client.upload(applicant.id_number, "M02", data, file_name="other-name.pdf")
    sha = hashlib.sha256(data).hexdigest()
    assert a.upload_id != b.upload_id and a.sha256 == b.sha256 == sha and a.content_type == "application/pdf"
    assert Blobs().list("materials", f"content/sha256/{sha}") == [f"content/sha256/{sha}"]
    assert _count("uploads", {"sha256": sha}) == 2


@pytest.mark.parametrize("data, extra, code, words", [
    (b"PK\x03\x04\x14\x00\x06\x00" + b"\x00" * 64, {}, grpc.StatusCode.INVALID_ARGUMENT, "application/zip"),
    (b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" * 4, {}, grpc.StatusCode.INVALID_ARGUMENT,
     "not accepted"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, {"content_type": "application/pdf"}, grpc.StatusCode.INVALID_ARGUMENT,
     "declared"),
    (b"%PDF-1.4 tiny", {"sha256": "0" * 64}, grpc.StatusCode.INVALID_ARGUMENT, "sha256"),
    (b"%PDF-1.4 tiny", {"size": 10 ** 9}, grpc.StatusCode.RESOURCE_EXHAUSTED, "limit"),
])
def test_refused_upload_leaves_no_object_and_no_record(client, data, extra, code, words):
    applicant = person("44010619910808123")
    before = (_count("uploads"), Blobs().list("materials", "content/"))
    details = _raises(code, client.upload, applicant.id_number, "M01", data, file_name="scan.pdf", **extra)
    assert words in details
    assert (_count("uploads"), Blobs().list("materials", "content/")) == before


# --- 减材料: a licence elicense issued stands in for a material ---------------------------------


def test_material_a_licence_stands_in_for_is_not_asked_for_in_a_later_case(client):
    """A's 新生儿出生 case issues the child the 出生医学证明 (licence type CSYXZM, held by the newborn);
    when A then applies for the child's 教育入学 (the child is the case's student), the material J05
    出生医学证明, which is about the student, is not asked for: the child's licence stands in for it."""
    school = "JYRX"
    pkg = client.package(school)
    j05 = next(m for m in pkg.materials if m.code == "J05")
    assert j05.license_type_code == "CSYXZM" and j05.party == "student"
    applicant = person("44010619930909123", "赵敏")
    child = common_pb2.Party(role="newborn", name="赵小敏", id_number=citizen_id("44010620261120321"))
    first = client.newborn_case(applicant=applicant, newborn=child)
    first = client.wait_status(first.case_no, {S.CASE_STATUS_DELIVERED, S.CASE_STATUS_REJECTED}, timeout=90)
    assert first.status == S.CASE_STATUS_DELIVERED
    held = {l.type_code: l for l in client.licenses(first.case_no)}
    assert held["CSYXZM"].holder_code == child.id_number
    student = [common_pb2.Party(role="student", name=child.name, id_number=child.id_number)]

    # without the material and without the student's licence, it is asked for (the applicant holds none)
    other_child = [common_pb2.Party(role="student", name="钱小多", id_number=citizen_id("44010620200101321"))]
    codes = [c for c in client.required_materials(school) if c != "J05"]
    details = _raises(grpc.StatusCode.FAILED_PRECONDITION, client.submit, applicant,
                      client.upload_all(applicant.id_number, codes), package=school, parties=other_child)
    assert "J05" in details

    second = client.submit(applicant, client.upload_all(applicant.id_number, codes), package=school,
                           parties=student)
    ref = next(m for m in second.materials if m.material_code == "J05")
    assert ref.license_id == held["CSYXZM"].license_id and not ref.object_key
    assert client.wait_status(second.case_no, {S.CASE_STATUS_DELIVERED, S.CASE_STATUS_REJECTED},
                              timeout=90).status == S.CASE_STATUS_DELIVERED


# --- 补正 and withdrawal, with joint_review's worker held back ---------------------------------


@pytest.fixture
def review_paused(suite_running):
    """joint_review's worker stopped: a submitted case waits in its durable queue, so the test
    decides what happens to it first; restarted afterwards."""
    suite_running.stop("joint_review-worker")
    try:
        yield
    finally:
        suite_running.start("joint_review-worker")
        suite_running.wait_consuming(["joint_review-worker"])


def _request_rectification(client, case_no, codes, dept="gaj"):
    """What joint_review publishes when the department's item (出生登记 for 公安) asks for `codes` again."""
    item = item_of(client, "XSECS", department=dept)
    Bus("joint_review").publish("rectification_requested", review_events.RectificationRequested(
        case_no=case_no, item_code=item, department_code=dept, material_codes=codes, reason="照片不清晰"), case_no)


def test_supplement_and_withdraw_over_grpc(client, probe, review_paused):
    a = person("44010619941010123", "孙丽")
    other = person("44010619941011123", "周强")
    case = client.newborn_case(applicant=a)
    no = case.case_no

    # not waiting for materials yet
    supplied = client.upload_all(a.id_number, ["M02"])
    assert "RECTIFYING" in _raises(grpc.StatusCode.FAILED_PRECONDITION, client.supplement, no, a.id_number, supplied)

    _request_rectification(client, no, ["M02"])
    case = client.wait_status(no, {S.CASE_STATUS_RECTIFYING}, timeout=20)
    assert list(case.rectification.material_codes) == ["M02"]
    assert case.rectification.requests[0].department_code == "gaj"

    before = client.intake.GetCase(S.GetCaseRequest(case_no=no), timeout=10)
    # someone else's case (their own token): answered as a case that does not exist
    assert f"there is no case {no}" in _raises(grpc.StatusCode.NOT_FOUND, client.supplement, no, other.id_number,
                                               client.upload_all(other.id_number, ["M02"]))
    assert "did not ask for M04" in _raises(grpc.StatusCode.INVALID_ARGUMENT, client.supplement, no, a.id_number,
                                            supplied + client.upload_all(a.id_number, ["M04"]))
    _raises(grpc.StatusCode.NOT_FOUND, client.supplement, "440100XSECS209901019999", a.id_number, supplied)
    assert client.intake.GetCase(S.GetCaseRequest(case_no=no), timeout=10) == before
    assert "case_supplemented" not in _events(probe, no)

    case = client.supplement(no, a.id_number, supplied)
    assert case.status == S.CASE_STATUS_SUBMITTED and not case.rectification.material_codes
    m02 = next(m for m in case.materials if m.material_code == "M02")
    assert m02.object_key == f"content/sha256/{m02.sha256}"
    assert "case_supplemented" in _events(probe, no, "case_supplemented")

    # withdrawal: only by the applicant (someone else's token finds no such case), then once
    _raises(grpc.StatusCode.NOT_FOUND, client.withdraw, no, other.id_number)
    assert "case_withdrawn" not in _events(probe, no)
    case = client.withdraw(no, a.id_number, "不再办理")
    assert case.status == S.CASE_STATUS_WITHDRAWN
    assert "WITHDRAWN already" in _raises(grpc.StatusCode.FAILED_PRECONDITION, client.withdraw, no, a.id_number)
    assert _events(probe, no, "case_withdrawn").count("case_withdrawn") == 1


def test_a_withdrawn_case_stays_withdrawn_after_review_resumes(client, probe, suite_running):
    a = person("44010619951111123", "吴刚")
    suite_running.stop("joint_review-worker")
    try:
        no = client.newborn_case(applicant=a).case_no
        assert client.withdraw(no, a.id_number, "搬家").status == S.CASE_STATUS_WITHDRAWN
    finally:
        suite_running.start("joint_review-worker")
        suite_running.wait_consuming(["joint_review-worker"])
    # joint_review now takes the case_submitted and case_withdrawn waiting in its queues ...
    wait_handled(probe, no, "case_submitted", "joint_review.on_case_submitted")
    wait_handled(probe, no, "case_withdrawn", "joint_review.on_case_withdrawn")
    # ... and intake takes what came of them (session_withdrawn always; the others if they went out)
    wait_handled(probe, no, "session_withdrawn", "intake.on_session_withdrawn")
    for key in ("session_opened", "session_concluded", "case_concluded"):
        if events_of(probe, no, key):
            wait_handled(probe, no, key, f"intake.on_{key}")
    assert client.intake.GetCase(S.GetCaseRequest(case_no=no), timeout=10).status == S.CASE_STATUS_WITHDRAWN


def test_withdraw_after_conclusion_is_refused(client, probe):
    a = person("44010619961212123", "郑洁")
    case = client.newborn_case(applicant=a)
    case = client.wait_status(case.case_no, {S.CASE_STATUS_APPROVED, S.CASE_STATUS_DELIVERED, S.CASE_STATUS_REJECTED},
                              timeout=60)
    details = _raises(grpc.StatusCode.FAILED_PRECONDITION, client.withdraw, case.case_no, a.id_number)
    assert "already" in details
    assert client.intake.GetCase(S.GetCaseRequest(case_no=case.case_no), timeout=10).status != S.CASE_STATUS_WITHDRAWN
    assert "case_withdrawn" not in _events(probe, case.case_no)


# --- WatchCase and ListCases -----------------------------------------------------------------


def test_watch_streams_status_changes_to_the_rating_and_ends(client):
    a = person("44010619970101123", "冯雪")
    case = client.newborn_case(applicant=a)
    seen = []

    def watch():
        for c in client.watch(case.case_no, timeout=120):
            seen.append(c.status)
            if c.status == S.CASE_STATUS_DELIVERED:  # evaluation may hear of it a moment after intake
                rate_when_rateable(client, c.case_no, a.id_number)
    t = threading.Thread(target=watch)
    t.start()
    t.join(120)
    assert not t.is_alive()
    order = [S.CASE_STATUS_SUBMITTED, S.CASE_STATUS_IN_REVIEW, S.CASE_STATUS_APPROVED, S.CASE_STATUS_DELIVERED,
             S.CASE_STATUS_RATED]
    assert seen == sorted(seen, key=order.index) and len(set(seen)) == len(seen)  # each change once, in order
    assert seen[-4:] == order[1:]  # none skipped: read from the case's history, not by polling its status
    assert seen[-1] == S.CASE_STATUS_RATED  # and the stream ended there


def test_watch_refuses_bad_and_unknown_cases_and_can_be_cancelled(client):
    _raises(grpc.StatusCode.INVALID_ARGUMENT, lambda: list(client.watch("nope", timeout=10)))
    _raises(grpc.StatusCode.NOT_FOUND, lambda: list(client.watch("440100XSECS209901019999", timeout=10)))
    a = person("44010619970202123", "陈晨")
    materials = client.upload_all(a.id_number, client.required_materials())
    case = client.submit(a, materials)
    stream = client.watch(case.case_no, timeout=60)
    first = next(stream)
    assert first.case_no == case.case_no
    stream.cancel()
    _raises(grpc.StatusCode.CANCELLED, lambda: list(stream))


def test_list_cases_newest_first(client):
    a = person("44010619980303123", "韩梅")
    materials = client.upload_all(a.id_number, client.required_materials())
    made = [client.submit(a, materials).case_no for _ in range(3)]
    page = client.list_cases(a.id_number, page_size=2)
    assert [c.case_no for c in page.cases] == made[::-1][:2] and page.next_page_token
    rest = client.list_cases(a.id_number, page_size=2, page_token=page.next_page_token)
    assert [c.case_no for c in rest.cases] == made[:1] and not rest.next_page_token
    assert "bearer token" in _raises(grpc.StatusCode.UNAUTHENTICATED, client.list_cases, "")  # the token says who
    _raises(grpc.StatusCode.INVALID_ARGUMENT, client.list_cases, "440106199001011230")
    _raises(grpc.StatusCode.INVALID_ARGUMENT, client.list_cases, a.id_number, page_token="garbage!")
