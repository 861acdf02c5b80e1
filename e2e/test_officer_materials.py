"""End to end on the running suite: an officer sees the materials of the cases their department holds
a task in, through intake, with their own token. joint_review assigns the 新生儿出生 case's tasks
(`task_assigned.<department>.<region>`), intake's worker records each department; an officer of each
reads the case (GetCase) and downloads the materials its task names (DownloadMaterial), byte for
byte as the applicant uploaded them. An officer of a department without a task, or of the right
department in another region, finds nothing, as for a case that does not exist."""
import hashlib

import grpc
import pytest

from e2e.waits import events_of, wait_handled
from onething.common.v1 import common_pb2
from onething.intake.v1 import intake_pb2
from tools.client import bearer, citizen_id, demo_pdf, officer

pytestmark = pytest.mark.e2e
REGION = "440100"
APPLICANT = common_pb2.Applicant(id_number=citizen_id("44010619880808123"), name="林夏", phone="13800000000")


def _refused(call, request, metadata):
    with pytest.raises(grpc.RpcError) as err:
        answer = call(request, metadata=metadata, timeout=20)
        if not isinstance(answer, intake_pb2.Case):
            list(answer)
    return err.value.code(), err.value.details()


def test_officers_read_the_materials_of_their_tasks_and_no_one_elses(client, probe):
    uploaded = {code: demo_pdf(f"officer-materials {code}") for code in client.required_materials()}
    materials = [intake_pb2.MaterialSubmission(material_code=code, upload_id=client.upload(
        APPLICANT.id_number, code, data).upload_id) for code, data in uploaded.items()]
    case = client.submit(APPLICANT, materials)
    # the departments intake has recorded (tasks_assigned), with the materials their tasks name (each
    # change's task_assigned events go out before its tasks_assigned, on the same channel)
    recorded = wait_handled(probe, case.case_no, "tasks_assigned", "intake.on_tasks_assigned", timeout=60)
    holding = {h["department_code"] for _, payload in recorded for h in payload["holders"]}
    departments: dict[str, set[str]] = {}
    for _, payload, _ in events_of(probe, case.case_no, "task_assigned"):
        if payload["department_code"] in holding:
            departments.setdefault(payload["department_code"], set()).update(
                m["material_code"] for m in payload.get("materials", []))
    assert departments, "no task was assigned"

    for department, codes in sorted(departments.items()):
        md = officer(department, REGION, sub=f"officer-{department}-materials")
        shown = client.intake.GetCase(intake_pb2.GetCaseRequest(case_no=case.case_no), metadata=md, timeout=20)
        assert shown.case_no == case.case_no
        for code in sorted(codes):
            first, data = client.download_material(case.case_no, code, metadata=md)
            assert data == uploaded[code] and first.sha256 == hashlib.sha256(data).hexdigest()
            assert first.content_type == "application/pdf"

    absent = (grpc.StatusCode.NOT_FOUND, f"there is no case {case.case_no}")
    some_code = sorted(uploaded)[0]
    outsiders = [officer("scjg", REGION)] if "scjg" not in departments else []
    outsiders += [officer(sorted(departments)[0], "440300")]
    for md in outsiders:
        assert _refused(client.intake.GetCase, intake_pb2.GetCaseRequest(case_no=case.case_no), md) == absent
        assert _refused(client.intake.DownloadMaterial, intake_pb2.DownloadMaterialRequest(
            case_no=case.case_no, material_code=some_code), md) == absent

    first, data = client.download_material(case.case_no, some_code, metadata=bearer(APPLICANT.id_number, "applicant"))
    assert data == uploaded[some_code]
