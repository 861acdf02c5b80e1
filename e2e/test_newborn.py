"""End to end: the suite as separate processes (6 apis, 5 workers, 5 desks) on the real broker,
MongoDB-wire and S3 servers, driven over gRPC like an applicant's client would."""
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.request

import grpc
import pymongo
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from e2e.waits import find_item, item_of, wait_event, wait_until
from onething.common.v1 import common_pb2
from onething.delivery.v1 import delivery_pb2
from onething.intake.v1 import intake_pb2
from onething.joint_review.v1 import joint_review_pb2
from services.common import telemetry
from services.common.blobs import Blobs
from services.common.config import DEFAULT_PORTS, settings
from tools import timeline
from tools.client import citizen_id

pytestmark = pytest.mark.e2e
DONE = joint_review_pb2.TASK_STATE_DONE
NEWBORN = "XSECS"


def test_every_api_serves_health_and_reflection(suite_running):
    s = settings()
    for service in DEFAULT_PORTS:
        with grpc.insecure_channel(s.address(service)) as ch:
            resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING, service
    grpcurl = os.path.join(os.path.dirname(sys.executable), "grpcurl")
    out = subprocess.run([grpcurl, "-plaintext", s.address("intake"), "list"], capture_output=True, text=True,
                         timeout=30)
    assert "onething.intake.v1.IntakeService" in out.stdout, out.stderr


def test_desks_are_separate_processes(suite_running):
    desks = [name for name in suite_running.process_table() if name.startswith("desk-")]
    pids = {suite_running.pid(name) for name in desks}
    assert len(desks) >= 4 and None not in pids and len(pids) == len(desks)


def _run_case(client, applicant=None):
    tracer = telemetry.tracer()
    with tracer.start_as_current_span("e2e 新生儿出生") as root:
        case = client.newborn_case(applicant=applicant)
        telemetry.mark_case(case.case_no, root)
        case = client.wait_status(case.case_no, {intake_pb2.CASE_STATUS_DELIVERED, intake_pb2.CASE_STATUS_REJECTED})
        assert case.status == intake_pb2.CASE_STATUS_DELIVERED, intake_pb2.CaseStatus.Name(case.status)
        client.rate(case.case_no, case.applicant.id_number)
        return client.wait_status(case.case_no, {intake_pb2.CASE_STATUS_RATED})


