"""GetCase and DownloadMaterial through intake's api over real gRPC (an in-process server on a free
port, the handlers on the in-memory fakes, tokens from a throw-away identity provider): who may read
a case and its materials (case_or_task), what everyone else gets (NOT_FOUND as for a case that does
not exist, the gate's PERMISSION_DENIED for a role the RPC does not name, UNAUTHENTICATED without a
token), bad input (INVALID_ARGUMENT), a material without a file (FAILED_PRECONDITION) and damaged
bytes (DATA_LOSS)."""
import hashlib

import grpc
import pytest

from onething.intake.v1 import intake_pb2 as pb
from onething.intake.v1 import intake_pb2_grpc as pb_grpc
from services.common.audit import MemoryAuditLog
from services.common.grpc_server import ApiServer
from services.common.testing import FlakyBus
from services.intake import domain
from services.intake.api import IntakeApi
from services.intake.fakes import Clock, FakeCatalog, FakeIntakeStore, FakeLicences, MemoryBlobs
from services.intake.wiring import build_intake
from tools.client import citizen_id

S = grpc.StatusCode
APPLICANT = citizen_id("44010619900101123")
OTHER = citizen_id("44010619800101123")
PACKAGE = {
    "code": "XSECS", "name": "新生儿出生一件事", "version": 3, "audience": "AUDIENCE_PERSON", "lead_department": "wsjk",
    "region_code": "440100", "implementing_code": "",
    "materials": [{"code": "M01", "name": "父母居民身份证", "license_type_code": "111"},
                  {"code": "M02", "name": "居民户口簿"}],
    "items": [{"code": "110000000003", "name": "出生登记（落户）", "department_code": "gaj",
               "material_codes": ["M01", "M02"]}],
    "form_fields": [],
}
ID_LICENCE = {"license_id": "1.2.156.3005.2.111.X.1.001.Z", "type_code": "111", "status": "LICENSE_STATUS_VALID",
              "valid_from": "2020-01-01"}
SCAN = b"%PDF-1.4 " + bytes(range(256)) * 50


@pytest.fixture
def served(local_idp):
    intake = build_intake(store=FakeIntakeStore(FlakyBus("intake")), blobs=MemoryBlobs(),
                          catalog=FakeCatalog(PACKAGE), licences=FakeLicences(), clock=Clock(),
                          audit=MemoryAuditLog("intake"))
    intake.download_part_bytes = 5000
    name = pb.DESCRIPTOR.services_by_name["IntakeService"].full_name
    srv = ApiServer(0, [(pb_grpc.add_IntakeServiceServicer_to_server, IntakeApi(intake))], [name]).start()
    with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as channel:
        yield pb_grpc.IntakeServiceStub(channel), intake, local_idp
    srv.stop(0)


def a_case(intake, licences=()):
    """A case of APPLICANT with M01 (SCAN) and M02 handed in (M01 stood in for by a licence, if held)."""
    intake.licences.held[APPLICANT] = list(licences)
    materials = []
    for code, data in (("M01", SCAN), ("M02", b"%PDF-1.4 household register")):
        if code == "M01" and licences:
            continue
        up = intake.upload({"applicant_id": APPLICANT, "material_code": code, "file_name": "a.pdf",
                            "sha256": hashlib.sha256(data).hexdigest()}, iter([data]))
        materials.append({"material_code": code, "upload_id": up["upload_id"]})
    return intake.submit({"package_code": "XSECS", "region_code": "440100", "applicant": {"id_number": APPLICANT,
                                                                                          "name": "李华"},
                          "materials": materials, "delivery": {"channel": "DELIVERY_CHANNEL_ELECTRONIC"}})


def download(stub, case_no, code, metadata):
    messages = list(stub.DownloadMaterial(pb.DownloadMaterialRequest(case_no=case_no, material_code=code),
                                          metadata=metadata, timeout=10))
    return messages, b"".join(m.chunk for m in messages)


def refused(call, *args, **kwargs):
    with pytest.raises(grpc.RpcError) as err:
        result = call(*args, **kwargs)
        if not isinstance(result, pb.Case):
            list(result)  # a server stream answers when it is read
    return err.value.code(), err.value.details()


