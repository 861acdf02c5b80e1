"""intake's handlers against the real servers: SecantusDB, SeaweedFS and RabbitMQ (this run's own
vhost, databases and buckets). The catalog and the licence source are in-process stand-ins with a
fixed 新生儿出生-like package, so these tests do not move when the seed catalog is edited."""
import hashlib
import json
import threading
import time

import pytest

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, TooLarge
from services.intake import domain
from services.intake.fakes import FakeCatalog, FakeLicences
from tools.client import citizen_id

pytestmark = pytest.mark.integration
APPLICANT = {"id_number": citizen_id("44010619900101123"), "name": "李华"}
OTHER = {"id_number": citizen_id("44010619800101123"), "name": "张三"}

PACKAGE = {
    "code": "XSECS", "name": "新生儿出生一件事", "version": 3, "audience": "AUDIENCE_PERSON", "lead_department": "wsjk",
    "region_code": "440100", "implementing_code": "",
    "materials": [{"code": "M01", "name": "父母居民身份证", "license_type_code": "111"},
                  {"code": "M02", "name": "居民户口簿"}, {"code": "M03", "name": "结婚证"},
                  {"code": "M04", "name": "母亲银行卡"}],
    "items": [{"code": "110000000001", "name": "出生医学证明签发", "department_code": "wsjk", "material_codes": ["M01"]},
              {"code": "110000000003", "name": "出生登记（落户）", "department_code": "gaj",
               "material_codes": ["M01", "M02", "M03"]},
              {"code": "110000000006", "name": "生育医疗费用报销", "department_code": "ybj",
               "material_codes": ["M01", "M04"]}],
    "form_fields": [],
}


@pytest.fixture(scope="module")
def intake(test_env):
    from services.intake.wiring import build_intake
    handlers = build_intake(with_catalog=False, catalog=FakeCatalog(PACKAGE), licences=FakeLicences())
    handlers.max_upload_bytes = 64 * 1024
    return handlers


@pytest.fixture(autouse=True)
def fresh_fakes(intake):
    intake.catalog.reset()
    intake.licences.reset()


def pdf(label=""):
    return f"%PDF-1.4 {label} {time.time_ns()}".encode()


def upload(intake, code, data=None, sha=None, applicant=APPLICANT, **header):
    data = data or pdf(code)
    head = {"applicant_id": applicant["id_number"], "material_code": code, "file_name": "a.pdf",
            "sha256": sha if sha is not None else hashlib.sha256(data).hexdigest(), **header}
    return intake.upload(head, iter([data[:10], data[10:]]))


def request(intake, codes=("M01", "M02", "M03", "M04"), applicant=APPLICANT, **change):
    req = {"package_code": "XSECS", "region_code": "440100", "applicant": dict(applicant),
           "materials": [{"material_code": c, "upload_id": upload(intake, c, applicant=applicant)["upload_id"]}
                         for c in codes],
           "delivery": {"channel": "DELIVERY_CHANNEL_ELECTRONIC"}, "form": {"child_name": "李小明"}}
    req.update(change)
    return req


def case_count():
    from services.intake.store import CaseDoc
    return CaseDoc.objects.count()


def upload_count():
    from services.intake.store import UploadDoc
    return UploadDoc.objects.count()


def wait_events(probe, case_no, n=1, timeout=5):
    deadline = time.time() + timeout
    while time.time() < deadline and len(probe.for_case(case_no)) < n:
        time.sleep(0.05)
    time.sleep(0.3)  # and nothing more arrives
    return probe.for_case(case_no)


def snapshot(intake, case_no):
    """The case as stored (every field, its outbox and version included) and its manifest."""
    from services.intake.store import CaseDoc
    return (CaseDoc._get_collection().find_one({"_id": case_no}),
            intake.blobs.get("materials", f"cases/{case_no}/manifest.json"))


# --- uploads ---------------------------------------------------------------------------------


def test_upload_is_stored_by_content_with_its_checksum_and_type(intake):
    data = pdf("hello")
    up = upload(intake, "M01", data)
    sha = hashlib.sha256(data).hexdigest()
    assert up["sha256"] == sha and up["size"] == len(data) and up["content_type"] == "application/pdf"
    stored = intake.store.upload(up["upload_id"])
    assert (stored.applicant_id, stored.material_code, stored.file_name) == (APPLICANT["id_number"], "M01", "a.pdf")
    assert stored.content_type == "application/pdf" and stored.sha256 == sha and stored.size == len(data)
    assert stored.object_key == f"content/sha256/{sha}"
    assert intake.blobs.get("materials", stored.object_key) == data


