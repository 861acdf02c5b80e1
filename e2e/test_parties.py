"""End to end: the right person on every record. A case names its parties; each licence goes to its
item's holder party with the right holder code type and the implementing body as issuer: 身后's
certificates to the deceased, 二手房's new 不动产权证书 to the buyer while the seller's old one is
superseded (whoever applies: the seller, an agent), an enterprise's licences with the credit code
type; a case without a party its package requires is refused and leaves nothing."""
import time

import grpc
import pymongo
import pytest

from e2e.waits import wait_until
from onething.common.v1 import common_pb2
from onething.elicense.v1 import elicense_pb2
from onething.intake.v1 import intake_pb2 as S
from services.common.config import settings
from services.common.ids import CODE_TYPE_CITIZEN_ID, CODE_TYPE_CREDIT_CODE, credit_code_check_char
from tools.client import applicant_md, citizen_id, holder_code_type

pytestmark = pytest.mark.e2e
FINAL = {S.CASE_STATUS_DELIVERED, S.CASE_STATUS_REJECTED}


def person(first17, name):
    return common_pb2.Applicant(id_number=citizen_id(first17), name=name, phone="13800000000")


def party(role, who):
    return common_pb2.Party(role=role, name=who.name, id_number=who.id_number)


def apply(client, applicant, package, parties, skip=()):
    codes = [c for c in client.required_materials(package) if c not in skip]
    return client.submit(applicant, client.upload_all(applicant.id_number, codes), package=package, parties=parties)


def delivered(client, case):
    case = client.wait_status(case.case_no, FINAL, timeout=120)
    assert case.status == S.CASE_STATUS_DELIVERED, S.CaseStatus.Name(case.status)
    return case


def _cases_of(applicant_id):
    s = settings()
    with pymongo.MongoClient(s.mongo_uri) as mc:
        return mc[s.db_name("intake")].cases.count_documents({"applicant.id_number": applicant_id})


def test_after_death_certificates_go_to_the_deceased(client):
    relative = person("44010619700505123", "陈建国")
    deceased = person("44010619400606123", "陈老伯")
    case = delivered(client, apply(client, relative, "SH", [party("deceased", deceased)]))
    assert [(p.role, p.id_number, p.code_type) for p in case.parties] == [
        ("deceased", deceased.id_number, CODE_TYPE_CITIZEN_ID)]
    licences = {l.type_code: l for l in client.licenses(case.case_no)}
    assert set(licences) == {"SWYXZM", "HHZM"}
    for lic in licences.values():
        assert (lic.holder_name, lic.holder_code, holder_code_type(lic)) == (
            deceased.name, deceased.id_number, CODE_TYPE_CITIZEN_ID)
        assert client.verify(lic.license_id).valid
    assert licences["SWYXZM"].issuer_name == "广州市卫生健康委员会"   # the implementing body, not a code
    assert licences["HHZM"].issuer_name == "广州市民政局"
    assert relative.id_number not in {l.holder_code for l in licences.values()}


def test_a_case_without_the_party_its_package_needs_is_refused_and_leaves_nothing(client, probe):
    relative = person("44010619700707123", "林秀")
    codes = client.required_materials("SH")
    materials = client.upload_all(relative.id_number, codes)
    before = _cases_of(relative.id_number)
    with pytest.raises(grpc.RpcError) as err:
        client.submit(relative, materials, package="SH", parties=[])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "逝者 (deceased)" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:  # a wrong check digit on the party
        client.submit(relative, materials, package="SH", parties=[common_pb2.Party(
            role="deceased", name="某人", id_number="440106194006061230")])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "check digit" in err.value.details()
    time.sleep(0.5)  # deliberate: a pause in which a case or a case_submitted would show; none may
    assert _cases_of(relative.id_number) == before == 0
    assert not [b for k, b, _ in probe.events
                if k == "case_submitted" and b.get("applicant", {}).get("id_number") == relative.id_number]


def test_a_transfer_issues_the_buyer_and_supersedes_the_sellers_certificate_whoever_applies(client):
    owner = person("44010619800808123", "黄先生")      # buys the flat first, sells it later
    first_seller = person("44010619600909123", "周女士")
    newcomer = person("44010619951010123", "吴小姐")    # buys it from him
    agent = person("44010619881111123", "中介刘")       # applies for them under a power of attorney

    # 1. the seller applies: the certificate is the buyer's all the same
    first = delivered(client, apply(client, first_seller, "ESFGH",
                                    [party("buyer", owner), party("seller", first_seller)]))
    [owners] = [l for l in client.licenses(first.case_no) if l.type_code == "BDCQZ"]
    assert (owners.holder_code, owners.holder_name, holder_code_type(owners)) == (
        owner.id_number, owner.name, CODE_TYPE_CITIZEN_ID)
    assert owners.issuer_name == "广州市规划和自然资源局" and client.verify(owners.license_id).valid

    # 2. an agent applies for the next sale: the seller's certificate stands in for the material
    #    about the seller (减材料 by party, not by applicant) and is superseded by the buyer's
    second = apply(client, agent, "ESFGH", [party("buyer", newcomer), party("seller", owner), party("agent", agent)],
                   skip=("H02",))
    ref = next(m for m in second.materials if m.material_code == "H02")
    assert ref.license_id == owners.license_id and not ref.object_key
    second = delivered(client, second)
    [newcomers] = [l for l in client.licenses(second.case_no) if l.type_code == "BDCQZ"]
    assert (newcomers.holder_code, newcomers.holder_name) == (newcomer.id_number, newcomer.name)
    assert client.verify(newcomers.license_id).valid

    check = client.verify(owners.license_id)  # public verification: masked fields, the status and why
    assert not check.valid and "superseded by " + newcomers.license_id in check.reason
    assert check.license.status == elicense_pb2.LICENSE_STATUS_SUPERSEDED
    # the holder (who never applied for either case) reads his licence in full
    old = client.elicense.GetLicense(elicense_pb2.GetLicenseRequest(license_id=owners.license_id),
                                     metadata=applicant_md(owner.id_number), timeout=10)
    assert old.status == elicense_pb2.LICENSE_STATUS_SUPERSEDED and old.superseded_by == newcomers.license_id

    # the first case hears of it: the licence listed as no longer valid, a note in its history, and
    # its delivery no longer hands the old certificate out
    def heard():
        case = client.wait_status(first.case_no, FINAL)
        return case if owners.license_id in case.revoked_license_ids else None
    case = wait_until(heard, 20, f"{owners.license_id} listed as no longer valid on {first.case_no}", interval=0.2)
    assert owners.license_id in case.revoked_license_ids
    assert any("superseded by " + newcomers.license_id in h.note for h in case.history if h.note_only)
    result = next(r for r in client.delivery_of(first.case_no).results if r.license_id == owners.license_id)
    assert result.revoked and not result.download_url


def test_an_enterprise_licence_carries_the_credit_code_type(client):
    body = "91440101MA5P00123"
    company = common_pb2.Applicant(id_number=body + credit_code_check_char(body), name="广州一件事科技有限公司")
    case = delivered(client, apply(client, company, "KBQY", [party("enterprise", company)]))
    [licence] = [l for l in client.licenses(case.case_no) if l.type_code == "YYZZ"]
    assert (licence.holder_code, licence.holder_name, holder_code_type(licence)) == (
        company.id_number, company.name, CODE_TYPE_CREDIT_CODE)
    assert licence.issuer_name == "广州市市场监督管理局"
    assert client.verify(licence.license_id).valid