def test_an_officer_whose_department_holds_a_task_reads_the_case_and_its_materials(served):
    stub, intake, idp = served
    case = a_case(intake)
    gaj = idp.metadata("officer-g", "officer", "gaj", "440100")
    unknown = "440100XSECS202611269999"
    # before joint_review gave gaj a task: as a case that does not exist, word for word
    mine = refused(stub.GetCase, pb.GetCaseRequest(case_no=case.case_no), metadata=gaj, timeout=5)
    none = refused(stub.GetCase, pb.GetCaseRequest(case_no=unknown), metadata=gaj, timeout=5)
    assert mine == (S.NOT_FOUND, f"there is no case {case.case_no}") and none == (S.NOT_FOUND, f"there is no case {unknown}")
    assert refused(stub.DownloadMaterial, pb.DownloadMaterialRequest(case_no=case.case_no, material_code="M01"),
                   metadata=gaj, timeout=5) == mine
    intake.task_assigned(domain.TaskAssigned(case_no=case.case_no, item_code="110000000003", department_code="gaj",
                                             region_code="440100"))
    shown = stub.GetCase(pb.GetCaseRequest(case_no=case.case_no), metadata=gaj, timeout=5)
    assert shown.case_no == case.case_no and shown.applicant.id_number == APPLICANT
    messages, data = download(stub, case.case_no, "M01", gaj)
    assert data == SCAN and len(messages) == 3 and [len(m.chunk) for m in messages] == [5000, 5000, len(SCAN) - 10000]
    first = messages[0]
    assert (first.material_code, first.name, first.sha256, first.content_type, first.size) == (
        "M01", "父母居民身份证", hashlib.sha256(SCAN).hexdigest(), "application/pdf", len(SCAN))
    assert all(m.sha256 == "" and m.size == 0 and m.material_code == "" for m in messages[1:])  # said once
    reads = [(r["action"], r["actor"]["sub"], r["actor"]["department"], r["outcome"]) for r in intake.audit.records]
    assert reads == [("case.read", "officer-g", "gaj", "NOT_FOUND"), ("case.read", "officer-g", "gaj", "NOT_FOUND"),
                     ("material.read", "officer-g", "gaj", "NOT_FOUND"), ("case.read", "officer-g", "gaj", "ok"),
                     ("material.read", "officer-g", "gaj", "ok")]
    assert intake.audit.verify() is None


@pytest.mark.parametrize("who", ["another department", "another region", "the province", "a district"])
def test_officers_whose_department_holds_no_task_there_find_nothing(served, who):
    stub, intake, idp = served
    case = a_case(intake)
    intake.task_assigned(domain.TaskAssigned(case_no=case.case_no, department_code="gaj", region_code="440100"))
    department, region = {"another department": ("scjg", "440100"), "another region": ("gaj", "440300"),
                          "the province": ("gaj", "440000"), "a district": ("gaj", "440106")}[who]
    md = idp.metadata("officer-x", "officer", department, region)
    expected = (S.NOT_FOUND, f"there is no case {case.case_no}")
    assert refused(stub.GetCase, pb.GetCaseRequest(case_no=case.case_no), metadata=md, timeout=5) == expected
    assert refused(stub.DownloadMaterial, pb.DownloadMaterialRequest(case_no=case.case_no, material_code="M01"),
                   metadata=md, timeout=5) == expected


def test_the_applicant_and_a_clerk_on_their_behalf_read_the_materials_and_no_one_else(served):
    stub, intake, idp = served
    case = a_case(intake)
    assert download(stub, case.case_no, "M01", idp.metadata(APPLICANT, "applicant"))[1] == SCAN
    clerk = idp.metadata("clerk-1", "clerk", region="440100", on_behalf_of=APPLICANT)
    assert download(stub, case.case_no, "M02", clerk)[1] == b"%PDF-1.4 household register"
    request = pb.DownloadMaterialRequest(case_no=case.case_no, material_code="M01")
    for md in (idp.metadata(OTHER, "applicant"), idp.metadata("clerk-1", "clerk", region="440100", on_behalf_of=OTHER),
               idp.metadata("clerk-sz", "clerk", region="440300", on_behalf_of=APPLICANT)):
        assert refused(stub.DownloadMaterial, request, metadata=md, timeout=5) == (
            S.NOT_FOUND, f"there is no case {case.case_no}")
    code, details = refused(stub.DownloadMaterial, request, metadata=idp.metadata("clerk-1", "clerk", region="440100"),
                            timeout=5)
    assert code == S.PERMISSION_DENIED and "x-on-behalf-of" in details
    for role in ("operator", "sre", "service"):
        code, details = refused(stub.DownloadMaterial, request, metadata=idp.metadata(f"{role}-1", role,
                                                                                      region="440100"), timeout=5)
        assert code == S.PERMISSION_DENIED and "may call DownloadMaterial" in details
    assert refused(stub.DownloadMaterial, request, timeout=5)[0] == S.UNAUTHENTICATED
    assert [r["actor"]["sub"] for r in intake.audit.find("material.read") if r["outcome"] == "ok"] == ["clerk-1"]


