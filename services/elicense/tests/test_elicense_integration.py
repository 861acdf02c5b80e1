"""elicense's handlers against the real MongoDB-wire and S3 servers: one licence per approved item
however often the opinion arrives, its signed document in S3, verification that catches tampering."""
import time

import pytest

from services.common.errors import NotFound
from services.elicense.domain import LicenseStatus

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def elicense(test_env):
    from services.elicense.wiring import build_elicense
    return build_elicense()


def approved(case_no, decision="DECISION_APPROVE"):
    from onething.joint_review.v1 import events_pb2
    from services.common.events import from_payload
    from services.elicense.codec import opinion_of
    return opinion_of(from_payload(events_pb2.OpinionRecorded, {
        "case_no": case_no, "item_code": "110000000001", "item_name": "出生医学证明签发", "department_code": "wsjk",
        "region_code": "440100", "decision": decision, "result_type": "RESULT_TYPE_LICENSE",
        "license_type_code": "CSYXZM", "license_type_name": "出生医学证明", "issuer_name": "广州市卫生健康委员会",
        "holder": {"role": "newborn", "id_number": "11010519491231002X", "name": "李华", "code_type": "111"}}))


def test_one_licence_per_item_stored_signed_and_verifiable(elicense, probe):
    case_no = f"E{int(time.time() * 1000)}"
    first = elicense.on_opinion(approved(case_no))
    again = elicense.on_opinion(approved(case_no))
    assert first["license_id"] == again["license_id"]
    assert len(elicense.list(case_no=case_no)) == 1
    from services.elicense import document
    pdf = elicense.blobs.get("results", first["document_key"])
    assert pdf.startswith(b"%PDF") and first["document_key"].endswith(".pdf")
    doc = document.read(pdf)
    assert doc["license_id"] == first["license_id"] and doc["signature"] == first["signature"]
    valid, reason, _ = elicense.verify(first["license_id"])
    assert valid, reason
    time.sleep(0.5)
    assert [k for k, _ in probe.for_case(case_no)] == ["license_issued"]


def test_rejected_opinion_issues_nothing(elicense):
    case_no = f"E{int(time.time() * 1000)}R"
    assert elicense.on_opinion(approved(case_no, "DECISION_REJECT")) is None
    assert elicense.list(case_no=case_no) == []


def test_tampered_licence_fails_verification(elicense):
    from services.elicense.store import LicenseDoc
    case_no = f"E{int(time.time() * 1000)}T"
    lic = elicense.on_opinion(approved(case_no))
    LicenseDoc.objects(license_id=lic["license_id"]).update_one(set__fields__holder_name="王五")
    valid, reason, _ = elicense.verify(lic["license_id"])
    assert not valid and "signature" in reason
    with pytest.raises(NotFound):
        elicense.get("1.2.156.3005.2.X.Y.1.001.0")


def test_revocation_emits_an_event_and_verification_then_fails(elicense, probe):
    from services.common.errors import FailedPrecondition, InvalidArgument
    case_no = f"E{int(time.time() * 1000)}V"
    lic = elicense.on_opinion(approved(case_no))
    with pytest.raises(InvalidArgument):
        elicense.revoke(lic["license_id"], "  ", "officer-1")
    revoked = elicense.revoke(lic["license_id"], "出生信息登记错误", "officer-1")
    assert revoked["status"] == LicenseStatus.REVOKED and revoked["revoke_reason"] == "出生信息登记错误"
    valid, reason, _ = elicense.verify(lic["license_id"])
    assert not valid and "revoked" in reason
    with pytest.raises(FailedPrecondition):
        elicense.revoke(lic["license_id"], "again", "officer-1")
    time.sleep(0.5)
    assert [k for k, _ in probe.for_case(case_no)] == ["license_issued", "license_revoked"]


def test_rotated_key_signs_new_licences_and_old_ones_still_verify(elicense):
    old = elicense.on_opinion(approved(f"E{int(time.time() * 1000)}K1"))
    key = elicense.rotate_key("440100")
    new = elicense.on_opinion(approved(f"E{int(time.time() * 1000)}K2"))
    assert new["key_id"] == key.key_id != old["key_id"]
    assert elicense.verify(old["license_id"])[0] and elicense.verify(new["license_id"])[0]
    assert [k.active for k in elicense.keys("440100")].count(True) == 1