def test_newborn_case_from_upload_to_rating(client, probe):
    case = _run_case(client)
    no = case.case_no

    # intake: rated, with the history of every step and the licences
    assert [h.status for h in case.history if not h.note_only] == [
        intake_pb2.CASE_STATUS_SUBMITTED, intake_pb2.CASE_STATUS_IN_REVIEW, intake_pb2.CASE_STATUS_APPROVED,
        intake_pb2.CASE_STATUS_DELIVERED, intake_pb2.CASE_STATUS_RATED]
    assert len(case.license_ids) == 2

    # joint_review: every department approved its item
    session = client.session(no)
    assert session.status == joint_review_pb2.SESSION_STATUS_APPROVED
    assert len(session.tasks) == 7 and all(t.state == DONE for t in session.tasks)
    assert {t.department_code for t in session.tasks} == {"wsjk", "jkzx", "gaj", "ybj", "rsj"}
    registration_item = item_of(client, NEWBORN, department="gaj")  # 出生登记（落户）, by 公安
    registration = next(t for t in session.tasks if t.item_code == registration_item)
    assert "checked" in registration.reason  # the desk took the birth certificate from elicense

    # elicense: two signed licences that verify, each document in S3
    licences = client.licenses(no)
    assert sorted(l.type_code for l in licences) == ["CSYXZM", "SBK"]
    blobs = Blobs()
    for lic in licences:
        assert client.verify(lic.license_id).valid
        assert lic.license_id.encode() in blobs.get("results", lic.document_key)

    # S3: the case's manifest lists its materials; each one's bytes lie once, under its sha256
    assert blobs.list("materials", f"cases/{no}/") == [f"cases/{no}/manifest.json"]
    manifest = json.loads(blobs.get("materials", f"cases/{no}/manifest.json"))
    assert manifest["case_no"] == no
    assert [m["material_code"] for m in manifest["materials"]] == [m.material_code for m in case.materials]
    assert len(manifest["materials"]) >= 4
    for listed in manifest["materials"]:
        assert listed["object_key"] == f"content/sha256/{listed['sha256']}"
        assert hashlib.sha256(blobs.get("materials", listed["object_key"])).hexdigest() == listed["sha256"]

    # delivery: electronic, completed, links that really download the licences
    delivery = client.delivery_of(no)
    assert delivery.status == delivery_pb2.DELIVERY_STATUS_COMPLETED
    assert delivery.channel == common_pb2.DELIVERY_CHANNEL_ELECTRONIC
    assert len(delivery.results) == 2
    with urllib.request.urlopen(delivery.results[0].download_url, timeout=10) as resp:
        assert delivery.results[0].license_id.encode() in resp.read()

    # evaluation: the rating is kept
    from onething.evaluation.v1 import evaluation_pb2
    rating = client.evaluation.GetEvaluation(evaluation_pb2.GetEvaluationRequest(case_no=no), timeout=5)
    assert rating.grade == evaluation_pb2.GRADE_VERY_SATISFIED and not rating.bad_review

    # the order of events
    wait_event(probe, no, "evaluation_received", timeout=10)
    events = probe.for_case(no)
    keys = [k for k, _ in events]

    def at(key, item=None):
        return next(i for i, (k, b) in enumerate(events) if k.startswith(key) and item in (None, b.get("item_code")))

    def last(key):
        return max(i for i, (k, _) in enumerate(events) if k.startswith(key))

    assert keys[0] == "case_submitted"
    # the order of the package: 出生医学证明 → 出生登记(落户) → 医保参保 → 社保卡, the rest in parallel
    # (生育医疗费用报销); the items as the catalog resolves 新生儿出生 for 广州
    pkg = client.package(NEWBORN)
    certificate = find_item(pkg, department="wsjk", issues="CSYXZM").code
    registration = find_item(pkg, department="gaj").code
    insurance = find_item(pkg, department="ybj", name_contains="医保参保").code
    social_card = find_item(pkg, department="rsj", issues="SBK").code
    maternity = find_item(pkg, department="ybj", name_contains="生育医疗费用").code
    assert at("opinion_recorded", certificate) < at("license_issued", certificate) \
        < at("task_assigned", registration) < at("opinion_recorded", registration) \
        < at("task_assigned", insurance) < at("opinion_recorded", insurance) \
        < at("task_assigned", social_card)
    assert at("task_assigned", maternity) < at("opinion_recorded", certificate)
    assert last("opinion_recorded") < last("license_issued") < at("case_concluded") \
        < at("delivery_dispatched") < at("delivery_completed") < at("evaluation_received")
    assert keys.count("opinion_recorded") == 7 and keys.count("license_issued") == 2
    assert keys.count("case_concluded") == 1

    # one trace from SubmitCase to the rating, across every service
    expected = {"intake-api", "joint_review-worker", "elicense-worker", "delivery-worker", "evaluation-api",
                "intake-worker", "catalog-api", "evaluation-worker"}

    def desks(services):  # a department's desk, not this test process (named by whichever test set it up)
        return {s for s in services if re.fullmatch(r"desk-[a-z]+-\d{6}", s)}

    def handlers(spans):
        return {s.attributes.get("code.function.name") for s in spans}

    def trace():  # the last spans reach their files as their processes export them
        spans = timeline.case_trace(no)
        names, services = {s.name for s in spans}, {s.service for s in spans}
        whole = ({"/onething.intake.v1.IntakeService/SubmitCase",
                  "/onething.evaluation.v1.EvaluationService/SubmitEvaluation"} <= names
                 and "intake.on_evaluation_received" in handlers(spans)
                 and expected <= services and len(desks(services)) >= 5)
        return spans if whole else None
    try:
        spans = wait_until(trace, timeout=10, what=f"the whole trace of {no}")
    except TimeoutError:  # the assertions below say what is missing
        spans = timeline.case_trace(no)
    names = {s.name for s in spans}
    assert "/onething.intake.v1.IntakeService/SubmitCase" in names
    assert "/onething.evaluation.v1.EvaluationService/SubmitEvaluation" in names
    assert "intake.on_evaluation_received" in handlers(spans)
    services = {s.service for s in spans}
    for name in sorted(expected):
        assert name in services, (name, services)
    assert desks(services) == {"desk-wsjk-440100", "desk-jkzx-440100", "desk-gaj-440100", "desk-ybj-440100",
                               "desk-rsj-440100"}
    assert any(s.name.startswith("mongo ") for s in spans) and any(s.name.startswith("s3 ") for s in spans)


def _count_cases():
    s = settings()
    with pymongo.MongoClient(s.mongo_uri) as mc:
        return mc[s.db_name("intake")].cases.count_documents({})