def test_an_officer_is_still_refused_what_only_the_applicant_may_do(served):
    stub, intake, idp = served
    case = a_case(intake)
    intake.task_assigned(domain.TaskAssigned(case_no=case.case_no, department_code="gaj", region_code="440100"))
    gaj = idp.metadata("officer-g", "officer", "gaj", "440100")
    for call, request in ((stub.WatchCase, pb.WatchCaseRequest(case_no=case.case_no)),
                          (stub.WithdrawCase, pb.WithdrawCaseRequest(case_no=case.case_no)),
                          (stub.SupplementCase, pb.SupplementCaseRequest(case_no=case.case_no)),
                          (stub.ListCases, pb.ListCasesRequest())):
        assert refused(call, request, metadata=gaj, timeout=5)[0] == S.PERMISSION_DENIED
    assert intake.store.case(case.case_no).status is domain.SUBMITTED


@pytest.mark.parametrize("case_no, code, words", [
    ("4" * (1024 * 1024), "M01", "case_no is 1048576 characters long"),
    ("440100XSECS202611260001", "M" * 65, "material_code is 65 characters long"),
    ("440100XSECS202611260001", "", "material_code"),
    ("not-a-case", "M01", "not a case number"),
])
def test_bad_input_is_invalid_argument(served, case_no, code, words):
    stub, intake, idp = served
    a_case(intake)
    got, details = refused(stub.DownloadMaterial, pb.DownloadMaterialRequest(case_no=case_no, material_code=code),
                           metadata=idp.metadata(APPLICANT, "applicant"), timeout=10)
    assert got == S.INVALID_ARGUMENT and words in details
    if code == "M01":
        got, details = refused(stub.GetCase, pb.GetCaseRequest(case_no=case_no),
                               metadata=idp.metadata("officer-g", "officer", "gaj", "440100"), timeout=10)
        assert got == S.INVALID_ARGUMENT and words in details


def test_an_unknown_material_a_licence_and_damaged_bytes_each_have_their_status(served):
    stub, intake, idp = served
    applicant = idp.metadata(APPLICANT, "applicant")
    case = a_case(intake, licences=[ID_LICENCE])
    assert refused(stub.DownloadMaterial, pb.DownloadMaterialRequest(case_no=case.case_no, material_code="M09"),
                   metadata=applicant, timeout=5) == (S.NOT_FOUND, f"case {case.case_no} has no material 'M09'")
    code, details = refused(stub.DownloadMaterial, pb.DownloadMaterialRequest(case_no=case.case_no,
                                                                              material_code="M01"),
                            metadata=applicant, timeout=5)
    assert code == S.FAILED_PRECONDITION and ID_LICENCE["license_id"] in details
    key = next(m["object_key"] for m in case.materials if m["material_code"] == "M02")
    data, ctype, meta = intake.blobs.objects[("materials", key)]
    intake.blobs.objects[("materials", key)] = (data[:-1] + b"?", ctype, meta)
    stream = stub.DownloadMaterial(pb.DownloadMaterialRequest(case_no=case.case_no, material_code="M02"),
                                   metadata=applicant, timeout=5)
    with pytest.raises(grpc.RpcError) as err:
        list(stream)
    assert err.value.code() == S.DATA_LOSS and "does not match what was handed in" in err.value.details()


def test_the_policy_names_officers_for_reads_only_with_case_or_task():
    from services.common import policy
    for method in ("GetCase", "DownloadMaterial"):
        rule = policy.policy_for(f"/onething.intake.v1.IntakeService/{method}")
        assert rule.roles == (policy.APPLICANT, policy.CLERK, policy.OFFICER) and rule.rule == "case_or_task"
        assert rule.outside == "NOT_FOUND"
    for method in ("WatchCase", "SupplementCase", "WithdrawCase", "ListCases", "UploadMaterial", "SubmitCase"):
        assert policy.OFFICER not in policy.policy_for(f"/onething.intake.v1.IntakeService/{method}").roles
