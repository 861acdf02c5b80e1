"""Officers read the cases their department holds a task in, end to end on the real local servers
(this run's own RabbitMQ vhost, SecantusDB databases and SeaweedFS buckets): intake's api served
over real gRPC on a free port, its worker run by `nameko run` as the suite runs it. joint_review's
`tasks_assigned` event goes through the broker to the worker, which records the departments on the
case in MongoDB; the officer then reads the case and a material streamed in
parts from S3, byte for byte. Officers of another department or region find nothing; the applicant
reads their own material; a 1 MB case number is INVALID_ARGUMENT. The catalog is an in-process
stand-in (services/intake/fakes.py), so the seed catalog does not matter here."""
import hashlib
import os
import time

import grpc
import pytest

from onething.intake.v1 import intake_pb2 as pb
from onething.intake.v1 import intake_pb2_grpc as pb_grpc
from onething.joint_review.v1 import events_pb2 as review_events
from services.common.testing import running_worker, wait_for
from services.intake import domain
from services.intake.fakes import FakeCatalog, FakeLicences
from tools.client import CHUNK, bearer, citizen_id, officer

pytestmark = pytest.mark.integration
S = grpc.StatusCode
APPLICANT = citizen_id("44010619900101124")
OTHER = citizen_id("44010619800101124")
QUEUE = "evt-joint_review-tasks_assigned--intake.on_tasks_assigned"
PACKAGE = {
    "code": "XSECS", "name": "新生儿出生一件事", "version": 3, "audience": "AUDIENCE_PERSON", "lead_department": "wsjk",
    "region_code": "440100", "implementing_code": "",
    "materials": [{"code": "M01", "name": "父母居民身份证"}, {"code": "M02", "name": "居民户口簿"}],
    "items": [{"code": "110000000001", "name": "出生医学证明签发", "department_code": "wsjk", "material_codes": ["M01"]},
              {"code": "110000000003", "name": "出生登记（落户）", "department_code": "gaj",
               "material_codes": ["M01", "M02"]}],
    "form_fields": [],
}




@pytest.fixture(scope="module")
def worker(test_env):
    """intake's worker as the suite runs it, consuming from this run's vhost."""
    log = os.path.join(test_env["ONETHING_VAR_DIR"], "intake-worker-officer-test.log")
    with running_worker("services.intake.worker:IntakeWorker", log, QUEUE) as proc:
        yield proc


@pytest.fixture(scope="module")
def stub(test_env):
    from services.common.grpc_server import ApiServer
    from services.intake.api import IntakeApi
    from services.intake.wiring import build_intake
    intake = build_intake(with_catalog=False, catalog=FakeCatalog(PACKAGE), licences=FakeLicences())
    name = pb.DESCRIPTOR.services_by_name["IntakeService"].full_name
    server = ApiServer(0, [(pb_grpc.add_IntakeServiceServicer_to_server, IntakeApi(intake))], [name]).start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield pb_grpc.IntakeServiceStub(channel)
    finally:
        server.stop(0)


