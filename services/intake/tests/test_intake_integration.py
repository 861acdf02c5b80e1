"""intake's handlers against the real servers: SecantusDB, SeaweedFS and RabbitMQ (this run's own
vhost, databases and buckets); the catalog is the real catalog handler on its own database."""
import hashlib
import threading
import time

import pytest

from services.common.config import settings
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, TooLarge
from tools.client import citizen_id

pytestmark = pytest.mark.integration
APPLICANT = {"id_number": citizen_id("44010619900101123"), "name": "李华"}


@pytest.fixture(scope="module")
def intake(test_env):
    from services.catalog.handlers import Catalog
    from services.catalog.store import CatalogStore
    from services.common import mongo
    from services.intake.wiring import build_intake
    mongo.connect("catalog")
    catalog = Catalog(CatalogStore())
    catalog.load(settings().catalog_data)
    handlers = build_intake(with_catalog=False)
    handlers.catalog = catalog
    handlers.max_upload_bytes = 64 * 1024
    return handlers


def upload(intake, code, data=None, sha=None, applicant=APPLICANT):
    data = data or f"%PDF-1.4 {code} {time.time()}".encode()
    header = {"applicant_id": applicant["id_number"], "material_code": code, "file_name": "a.pdf",
              "sha256": sha if sha is not None else hashlib.sha256(data).hexdigest()}
    return intake.upload(header, iter([data[:10], data[10:]]))


def request(intake, codes=("M01", "M02", "M03", "M04"), **change):
    req = {"package_code": "XSECS", "region_code": "440100", "applicant": dict(APPLICANT),
           "materials": [{"material_code": c, "upload_id": upload(intake, c)["upload_id"]} for c in codes],
           "delivery": {"channel": "DELIVERY_CHANNEL_ELECTRONIC"}, "form": {"child_name": "李小明"}}
    req.update(change)
    return req


def case_count():
    from services.intake.store import CaseDoc
    return CaseDoc.objects.count()


def test_upload_is_stored_with_its_checksum_and_type(intake):
    up = upload(intake, "M01", b"%PDF-1.4 hello")
    assert up["sha256"] == hashlib.sha256(b"%PDF-1.4 hello").hexdigest() and up["size"] == 14
    stored = intake.store.upload(up["upload_id"])
    assert stored.content_type == "application/pdf"
    assert intake.blobs.get("materials", stored.object_key) == b"%PDF-1.4 hello"


def test_upload_with_wrong_checksum_or_too_large_stores_nothing(intake):
    before = len(intake.blobs.list("materials", "uploads/"))
    with pytest.raises(InvalidArgument, match="sha256"):
        upload(intake, "M01", b"%PDF-1.4 x", sha="0" * 64)
    with pytest.raises(TooLarge):
        upload(intake, "M01", b"x" * (64 * 1024 + 1))
    assert len(intake.blobs.list("materials", "uploads/")) == before


def test_submit_creates_one_case_with_materials_under_it_and_one_event(intake, probe):
    case = intake.submit(request(intake))
    assert case.case_no.startswith("440100XSECS") and case.status == "CASE_STATUS_SUBMITTED"
    keys = intake.blobs.list("materials", f"cases/{case.case_no}/")
    assert len(keys) == 4 and all(m["object_key"] in keys for m in case.materials)
    deadline = time.time() + 5
    while time.time() < deadline and not probe.for_case(case.case_no):
        time.sleep(0.05)
    events = probe.for_case(case.case_no)
    assert [k for k, _ in events] == ["case_submitted"]
    assert events[0][1]["package"]["code"] == "XSECS" and len(events[0][1]["materials"]) == 4
    assert intake.store.case(case.case_no).outbox == []


@pytest.mark.parametrize("change, error, words", [
    ({"package_code": "NOPE"}, NotFound, "no package"),
    ({"codes": ("M01", "M02", "M04")}, FailedPrecondition, r"结婚证 \(M03\)"),
    ({"applicant": {"id_number": "440106199001011230", "name": "李华"}}, InvalidArgument, "check digit"),
    ({"delivery": {"channel": "DELIVERY_CHANNEL_MAIL"}}, InvalidArgument, "postal address"),
    ({"materials": [{"material_code": "M01", "upload_id": "nope"}]}, FailedPrecondition, "does not exist"),
])
def test_bad_submission_leaves_no_case_and_no_event(intake, probe, change, error, words):
    change = dict(change)
    codes = change.pop("codes", ("M01", "M02", "M03", "M04"))
    req = request(intake, codes=codes, **change)
    before = case_count()
    with pytest.raises(error, match=words):
        intake.submit(req)
    time.sleep(0.3)
    assert case_count() == before
    assert "case_submitted" not in probe.keys()


def test_material_uploaded_by_someone_else_is_refused(intake):
    other = {"id_number": citizen_id("44010619800101123"), "name": "张三"}
    req = request(intake)
    req["materials"][0]["upload_id"] = upload(intake, "M01", applicant=other)["upload_id"]
    with pytest.raises(FailedPrecondition, match="another applicant"):
        intake.submit(req)


def test_same_idempotency_key_gives_the_same_case_and_one_event(intake, probe):
    req = request(intake, idempotency_key=f"key-{time.time()}")
    results = []
    threads = [threading.Thread(target=lambda: results.append(intake.submit(dict(req)).case_no)) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1
    time.sleep(0.5)
    assert [k for k, _ in probe.for_case(results[0])] == ["case_submitted"]


def test_concurrent_submissions_get_distinct_case_numbers(intake):
    reqs = [request(intake, idempotency_key=f"k{i}-{time.time()}") for i in range(10)]
    results = []
    threads = [threading.Thread(target=lambda r=r: results.append(intake.submit(r).case_no)) for r in reqs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 10 and len(set(results)) == 10


def test_status_only_moves_forward(intake):
    from onething.joint_review.v1 import events_pb2
    case = intake.submit(request(intake))
    assert intake.case_concluded(events_pb2.CaseConcluded(case_no=case.case_no, approved=True, license_ids=["L1"]))
    assert not intake.case_concluded(events_pb2.CaseConcluded(case_no=case.case_no, approved=False))
    stored = intake.get_case(case.case_no)
    assert stored.status == "CASE_STATUS_APPROVED" and stored.license_ids == ["L1"]
    with pytest.raises(NotFound):
        intake.get_case("440100XSECS202001010001")
