"""End to end, personal data and the audit log: after a case to its delivery, staff reads with
tokens, a mail delivery re-sent by a clerk and refusals that used to repeat what was sent, no log
line and no span of any process holds a full citizen ID number or mobile number; every service's
audit chain verifies, and the case's records name who did what (desks, officer, clerk)."""
import glob
import io
import json
import os
import time

import grpc
import pytest

from onething.common.v1 import common_pb2
from onething.delivery.v1 import delivery_pb2
from onething.intake.v1 import intake_pb2
from onething.joint_review.v1 import joint_review_pb2
from services.common.config import settings
from services.common.privacy import CITIZEN_ID_RE, PHONE_RE
from tools import audit as audit_tool
from tools.client import bearer, citizen_id, officer

pytestmark = pytest.mark.e2e
APPLICANT = common_pb2.Applicant(id_number=citizen_id("44010619880808123"), name="周敏", phone="13912345678")
ADDRESS = common_pb2.Address(recipient="周敏", phone="13912345678", region_code="440106", line="天河路100号1栋101",
                             postcode="510620")


def _audit(*argv):
    out = io.StringIO()
    return audit_tool.main(list(argv), out=out, err=out), out.getvalue()


def _until(check, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if check():
                return
        except grpc.RpcError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not reached within {timeout} s")


def _findings(paths):
    found = []
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for n, line in enumerate(fh, 1):
                if CITIZEN_ID_RE.search(line) or PHONE_RE.search(line):
                    found.append(f"{os.path.basename(path)}:{n}: {line.strip()[:300]}")
    return found


def test_logs_and_spans_hold_no_identity_numbers_or_phones_and_the_audit_chains_hold(client):
    case = client.newborn_case(applicant=APPLICANT)
    case = client.wait_status(case.case_no, {intake_pb2.CASE_STATUS_DELIVERED, intake_pb2.CASE_STATUS_REJECTED},
                              timeout=120)
    assert case.status == intake_pb2.CASE_STATUS_DELIVERED

    # staff reads with tokens: audited, the actor from the token
    client.review.GetSession(joint_review_pb2.GetSessionRequest(case_no=case.case_no), metadata=officer("gaj"),
                             timeout=10)
    client.intake.GetCase(intake_pb2.GetCaseRequest(case_no=case.case_no),  # for the applicant at the window
                          metadata=bearer("clerk-5", "clerk", region="440100", on_behalf_of=APPLICANT.id_number),
                          timeout=10)

    # a mail case whose parcel comes back, sent again by a clerk (from the token, or named in the
    # request and marked unauthenticated where the call takes no token)
    materials = client.upload_all(APPLICANT.id_number, client.required_materials())
    mail = client.submit(APPLICANT, materials, channel_=common_pb2.DELIVERY_CHANNEL_MAIL, address=ADDRESS)
    _until(lambda: client.delivery_of(mail.case_no).status == delivery_pb2.DELIVERY_STATUS_PREPARED, 120)
    client.record_dispatch(mail.case_no, "EMS", "EA473124829CN", clerk_id="clerk-6")
    client.record_undeliverable(mail.case_no, "EA473124829CN", "查无此人")
    client.wait_status(mail.case_no, {intake_pb2.CASE_STATUS_DELIVERY_FAILED}, timeout=60)
    client.redispatch(mail.case_no, ADDRESS, "SF", "SF1234567890123", clerk_id="clerk-6")

    # refusals that used to repeat the number, the phone or the form value back
    wrong = common_pb2.Applicant(id_number=APPLICANT.id_number[:17] + ("1" if APPLICANT.id_number[17] != "1" else "2"),
                                 name="周敏", phone="13912345678")
    for submit in (lambda: client.submit(wrong, materials),
                   lambda: client.submit(APPLICANT, materials, channel_=common_pb2.DELIVERY_CHANNEL_MAIL,
                                         address=common_pb2.Address(recipient="周敏", phone="1391234567",
                                                                    region_code="440106", line="天河路100号1栋101",
                                                                    postcode="510620"))):
        with pytest.raises(grpc.RpcError) as err:
            submit()
        assert err.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED)
        assert not (CITIZEN_ID_RE.search(err.value.details()) or PHONE_RE.search(err.value.details()))

    # the audit chains verify; the case's records say who did what
    code, out = _audit("verify")
    assert code == 0, out
    code, out = _audit("list", "--case", case.case_no, "--json")
    records = [json.loads(line) for line in out.splitlines()]
    seen = {(r["service"], r["action"], r["actor"]["sub"], r["actor"]["auth"], r["outcome"]) for r in records}
    assert ("joint_review", "opinion.record", "desk:wsjk:440100", "service", "ok") in seen
    assert ("joint_review", "session.read", "officer-gaj", "token", "ok") in seen
    assert ("intake", "case.read", "clerk-5", "token", "ok") in seen
    code, out = _audit("list", "--case", mail.case_no, "--service", "delivery", "--json")
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["action"] for r in records if r["outcome"] == "ok" and r["action"].startswith("dispatch.")] == [
        "dispatch.record", "dispatch.redispatch"]
    assert all(r["actor"]["sub"] and r["actor"]["auth"] in ("token", "unauthenticated") for r in records)
    assert "天河路" not in out and "13912345678" not in out

    # no process logged or traced a full identity number or phone
    s = settings()
    files = glob.glob(os.path.join(s.var_dir, "log", "*.log")) + glob.glob(os.path.join(s.spans_dir, "*.jsonl"))
    assert files
    found = _findings(files)
    assert not found, "personal data in logs or spans:\n" + "\n".join(found[:20])