def scan(label, size):
    body = (label.encode() + hashlib.sha256(f"{label}{time.time_ns()}".encode()).digest()) * (size // 40 + 1)
    return b"%PDF-1.4\n" + body[:size]


def upload(stub, applicant, code, data):
    def parts():
        yield pb.UploadMaterialRequest(header=pb.UploadHeader(material_code=code, file_name=f"{code}.pdf",
                                                              sha256=hashlib.sha256(data).hexdigest(), size=len(data)))
        for i in range(0, len(data), CHUNK):
            yield pb.UploadMaterialRequest(chunk=data[i:i + CHUNK])
    return stub.UploadMaterial(parts(), metadata=bearer(applicant, "applicant"), timeout=30).upload_id


def download(stub, case_no, code, metadata):
    messages = list(stub.DownloadMaterial(pb.DownloadMaterialRequest(case_no=case_no, material_code=code),
                                          metadata=metadata, timeout=30))
    return messages[0], b"".join(m.chunk for m in messages), len(messages)


def refused(call, request, metadata):
    with pytest.raises(grpc.RpcError) as err:
        answer = call(request, metadata=metadata, timeout=30)
        if not isinstance(answer, pb.Case):
            list(answer)
    return err.value.code(), err.value.details()


def holders(case_no):
    from services.intake.store import IntakeStore
    case = IntakeStore().case(case_no)
    return case.task_holders if case is not None else []


def test_an_officer_with_a_task_reads_the_case_and_its_material_and_no_other_officer_does(worker, stub):
    from services.common.bus import Bus
    big = scan("M01", 700 * 1024)  # several parts of 256 KiB, each its own ranged read of S3
    small = scan("M02", 3000)
    case = stub.SubmitCase(pb.SubmitCaseRequest(
        package_code="XSECS", region_code="440100", applicant={"id_number": APPLICANT, "name": "李华"},
        materials=[pb.MaterialSubmission(material_code="M01", upload_id=upload(stub, APPLICANT, "M01", big)),
                   pb.MaterialSubmission(material_code="M02", upload_id=upload(stub, APPLICANT, "M02", small))],
        delivery={"channel": "DELIVERY_CHANNEL_ELECTRONIC"}), metadata=bearer(APPLICANT, "applicant"), timeout=30)
    gaj, wsjk = officer("gaj", "440100", sub="officer-gaj-1"), officer("wsjk", "440100")
    absent = (S.NOT_FOUND, f"there is no case {case.case_no}")
    assert refused(stub.GetCase, pb.GetCaseRequest(case_no=case.case_no), gaj) == absent  # no task yet

    # joint_review assigns gaj's and wsjk's tasks, and tells who takes part as it publishes it
    Bus("joint_review").publish("tasks_assigned", review_events.TasksAssigned(case_no=case.case_no, holders=[
        review_events.TaskHolder(department_code=d, region_code="440100") for d in ("gaj", "wsjk")]), case.case_no)
    expected = {domain.TaskHolder("gaj", "440100"), domain.TaskHolder("wsjk", "440100")}
    wait_for(lambda: set(holders(case.case_no)) == expected, "the worker to record both departments")

    shown = stub.GetCase(pb.GetCaseRequest(case_no=case.case_no), metadata=gaj, timeout=30)
    assert shown.case_no == case.case_no and [m.material_code for m in shown.materials] == ["M01", "M02"]
    first, data, messages = download(stub, case.case_no, "M01", gaj)
    assert data == big and messages == 3
    assert (first.sha256, first.content_type, first.size, first.name) == (
        hashlib.sha256(big).hexdigest(), "application/pdf", len(big), "父母居民身份证")
    assert download(stub, case.case_no, "M02", wsjk)[1] == small

    for other in (officer("scjg", "440100"), officer("gaj", "440300"), officer("gaj", "440000")):
        assert refused(stub.GetCase, pb.GetCaseRequest(case_no=case.case_no), other) == absent
        assert refused(stub.DownloadMaterial, pb.DownloadMaterialRequest(case_no=case.case_no, material_code="M01"),
                       other) == absent

    assert download(stub, case.case_no, "M01", bearer(APPLICANT, "applicant"))[1] == big
    assert refused(stub.DownloadMaterial, pb.DownloadMaterialRequest(case_no=case.case_no, material_code="M01"),
                   bearer(OTHER, "applicant")) == absent

    # the officer's reads are in intake's audit chain in MongoDB, with the department from the token
    import mongoengine
    records = list(mongoengine.get_db("intake")["audit"].find(
        {"target": case.case_no, "actor.sub": "officer-gaj-1"}, {"_id": 0, "action": 1, "outcome": 1, "details": 1}))
    assert {"action": "material.read", "outcome": "ok", "details": {"material_code": "M01"}} in records
    assert {"action": "case.read", "outcome": "ok", "details": {}} in records
    assert {"action": "case.read", "outcome": "NOT_FOUND", "details": {}} in records


def test_a_one_megabyte_case_number_is_invalid_argument(stub):
    huge = "4" * (1024 * 1024)
    for call, request, md in ((stub.GetCase, pb.GetCaseRequest(case_no=huge), officer("gaj", "440100")),
                              (stub.DownloadMaterial, pb.DownloadMaterialRequest(case_no=huge, material_code="M01"),
                               officer("gaj", "440100")),
                              (stub.DownloadMaterial, pb.DownloadMaterialRequest(case_no=huge, material_code="M01"),
                               bearer(APPLICANT, "applicant"))):
        code, details = refused(call, request, md)
        assert code == S.INVALID_ARGUMENT and "case_no is 1048576 characters long" in details