def test_offline_command_agrees_with_verify_license(elicense, tmp_path):
    from services.elicense import document, domain
    from tools import verify_license
    lic = elicense.on_opinion(approved(f"E{int(time.time() * 1000)}O"))
    key = elicense.store.key(lic["key_id"])
    good = tmp_path / "good.pdf"
    good.write_bytes(elicense.blobs.get("results", lic["document_key"]))
    assert verify_license.main([str(good), "--public-key", key.public_key]) == 0
    assert elicense.verify(lic["license_id"])[0] is True
    # one field changed, signature kept: both refuse
    forged = tmp_path / "forged.pdf"
    forged.write_bytes(document.render(dict(lic, holder_name="王五"), key.public_key))
    assert verify_license.main([str(forged), "--public-key", key.public_key]) == 1
    # expired: the offline check and the domain rule used by VerifyLicense agree
    (ok, why), _ = verify_license.verify_file(str(good), key.public_key, today="2999-01-01")
    assert ok is True, why  # no end date: valid for good
    expired = dict(lic, valid_to="2020-01-01")
    expired["signature"] = domain.sign(expired, key.private_key)
    path = tmp_path / "expired.pdf"
    path.write_bytes(document.render(expired, key.public_key))
    assert verify_license.main([str(path), "--public-key", key.public_key]) == 1
    assert domain.verify(expired, key.public_key)[0] is False
    # another issuer's key: refused
    _, other = domain.new_key()
    assert verify_license.main([str(good), "--public-key", other]) == 1
    (tmp_path / "junk.pdf").write_bytes(b"not a pdf")
    assert verify_license.main([str(tmp_path / "junk.pdf"), "--public-key", key.public_key]) == 2


def test_revocation_and_key_rotation_over_grpc_need_the_right_token(elicense):
    import grpc

    from onething.elicense.v1 import elicense_pb2 as pb
    from onething.elicense.v1 import elicense_pb2_grpc as pb_grpc
    from services.common.grpc_server import ApiServer
    from services.elicense.api import ElicenseApi
    from tools.client import bearer, officer
    server = ApiServer(0, [(pb_grpc.add_ElicenseServiceServicer_to_server, ElicenseApi(elicense))],
                       ["onething.elicense.v1.ElicenseService"]).start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = pb_grpc.ElicenseServiceStub(channel)
            lic = elicense.on_opinion(approved(f"E{int(time.time() * 1000)}G"))
            req = pb.RevokeLicenseRequest(license_id=lic["license_id"], reason="登记错误")
            for metadata, code in (((), grpc.StatusCode.UNAUTHENTICATED),
                                   (bearer("11010519491231002X", "applicant"), grpc.StatusCode.PERMISSION_DENIED),
                                   (officer("gaj"), grpc.StatusCode.PERMISSION_DENIED),
                                   (officer("wsjk", "440300"), grpc.StatusCode.PERMISSION_DENIED)):
                with pytest.raises(grpc.RpcError) as err:
                    stub.RevokeLicense(req, metadata=metadata, timeout=5)
                assert err.value.code() == code
            assert elicense.get(lic["license_id"])["status"] == LicenseStatus.VALID
            revoked = stub.RevokeLicense(req, metadata=officer("wsjk", sub="officer-w"), timeout=5)
            assert revoked.status == pb.LICENSE_STATUS_REVOKED
            rotate = pb.RotateSigningKeyRequest(region_code="440100")
            with pytest.raises(grpc.RpcError) as err:
                stub.RotateSigningKey(rotate, metadata=officer("wsjk"), timeout=5)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            key = stub.RotateSigningKey(rotate, metadata=bearer("op-1", "operator", region="440100"), timeout=5)
            assert key.active and key.region_code == "440100"
    finally:
        server.stop(0)


def test_a_transfer_supersedes_the_sellers_certificate_in_the_store(elicense, probe):
    """The buyer's 不动产权证书 marks the seller's SUPERSEDED in MongoDB (compare-and-set from VALID),
    with `license_revoked` naming the new licence from the old one's outbox; a redelivery changes
    nothing."""
    from onething.joint_review.v1 import events_pb2
    from services.common.events import from_payload
    from services.elicense.codec import opinion_of
    from tools.client import citizen_id
    stamp = int(time.time() * 1000)
    seller, buyer = citizen_id(f"4401061980{stamp % 10**7:07d}"[:17]), citizen_id(f"4401061990{stamp % 10**7:07d}"[:17])

    def transfer(case_no, to, supersedes=None):
        payload = {"case_no": case_no, "item_code": "160000000002", "department_code": "zrzy", "region_code": "440100",
                   "decision": "DECISION_APPROVE", "result_type": "RESULT_TYPE_LICENSE", "license_type_code": "BDCQZ",
                   "license_type_name": "不动产权证书", "issuer_name": "广州市规划和自然资源局",
                   "holder": {"role": "buyer", "name": "某人", "id_number": to, "code_type": "111"}}
        if supersedes:
            payload["supersedes"] = supersedes
        return opinion_of(from_payload(events_pb2.OpinionRecorded, payload))

    old = elicense.on_opinion(transfer(f"E{stamp}S1", seller))
    event = transfer(f"E{stamp}S2", buyer, {"holder_code": seller, "license_type_code": "BDCQZ",
                                            "license_ids": [old["license_id"]], "party": "seller"})
    new = elicense.on_opinion(event)
    gone = elicense.get(old["license_id"])
    assert gone["status"] == LicenseStatus.SUPERSEDED and gone["superseded_by"] == new["license_id"]
    assert elicense.get(new["license_id"])["status"] == LicenseStatus.VALID
    assert not elicense.verify(old["license_id"])[0]
    elicense.on_opinion(event)  # redelivered
    time.sleep(0.5)
    revoked = [b for k, b in probe.for_case(f"E{stamp}S1") if k == "license_revoked"]
    assert len(revoked) == 1 and revoked[0]["superseded_by"] == new["license_id"]