def test_identical_content_is_stored_once(intake):
    data = pdf("twice")
    puts = []
    real_put, real_stream = intake.blobs.put, intake.blobs.put_stream  # as the upload is sent (hash declared or not)
    intake.blobs.put = lambda *a, **k: (puts.append(a[1]), real_put(*a, **k))
    intake.blobs.put_stream = lambda *a, **k: (puts.append(a[1]), real_stream(*a, **k))
    try:
        a = upload(intake, "M01", data)
        b = upload(intake, "M02", data, applicant=OTHER)
    finally:
        intake.blobs.put, intake.blobs.put_stream = real_put, real_stream
    assert a["upload_id"] != b["upload_id"]
    ka, kb = intake.store.upload(a["upload_id"]).object_key, intake.store.upload(b["upload_id"]).object_key
    assert ka == kb and puts == [ka]  # the second upload did not write the bytes again
    assert intake.store.upload(b["upload_id"]).applicant_id == OTHER["id_number"]
    assert intake.blobs.list("materials", ka) == [ka]


def _nothing_stored(intake, before):
    assert (upload_count(), intake.blobs.list("materials", "content/")) == before


@pytest.mark.parametrize("data, header, error, words", [
    (b"%PDF-1.4 x", {"sha": "0" * 64}, InvalidArgument, "sha256"),
    (b"%PDF-1.4 " + b"x" * (64 * 1024), {}, TooLarge, "limit"),
    (b"PK\x03\x04\x14\x00\x06\x00" + b"z" * 100, {}, InvalidArgument, "application/zip"),
    (b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00", {}, InvalidArgument, "not accepted"),
    (b"just some text, named scan.pdf", {}, InvalidArgument, "text/plain"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, {"content_type": "application/pdf"}, InvalidArgument, "declared"),
    (b"%PDF-1.4 short", {"size": 999}, InvalidArgument, "declared"),
    (b"%PDF-1.4 " + b"x" * 100, {"size": 20}, InvalidArgument, "declared"),  # more than declared
    (b"%PDF-1.4 x", {"size": -5}, InvalidArgument, "negative|0 .not declared"),
    (b"%PDF-1.4 x", {"applicant": {"id_number": "123"}}, InvalidArgument, "applicant_id"),
])
def test_refused_upload_stores_no_object_and_no_record(intake, data, header, error, words):
    header = dict(header)
    before = (upload_count(), intake.blobs.list("materials", "content/"))
    sha = header.pop("sha", None)
    applicant = header.pop("applicant", APPLICANT)
    with pytest.raises(error, match=words):
        upload(intake, "M01", data, sha=sha, applicant=applicant, **header)
    _nothing_stored(intake, before)


def test_declared_oversize_is_refused_before_reading_the_stream(intake):
    def never():
        raise AssertionError("the stream was read")
        yield b""
    before = (upload_count(), intake.blobs.list("materials", "content/"))
    with pytest.raises(TooLarge):
        intake.upload({"applicant_id": APPLICANT["id_number"], "material_code": "M01", "size": 10 ** 9}, never())
    _nothing_stored(intake, before)


def test_wrong_type_is_refused_after_its_first_bytes(intake):
    read = []

    def chunks():
        for part in (b"PK\x03\x04" + b"\x00" * 20, b"rest", b"more"):
            read.append(part)
            yield part
    with pytest.raises(InvalidArgument, match="zip"):
        intake.upload({"applicant_id": APPLICANT["id_number"], "material_code": "M01"}, chunks())
    assert len(read) == 1


# --- submission ------------------------------------------------------------------------------


def test_submit_creates_one_case_with_a_manifest_and_one_event(intake, probe):
    case = intake.submit(request(intake, situations={"maternity": "yes"}))
    assert case.case_no.startswith("440100XSECS") and case.status == domain.SUBMITTED
    assert intake.catalog.calls[-1] == ("XSECS", "440100", {"maternity": "yes"})
    assert case.situations == {"maternity": "yes"} and case.package_version == 3
    assert intake.blobs.list("materials", f"cases/{case.case_no}/") == [f"cases/{case.case_no}/manifest.json"]
    manifest = json.loads(intake.blobs.get("materials", f"cases/{case.case_no}/manifest.json"))
    assert [m["material_code"] for m in manifest["materials"]] == ["M01", "M02", "M03", "M04"]
    for m, listed in zip(case.materials, manifest["materials"], strict=True):
        assert listed["object_key"] == m["object_key"] == f"content/sha256/{m['sha256']}"
        assert listed["sha256"] == m["sha256"] and listed["content_type"] == "application/pdf" and listed["size"] > 0
        assert hashlib.sha256(intake.blobs.get("materials", m["object_key"])).hexdigest() == m["sha256"]
    events = wait_events(probe, case.case_no)
    assert [k for k, _ in events] == ["case_submitted"]
    assert events[0][1]["package_snapshot"]["code"] == "XSECS" and len(events[0][1]["materials"]) == 4
    assert "package" not in events[0][1]  # the catalog's message no longer travels
    assert intake.store.pending(case.case_no) == []


def test_case_number_extends_the_implementing_code_with_the_date_and_a_sequence(intake):
    intake.catalog.package["implementing_code"] = "11440100MB2C91234X1440100000001"
    a = intake.submit(request(intake)).case_no
    b = intake.submit(request(intake)).case_no
    day = f"{domain.today():%Y%m%d}"
    for no in (a, b):
        assert no.startswith("11440100MB2C91234X1440100000001" + day) and len(no) == 31 + 8 + 4
    assert int(b[-4:]) == int(a[-4:]) + 1


@pytest.mark.parametrize("change, error, words", [
    ({"package_code": "NOPE"}, NotFound, "no package"),
    ({"codes": ("M01", "M02", "M04")}, FailedPrecondition, r"结婚证 \(M03\)"),
    ({"applicant": {"id_number": "440106199001011230", "name": "李华"}}, InvalidArgument, "check digit"),
    ({"delivery": {"channel": "DELIVERY_CHANNEL_MAIL"}}, InvalidArgument, "postal address"),
    ({"materials": [{"material_code": "M01", "upload_id": "nope"}]}, FailedPrecondition, "does not exist"),
    ({"region_code": ""}, InvalidArgument, "region_code"),
    ({"situations": {"maternity": ""}}, InvalidArgument, "situations"),
    ({"idempotency_key": "k" * 129}, InvalidArgument, "idempotency key"),
    ({"form_fields": True, "form": {"child_name": "李小明"}}, InvalidArgument, r"form: 出生日期 \(birth_date\) is required"),
    ({"form_fields": True, "form": {"child_name": "李小明", "birth_date": "2026-11-20", "mother_id": "440106199001011230"}},
     InvalidArgument, r"\(mother_id\).*check digit"),
    ({"form_fields": True, "form": {"child_name": "李小明", "birth_date": "2026-11-20", "child_gender": "x"}},
     InvalidArgument, r"\(child_gender\) must be one of 男、女"),
    ({"duplicate": True}, InvalidArgument, "more than once"),
])
def test_bad_submission_leaves_no_case_no_manifest_and_no_event(intake, probe, change, error, words):
    change = dict(change)
    codes = change.pop("codes", ("M01", "M02", "M03", "M04"))
    if change.pop("form_fields", False):
        intake.catalog.package["form_fields"] = [
            {"key": "child_name", "label": "新生儿姓名", "type": "string", "required": True},
            {"key": "birth_date", "label": "出生日期", "type": "date", "required": True},
            {"key": "child_gender", "label": "新生儿性别", "type": "choice", "choices": ["男", "女"]},
            {"key": "mother_id", "label": "母亲公民身份号码", "type": "string", "validator": "citizen_id"}]
    duplicate = change.pop("duplicate", False)
    applicant = change.pop("applicant", None)
    req = request(intake, codes=codes, **change)
    if applicant:
        req["applicant"] = applicant
    if duplicate:
        req["materials"].append(dict(req["materials"][0]))
    before = (case_count(), intake.blobs.list("materials", "cases/"))
    with pytest.raises(error, match=words):
        intake.submit(req)
    time.sleep(0.3)
    assert (case_count(), intake.blobs.list("materials", "cases/")) == before
    assert "case_submitted" not in probe.keys()


def test_form_that_matches_the_package_is_accepted(intake):
    intake.catalog.package["form_fields"] = [{"key": "birth_date", "label": "出生日期", "type": "date", "required": True}]
    case = intake.submit(request(intake, form={"birth_date": "2026-11-20"}))
    assert case.form == {"birth_date": "2026-11-20"}


def test_material_uploaded_by_someone_else_is_refused(intake):
    req = request(intake)
    req["materials"][0]["upload_id"] = upload(intake, "M01", applicant=OTHER)["upload_id"]
    with pytest.raises(FailedPrecondition, match="another applicant"):
        intake.submit(req)


def _concurrently(fn, args):
    results, errors = [], []

    def run(a):
        try:
            results.append(fn(a))
        except Exception as exc:
            errors.append(exc)
    threads = [threading.Thread(target=run, args=(a,)) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def test_twenty_submissions_with_one_key_give_one_case_and_one_event(intake, probe):
    req = request(intake, idempotency_key=f"key-{time.time_ns()}")
    before = case_count()
    results = _concurrently(lambda r: intake.submit(dict(r)).case_no, [req] * 20)
    assert len(results) == 20 and len(set(results)) == 1
    assert case_count() == before + 1
    assert [k for k, _ in wait_events(probe, results[0])] == ["case_submitted"]
    assert intake.blobs.list("materials", "cases/") .count(f"cases/{results[0]}/manifest.json") == 1


def test_twenty_submissions_with_distinct_keys_give_twenty_case_numbers(intake):
    reqs = [request(intake, idempotency_key=f"k{i}-{time.time_ns()}") for i in range(20)]
    results = _concurrently(lambda r: intake.submit(r).case_no, reqs)
    assert len(results) == 20 and len(set(results)) == 20
    assert len({r[:-4] for r in results}) == 1  # one prefix and day, twenty sequence numbers


def test_the_same_key_from_another_applicant_is_another_case(intake):
    key = f"shared-{time.time_ns()}"
    a = intake.submit(request(intake, idempotency_key=key))
    b = intake.submit(request(intake, applicant=OTHER, idempotency_key=key))
    assert a.case_no != b.case_no and b.applicant["id_number"] == OTHER["id_number"]


# --- 减材料 ------------------------------------------------------------------------------------

ID_LICENCE = {"license_id": "1.2.156.3005.2.111.X.1.001.Z", "type_code": "111", "status": "LICENSE_STATUS_VALID",
              "valid_from": "2020-01-01"}


def test_material_a_held_licence_stands_in_for_is_not_asked_for(intake, probe):
    intake.licences.held[APPLICANT["id_number"]] = [ID_LICENCE]
    case = intake.submit(request(intake, codes=("M02", "M03", "M04")))
    m01 = next(m for m in case.materials if m["material_code"] == "M01")
    assert m01["license_id"] == ID_LICENCE["license_id"] and not m01.get("object_key")
    manifest = json.loads(intake.blobs.get("materials", f"cases/{case.case_no}/manifest.json"))
    assert {"material_code": "M01", "license_id": ID_LICENCE["license_id"]}.items() <= \
        next(m for m in manifest["materials"] if m["material_code"] == "M01").items()
    event = wait_events(probe, case.case_no)[0][1]
    assert any(m["material_code"] == "M01" and m["license_id"] == ID_LICENCE["license_id"] for m in event["materials"])


@pytest.mark.parametrize("situation", ["none", "revoked", "expired", "other holder", "elicense down"])
def test_without_a_valid_licence_the_material_is_asked_for(intake, situation):
    lic = dict(ID_LICENCE)
    holder = APPLICANT["id_number"]
    if situation == "revoked":
        lic["status"] = "LICENSE_STATUS_REVOKED"
    elif situation == "expired":
        lic["valid_to"] = "2021-01-01"
    elif situation == "other holder":
        holder = OTHER["id_number"]
    if situation != "none":
        intake.licences.held[holder] = [lic]
    intake.licences.down = situation == "elicense down"
    before = case_count()
    with pytest.raises(FailedPrecondition, match=r"父母居民身份证 \(M01\)"):
        intake.submit(request(intake, codes=("M02", "M03", "M04")))
    assert case_count() == before


# --- 补正 --------------------------------------------------------------------------------------


def _rectify(intake, case_no, codes=("M02",), item="110000000003", dept="gaj"):
    return intake.rectification_requested(domain.RectificationRequested(
        case_no=case_no, item_code=item, department_code=dept, material_codes=list(codes), reason="照片模糊"))


def _subs(intake, codes, applicant=APPLICANT, data=None):
    return [{"material_code": c, "upload_id": upload(intake, c, data, applicant=applicant)["upload_id"]} for c in codes]


def test_rectification_waits_for_the_named_materials_and_supplement_resumes(intake, probe):
    case = intake.submit(request(intake))
    old = {m["material_code"]: m for m in case.materials}
    assert _rectify(intake, case.case_no, ("M02",))
    assert not _rectify(intake, case.case_no, ("M02",))  # redelivered: nothing changes
    assert _rectify(intake, case.case_no, ("M03", "M02"), item="110000000006", dept="ybj")
    doc = intake.get_case(case.case_no)
    assert doc.status == domain.RECTIFYING
    assert doc.rectification["material_codes"] == ["M02", "M03"]
    assert doc.rectification["resume_status"] == domain.SUBMITTED
    assert len(doc.history) == 3

    new_m02 = pdf("new M02")
    subs = _subs(intake, ["M02"], data=new_m02) + _subs(intake, ["M03"])
    done = intake.supplement({"case_no": case.case_no, "applicant_id": APPLICANT["id_number"], "materials": subs})
    assert done.status == domain.SUBMITTED and not done.rectification
    now = {m["material_code"]: m for m in done.materials}
    assert list(now) == ["M01", "M02", "M03", "M04"]
    assert now["M01"] == old["M01"] and now["M04"] == old["M04"]
    assert now["M02"]["sha256"] == hashlib.sha256(new_m02).hexdigest() != old["M02"]["sha256"]
    manifest = json.loads(intake.blobs.get("materials", f"cases/{case.case_no}/manifest.json"))
    assert {m["material_code"]: m["sha256"] for m in manifest["materials"]} == {c: m["sha256"] for c, m in now.items()}
    events = wait_events(probe, case.case_no, 2)
    assert [k for k, _ in events] == ["case_submitted", "case_supplemented"]
    body = events[1][1]
    assert body["item_codes"] == ["110000000003", "110000000006"]
    assert [m["material_code"] for m in body["materials"]] == ["M02", "M03"]
    assert intake.store.pending(case.case_no) == []


def _rectifying_case(intake, codes=("M02", "M03")):
    case = intake.submit(request(intake))
    assert _rectify(intake, case.case_no, codes)
    return case.case_no


@pytest.mark.parametrize("kind, error, words", [
    ("other applicant", PermissionDenied, "only the applicant"),
    ("no applicant", InvalidArgument, "applicant_id"),
    ("not named", InvalidArgument, "did not ask for M04"),
    ("missing named", FailedPrecondition, "asks for M03 as well"),
    ("no material code", InvalidArgument, "material_code"),
    ("upload of another material", InvalidArgument, "holds material"),
    ("unknown upload", FailedPrecondition, "does not exist"),
    ("bad case number", InvalidArgument, "not a case number"),
    ("unknown case", NotFound, "no case"),
])
def test_refused_supplement_changes_nothing_and_publishes_nothing(intake, probe, kind, error, words):
    case_no = _rectifying_case(intake)
    subs = _subs(intake, ["M02", "M03"])
    req = {"case_no": case_no, "applicant_id": APPLICANT["id_number"], "materials": subs}
    if kind == "other applicant":
        req["applicant_id"] = OTHER["id_number"]
    elif kind == "no applicant":
        req["applicant_id"] = ""
    elif kind == "not named":
        req["materials"] = subs + _subs(intake, ["M04"])
    elif kind == "missing named":
        req["materials"] = subs[:1]
    elif kind == "no material code":
        subs[0]["material_code"] = ""
    elif kind == "upload of another material":
        subs[0]["upload_id"] = subs[1]["upload_id"]
    elif kind == "unknown upload":
        subs[0]["upload_id"] = "nope"
    elif kind == "bad case number":
        req["case_no"] = "nope"
    elif kind == "unknown case":
        req["case_no"] = "440100XSECS209901019999"
    wait_events(probe, case_no)
    before = snapshot(intake, case_no)
    with pytest.raises(error, match=words):
        intake.supplement(req)
    time.sleep(0.3)
    assert snapshot(intake, case_no) == before
    assert [k for k, _ in probe.for_case(case_no)] == ["case_submitted"]


def test_supplement_of_a_case_not_waiting_for_materials_is_refused(intake, probe):
    case = intake.submit(request(intake))
    wait_events(probe, case.case_no)
    before = snapshot(intake, case.case_no)
    with pytest.raises(FailedPrecondition, match="RECTIFYING"):
        intake.supplement({"case_no": case.case_no, "applicant_id": APPLICANT["id_number"],
                           "materials": _subs(intake, ["M02"])})
    assert snapshot(intake, case.case_no) == before
    assert [k for k, _ in probe.for_case(case.case_no)] == ["case_submitted"]


def test_rectification_of_a_concluded_case_changes_nothing(intake):
    case = intake.submit(request(intake))
    assert intake.case_concluded(domain.CaseConcluded(case_no=case.case_no, approved=True))
    assert not _rectify(intake, case.case_no)
    assert intake.get_case(case.case_no).status == domain.APPROVED
    assert not _rectify(intake, "440100XSECS209901019999")


# --- withdrawal ------------------------------------------------------------------------------


@pytest.mark.parametrize("rectifying", [False, True])
def test_withdraw_before_conclusion_and_a_late_conclusion_changes_nothing(intake, probe, rectifying):
    case_no = _rectifying_case(intake) if rectifying else intake.submit(request(intake)).case_no
    done = intake.withdraw({"case_no": case_no, "applicant_id": APPLICANT["id_number"], "reason": "不再办理"})
    assert done.status == domain.WITHDRAWN and done.history[-1].note == "withdrawn: 不再办理"
    assert not done.rectification
    events = wait_events(probe, case_no, 2)
    assert [k for k, _ in events] == ["case_submitted", "case_withdrawn"]
    assert events[1][1] == {"case_no": case_no, "reason": "不再办理", "applicant_id": APPLICANT["id_number"],
                            "region_code": "440100", "package_code": "XSECS", "acted_by": "applicant"}
    assert not intake.case_concluded(domain.CaseConcluded(case_no=case_no, approved=True, license_ids=["L"]))
    assert not _rectify(intake, case_no)
    stored = intake.get_case(case_no)
    assert stored.status == domain.WITHDRAWN and stored.license_ids == []


@pytest.mark.parametrize("kind, error, words", [
    ("other applicant", PermissionDenied, "only the applicant"),
    ("approved", FailedPrecondition, "APPROVED already"),
    ("rejected", FailedPrecondition, "REJECTED already"),
    ("withdrawn", FailedPrecondition, "WITHDRAWN already"),
    ("long reason", InvalidArgument, "500"),
    ("unknown case", NotFound, "no case"),
])
def test_refused_withdrawal_changes_nothing_and_publishes_nothing(intake, probe, kind, error, words):
    case_no = intake.submit(request(intake)).case_no
    req = {"case_no": case_no, "applicant_id": APPLICANT["id_number"], "reason": ""}
    if kind == "other applicant":
        req["applicant_id"] = OTHER["id_number"]
    elif kind in ("approved", "rejected"):
        intake.case_concluded(domain.CaseConcluded(case_no=case_no, approved=kind == "approved"))
    elif kind == "withdrawn":
        intake.withdraw(dict(req))
    elif kind == "long reason":
        req["reason"] = "太" * 501
    elif kind == "unknown case":
        req["case_no"] = "440100XSECS209901019999"
    time.sleep(0.3)
    seen = len(probe.for_case(case_no))
    before = snapshot(intake, case_no)
    with pytest.raises(error, match=words):
        intake.withdraw(req)
    time.sleep(0.3)
    assert snapshot(intake, case_no) == before
    assert len(probe.for_case(case_no)) == seen


# --- watching and listing --------------------------------------------------------------------


def test_watch_streams_each_status_change_until_a_final_status(intake):
    case_no = intake.submit(request(intake)).case_no
    seen = []
    watcher = threading.Thread(target=lambda: seen.extend(d.status for d in intake.watch(case_no)))
    watcher.start()
    time.sleep(0.5)
    _rectify(intake, case_no, ("M02",))
    time.sleep(0.5)
    intake.case_concluded(domain.CaseConcluded(case_no=case_no, approved=False, reason="不符合条件"))
    watcher.join(10)
    assert not watcher.is_alive()
    assert seen == [domain.SUBMITTED, domain.RECTIFYING, domain.REJECTED]


def test_list_cases_newest_first_in_pages(intake):
    applicant = {"id_number": citizen_id("44010619880808" + f"{time.time_ns() % 1000:03d}"), "name": "周敏"}
    made = [intake.submit(request(intake, applicant=applicant)).case_no for _ in range(3)]
    page, token = intake.list_cases({"applicant_id": applicant["id_number"], "page_size": 2})
    assert [d.case_no for d in page] == made[::-1][:2] and token
    rest, token2 = intake.list_cases({"applicant_id": applicant["id_number"], "page_size": 2, "page_token": token})
    assert [d.case_no for d in rest] == made[:1] and token2 == ""
    everything, _ = intake.list_cases({"applicant_id": applicant["id_number"]})
    assert [d.case_no for d in everything] == made[::-1]
    assert all(d.applicant["id_number"] == applicant["id_number"] for d in everything)


@pytest.mark.parametrize("req, words", [
    ({}, "name the applicant"), ({"applicant_id": "12345"}, "neither"),
    ({"applicant_id": APPLICANT["id_number"], "page_token": "garbage!"}, "page_token"),
    ({"applicant_id": APPLICANT["id_number"], "page_size": -1}, "negative"),
])
def test_list_cases_refuses_bad_requests(intake, req, words):
    with pytest.raises(InvalidArgument, match=words):
        intake.list_cases(req)


def test_status_only_moves_forward(intake):
    case = intake.submit(request(intake))
    assert intake.case_concluded(domain.CaseConcluded(case_no=case.case_no, approved=True, license_ids=["L1"]))
    assert not intake.case_concluded(domain.CaseConcluded(case_no=case.case_no, approved=False))
    stored = intake.get_case(case.case_no)
    assert stored.status == domain.APPROVED and stored.license_ids == ["L1"]
    with pytest.raises(NotFound):
        intake.get_case("440100XSECS202001010001")


def test_licences_are_kept_when_delivery_is_reported_before_the_conclusion(intake):
    case = intake.submit(request(intake))
    assert intake.delivery_completed(domain.DeliveryCompleted(case_no=case.case_no))
    assert not intake.case_concluded(domain.CaseConcluded(case_no=case.case_no, approved=True,
                                                              license_ids=["L1", "L2"]))
    stored = intake.get_case(case.case_no)
    assert stored.status == domain.DELIVERED and sorted(stored.license_ids) == ["L1", "L2"]


def test_a_redelivered_rectification_round_is_not_asked_again_and_the_supplement_names_its_round(intake, probe):

    def ask(round_):
        return intake.rectification_requested(domain.RectificationRequested(
            case_no=case_no, item_code="110000000003", department_code="gaj", material_codes=["M02"],
            reason="照片模糊", round=round_))

    case_no = intake.submit(request(intake)).case_no
    assert ask(1) and not ask(1)
    done = intake.supplement({"case_no": case_no, "applicant_id": APPLICANT["id_number"],
                              "materials": _subs(intake, ["M02"])})
    assert done.status == domain.SUBMITTED
    assert not ask(1)                                   # the old request arriving again
    assert intake.get_case(case_no).status == domain.SUBMITTED
    supplemented = [b for k, b in wait_events(probe, case_no, 2) if k == "case_supplemented"]
    assert supplemented and supplemented[0]["rounds"] == {"110000000003": 1}
    assert ask(2) and intake.get_case(case_no).status == domain.RECTIFYING  # a new round is asked


# --- what the other services report, recorded on the real store -------------------------------


def test_review_delivery_failure_redispatch_and_revocation_on_the_case(intake):
    from onething.intake.v1 import intake_pb2
    from services.intake.api import case_to_proto
    case_no = intake.submit(request(intake)).case_no
    steps = [
        (intake.session_opened, domain.SessionOpened(case_no=case_no, item_codes=["I1"], department_codes=["gaj"])),
        (intake.task_overdue, domain.TaskOverdue(case_no=case_no, item_code="I1", department_code="gaj",
                                                     elapsed_days=6, limit_days=5)),
        (intake.case_concluded, domain.CaseConcluded(case_no=case_no, approved=True, license_ids=["L1", "L2"])),
        (intake.delivery_dispatched, domain.DeliveryDispatched(
            case_no=case_no, by_mail=True, carrier="EMS", tracking_number="EA473124829CN", attempt=1)),
        (intake.delivery_failed, domain.DeliveryFailed(case_no=case_no, reason="查无此人",
                                                                attempt=1)),
    ]
    for handler, event in steps:
        assert handler(event), handler.__name__
        assert not handler(event), handler.__name__  # redelivered: nothing changes
    failed = intake.get_case(case_no)
    assert failed.status == domain.DELIVERY_FAILED and failed.delivery_attempt == 1
    assert intake.license_revoked(domain.LicenseRevoked(license_id="L1", case_no=case_no, reason="信息有误"))
    assert not intake.license_revoked(domain.LicenseRevoked(license_id="L1", case_no=case_no))
    assert intake.delivery_dispatched(domain.DeliveryDispatched(
        case_no=case_no, by_mail=True, carrier="SF", tracking_number="SF1234567890123", attempt=2))
    assert not intake.delivery_failed(domain.DeliveryFailed(case_no=case_no, attempt=1))
    assert intake.delivery_completed(domain.DeliveryCompleted(case_no=case_no, attempt=2))

    shown = case_to_proto(intake.get_case(case_no))
    S = intake_pb2
    assert [h.status for h in shown.history if not h.note_only] == [
        S.CASE_STATUS_SUBMITTED, S.CASE_STATUS_IN_REVIEW, S.CASE_STATUS_APPROVED, S.CASE_STATUS_DELIVERY_FAILED,
        S.CASE_STATUS_APPROVED, S.CASE_STATUS_DELIVERED]
    notes = [h.note for h in shown.history if h.note_only]
    assert len(notes) == 3 and "督办" in notes[0] and "EA473124829CN" in notes[1] and "信息有误" in notes[2]
    assert list(shown.revoked_license_ids) == ["L1"] and sorted(shown.license_ids) == ["L1", "L2"]
    assert shown.status == S.CASE_STATUS_DELIVERED


def test_watch_sends_changes_that_follow_each_other_within_one_poll(intake):
    case_no = intake.submit(request(intake)).case_no
    intake.watch_poll_s = 0.5
    seen = []
    watcher = threading.Thread(target=lambda: seen.extend(d.status for d in intake.watch(case_no)))
    try:
        watcher.start()
        time.sleep(0.2)
        # four changes inside one poll interval: a status poll would see only the last
        intake.session_opened(domain.SessionOpened(case_no=case_no))
        intake.task_overdue(domain.TaskOverdue(case_no=case_no, item_code="I1"))
        intake.case_concluded(domain.CaseConcluded(case_no=case_no, approved=True))
        intake.delivery_failed(domain.DeliveryFailed(case_no=case_no, attempt=1, reason="查无此人"))
        intake.delivery_completed(domain.DeliveryCompleted(case_no=case_no, attempt=2))
        time.sleep(0.3)
        intake.case_concluded(domain.CaseConcluded(case_no=case_no, approved=False))  # changes nothing
        intake.evaluation_received(domain.EvaluationReceived(case_no=case_no))
        watcher.join(10)
    finally:
        intake.watch_poll_s = 0.2
    assert not watcher.is_alive()
    assert seen == [domain.SUBMITTED, domain.IN_REVIEW, domain.APPROVED,
                    domain.DELIVERY_FAILED, domain.DELIVERED, domain.RATED]


# --- parties (当事人) -----------------------------------------------------------------------------

SELLER = {"role": "seller", "name": "卖方乙", "id_number": citizen_id("44010619800202123")}
BUYER = {"role": "buyer", "name": "买方甲", "id_number": OTHER["id_number"]}


@pytest.fixture
def house(intake):
    """The stand-in package turned into a transfer: buyer and seller required, M03 about the seller."""
    pkg = intake.catalog.package
    pkg["parties"] = [{"role": "buyer", "name": "买方", "id_kind": "any", "required": True},
                      {"role": "seller", "name": "卖方", "id_kind": "any", "required": True},
                      {"role": "agent", "name": "代理人", "id_kind": "citizen_id"}]
    next(m for m in pkg["materials"] if m["code"] == "M03").update(license_type_code="BDCQZ", party="seller")
    return pkg


def test_parties_are_kept_on_the_case_and_travel_in_case_submitted(intake, probe, house):
    case = intake.submit(request(intake, parties=[dict(BUYER), dict(SELLER, code_type="111")]))
    assert [(p["role"], p["id_number"], p["code_type"]) for p in case.parties] == [
        ("buyer", BUYER["id_number"], "111"), ("seller", SELLER["id_number"], "111")]
    event = wait_events(probe, case.case_no)[0][1]
    assert [p["role"] for p in event["parties"]] == ["buyer", "seller"]
    # the snapshot names whom each material is about (the seller's certificate), not the catalog's roles
    assert {"code": "M03", "party": "seller", "license_type_code": "BDCQZ"} in event["package_snapshot"]["materials"]
    assert "package" not in event


@pytest.mark.parametrize("parties, words", [
    ([BUYER], r"name the party 卖方 \(seller\)"),
    ([BUYER, dict(SELLER, id_number="440106198002021230")], "check digit"),
    ([BUYER, SELLER, {"role": "deceased", "name": "x", "id_number": APPLICANT["id_number"]}], "names no party"),
])
def test_a_missing_or_wrong_party_writes_nothing(intake, probe, house, parties, words):
    req = request(intake, parties=[dict(p) for p in parties])
    before = (case_count(), intake.blobs.list("materials", "cases/"))
    with pytest.raises(InvalidArgument, match=words):
        intake.submit(req)
    time.sleep(0.3)
    assert (case_count(), intake.blobs.list("materials", "cases/")) == before
    assert "case_submitted" not in probe.keys()


def test_the_sellers_licence_stands_in_for_the_material_about_the_seller(intake, probe, house):
    """Whoever applies (here the applicant is neither party), the certificate the seller holds is
    not asked for; a licence of that type the applicant holds does not count for it."""
    cert = dict(ID_LICENCE, license_id="1.2.156.3005.2.BDCQZ.X.1.001.Z", type_code="BDCQZ")
    intake.licences.held[APPLICANT["id_number"]] = [dict(cert, license_id="APPLICANTS")]
    with pytest.raises(FailedPrecondition, match=r"结婚证 \(M03\)"):
        intake.submit(request(intake, codes=("M01", "M02", "M04"), parties=[dict(BUYER), dict(SELLER)]))
    intake.licences.held[SELLER["id_number"]] = [cert]
    case = intake.submit(request(intake, codes=("M01", "M02", "M04"), parties=[dict(BUYER), dict(SELLER)]))
    m03 = next(m for m in case.materials if m["material_code"] == "M03")
    assert m03["license_id"] == cert["license_id"] and not m03.get("object_key")