@pytest.mark.parametrize("change, code, words", [
    ({"package": "NO_SUCH_PACKAGE"}, grpc.StatusCode.NOT_FOUND, "no package"),
    ({"drop": "M03"}, grpc.StatusCode.FAILED_PRECONDITION, "结婚证"),
    ({"id_number": "440106199001011230"}, grpc.StatusCode.INVALID_ARGUMENT, "check digit"),
])
def test_bad_submission_is_refused_and_leaves_nothing(client, probe, change, code, words):
    id_number = change.get("id_number", citizen_id("44010619900101123"))
    applicant = common_pb2.Applicant(id_number=id_number, name="李华")
    codes = [c for c in ["M01", "M02", "M03", "M04"] if c != change.get("drop")]
    uploader = citizen_id("44010619900101123") if "id_number" in change else id_number
    materials = client.upload_all(uploader, codes)
    before = _count_cases()
    with pytest.raises(grpc.RpcError) as err:
        client.submit(applicant, materials, package=change.get("package", "XSECS"))
    assert err.value.code() == code
    assert words in err.value.details()
    time.sleep(0.5)  # deliberate: a pause in which a case or a case_submitted would show; none may
    assert _count_cases() == before
    assert not [k for k in probe.keys() if k == "case_submitted"]


def test_desk_killed_mid_case_loses_and_doubles_nothing(client, probe, suite_running):
    """Kill the 公安 desk (SIGKILL) while a case is under way; its task waits in its durable queue;
    the restarted desk finishes it once."""
    desk = "desk-gaj-440100"
    suite_running.stop(desk, kill=True)
    try:
        case = client.newborn_case(applicant=common_pb2.Applicant(id_number=citizen_id("44010619850202123"),
                                                                  name="王芳"))
        no = case.case_no
        registration = item_of(client, NEWBORN, department="gaj")  # 出生登记（落户）, the gaj desk's item

        def assigned():  # NOT_FOUND until the session opens, a moment after SubmitCase returns
            task = next((t for t in client.session(no).tasks if t.item_code == registration), None)
            return task if task is not None and task.state == joint_review_pb2.TASK_STATE_ASSIGNED else None
        task = wait_until(assigned, 30, f"task {registration} of {no} assigned")
        assert task.state == joint_review_pb2.TASK_STATE_ASSIGNED
        time.sleep(1.0)  # deliberate: with the gaj desk down, nobody may take the task in this pause
        assert client.session(no).status == joint_review_pb2.SESSION_STATUS_OPEN  # nobody took it meanwhile
    finally:
        suite_running.start(desk)
    suite_running.wait_consuming([desk])
    case = client.wait_status(no, {intake_pb2.CASE_STATUS_DELIVERED})
    session = client.session(no)
    assert all(t.state == DONE for t in session.tasks)
    wait_event(probe, no, "delivery_completed")  # after every opinion, licence and conclusion
    keys = [k for k, _ in probe.for_case(no)]
    opinions = [b["item_code"] for k, b in probe.for_case(no) if k == "opinion_recorded"]
    assert sorted(opinions) == sorted(t.item_code for t in session.tasks)  # each task decided exactly once
    assert keys.count("license_issued") == 2 and keys.count("case_concluded") == 1
    assert len(client.licenses(no)) == 2


def test_record_opinion_needs_an_officer_of_the_department_and_an_open_task(client):
    from tools.client import bearer, officer
    case = _run_case(client, common_pb2.Applicant(id_number=citizen_id("44010619920303123"), name="陈静"))
    registration = item_of(client, NEWBORN, department="gaj")  # 出生登记（落户）: 公安's item
    request = joint_review_pb2.RecordOpinionRequest(case_no=case.case_no, item_code=registration,
                                                    decision=common_pb2.DECISION_REJECT, reason="x")
    refusals = [
        ((), grpc.StatusCode.UNAUTHENTICATED, "bearer token"),
        (bearer(case.applicant.id_number, "applicant"), grpc.StatusCode.PERMISSION_DENIED, "officers"),
        (officer("wsjk"), grpc.StatusCode.PERMISSION_DENIED, "gaj"),
        (officer("gaj", "440300"), grpc.StatusCode.PERMISSION_DENIED, "440100"),
        (officer("gaj"), grpc.StatusCode.FAILED_PRECONDITION, "not waiting"),
    ]
    for metadata, code, words in refusals:
        with pytest.raises(grpc.RpcError) as err:
            client.review.RecordOpinion(request, metadata=metadata, timeout=10)
        assert err.value.code() == code and words in err.value.details(), (code, err.value.details())
    request.case_no = "440100XSECS209901010001"
    with pytest.raises(grpc.RpcError) as err:
        client.review.RecordOpinion(request, metadata=officer("gaj"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert client.session(case.case_no).status == joint_review_pb2.SESSION_STATUS_APPROVED
