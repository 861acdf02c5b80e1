"""Officers read the cases their department holds a task in, and every reader the materials of the
cases they may see, unit (no servers): intake's use cases as services/intake/wiring.py builds them on
the shared fake store and object storage in memory. The departments holding a task are learnt from
joint_review's assignments (once each, with the case's version); a material comes back in parts
read one at a time, checked against the size and sha256 kept since its upload; staff reads (and
refusals) are in the audit log."""
import dataclasses
import hashlib

import pytest

from services.common.audit import AuditActor, MemoryAuditLog
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.common.testing import FlakyBus
from services.intake import domain
from services.intake.fakes import Clock, FakeCatalog, FakeIntakeStore, FakeLicences, MemoryBlobs
from services.intake.wiring import build_intake
from tools.client import citizen_id

APPLICANT = {"id_number": citizen_id("44010619900101123"), "name": "李华"}
PACKAGE = {
    "code": "XSECS", "name": "新生儿出生一件事", "version": 3, "audience": "AUDIENCE_PERSON", "lead_department": "wsjk",
    "region_code": "440100", "implementing_code": "",
    "materials": [{"code": "M01", "name": "父母居民身份证", "license_type_code": "111"},
                  {"code": "M02", "name": "居民户口簿"}],
    "items": [{"code": "110000000001", "name": "出生医学证明签发", "department_code": "wsjk", "material_codes": ["M01"]},
              {"code": "110000000003", "name": "出生登记（落户）", "department_code": "gaj",
               "material_codes": ["M01", "M02"]}],
    "form_fields": [],
}
ID_LICENCE = {"license_id": "1.2.156.3005.2.111.X.1.001.Z", "type_code": "111", "status": "LICENSE_STATUS_VALID",
              "valid_from": "2020-01-01"}
GAJ = AuditActor("officer-g", "officer", "gaj", "440100")
SCJG = AuditActor("officer-s", "officer", "scjg", "440100")
SCAN = b"%PDF-1.4 " + bytes(range(256)) * 40  # 10,249 bytes: several parts


@pytest.fixture
def s():
    store, blobs, audit = FakeIntakeStore(FlakyBus("intake")), MemoryBlobs(), MemoryAuditLog("intake")
    intake = build_intake(store=store, blobs=blobs, catalog=FakeCatalog(PACKAGE), licences=FakeLicences(),
                          clock=Clock(), audit=audit)
    intake.download_part_bytes = 4096
    return intake


def upload(intake, code, data):
    return intake.upload({"applicant_id": APPLICANT["id_number"], "material_code": code, "file_name": "a.pdf",
                          "sha256": hashlib.sha256(data).hexdigest()}, iter([data]))["upload_id"]


def submit(intake, materials=(("M01", SCAN), ("M02", b"%PDF-1.4 household register"))):
    return intake.submit({"package_code": "XSECS", "region_code": "440100", "applicant": dict(APPLICANT),
                          "materials": [{"material_code": c, "upload_id": upload(intake, c, d)} for c, d in materials],
                          "delivery": {"channel": "DELIVERY_CHANNEL_ELECTRONIC"}})


def assigned(case_no, department="gaj", region="440100", item="110000000003"):
    return domain.TaskAssigned(case_no=case_no, item_code=item, department_code=department, region_code=region)


def officer_of(department, region="440100"):
    """The api's rule for an officer (case_or_task), as IntakeApi._readable builds it."""
    return lambda case: domain.holds_task(case, department, region)


def read_all(intake, case_no, code, **kwargs):
    material, parts = intake.download(case_no, code, **kwargs)
    return material, list(parts)


# --- the departments holding a task -------------------------------------------------------------------


def test_each_department_and_region_is_recorded_once_without_touching_the_history(s):
    case = submit(s)
    assert s.task_assigned(assigned(case.case_no, "wsjk", item="110000000001"))
    assert s.task_assigned(assigned(case.case_no, "gaj"))
    assert not s.task_assigned(assigned(case.case_no, "gaj"))                      # redelivered
    assert not s.task_assigned(assigned(case.case_no, "gaj", item="110000000009"))  # another item of gaj
    assert s.task_assigned(assigned(case.case_no, "gaj", region="440106"))          # a district's gaj
    got = s.store.case(case.case_no)
    assert got.task_holders == [domain.TaskHolder("wsjk", "440100"), domain.TaskHolder("gaj", "440100"),
                                domain.TaskHolder("gaj", "440106")]
    assert got.history == case.history and got.status is case.status and got.version == case.version + 3
    assert s.store.pending(case.case_no) == []  # and no event


def test_an_assignment_without_department_or_region_is_refused_and_an_unknown_case_changes_nothing(s):
    case = submit(s)
    for department, region in (("", "440100"), ("gaj", "")):
        with pytest.raises(InvalidArgument, match="department and region"):
            s.task_assigned(assigned(case.case_no, department, region))
    assert not s.task_assigned(assigned("440100XSECS202611269999"))
    assert not s.task_assigned(assigned(""))
    assert s.store.case(case.case_no).task_holders == []


def test_an_assignment_is_decided_again_when_another_change_came_first(s):
    case = submit(s)
    real_save, calls = s.store.save, []

    def save(changed, version, events=()):
        calls.append(version)
        if len(calls) == 1:  # the applicant withdrew meanwhile: this save is stale
            stored = s.store.case(changed.case_no)
            real_save(stored.changed(domain.WITHDRAWN, "withdrawn", "t"), stored.version)
        return real_save(changed, version, events)
    s.store.save = save
    assert s.task_assigned(assigned(case.case_no))
    got = s.store.case(case.case_no)
    assert got.status is domain.WITHDRAWN and got.task_holders == [domain.TaskHolder("gaj", "440100")]
    assert calls == [case.version, case.version + 1]


def test_an_assignment_that_never_gets_saved_is_raised_to_be_tried_again(s):
    case = submit(s)
    s.store.save = lambda changed, version, events=(): False
    with pytest.raises(RuntimeError, match="kept changing"):
        s.task_assigned(assigned(case.case_no))


# --- reading the case ---------------------------------------------------------------------------------


def test_an_officer_reads_a_case_their_department_holds_a_task_in_and_the_read_is_audited(s):
    case = submit(s)
    with pytest.raises(NotFound, match=f"there is no case {case.case_no}"):  # before the assignment
        s.get_case(case.case_no, actor=GAJ, allow=officer_of("gaj"))
    s.task_assigned(assigned(case.case_no))
    assert s.get_case(case.case_no, actor=GAJ, allow=officer_of("gaj")).case_no == case.case_no
    for department, region in (("scjg", "440100"), ("gaj", "440300"), ("gaj", "440000"), ("", "440100")):
        with pytest.raises(NotFound, match=f"there is no case {case.case_no}$"):
            s.get_case(case.case_no, actor=SCJG, allow=officer_of(department, region))
    reads = [(r["actor"]["sub"], r["outcome"]) for r in s.audit.find("case.read", case.case_no)]
    assert reads == [("officer-g", "NOT_FOUND"), ("officer-g", "ok")] + [("officer-s", "NOT_FOUND")] * 4


# --- reading a material -------------------------------------------------------------------------------


def test_the_applicant_gets_a_material_in_parts_as_it_was_handed_in(s):
    case = submit(s)
    material, parts = read_all(s, case.case_no, "M01")
    assert b"".join(parts) == SCAN and [len(p) for p in parts] == [4096, 4096, len(SCAN) - 8192]
    assert material == domain.MaterialFile("M01", "父母居民身份证", f"content/sha256/{hashlib.sha256(SCAN).hexdigest()}",
                                           hashlib.sha256(SCAN).hexdigest(), len(SCAN), "application/pdf")
    assert s.audit.records == []  # the applicant's own read is not a staff read


def test_the_parts_are_read_one_at_a_time_as_the_reader_takes_them(s):
    case = submit(s)
    s.blobs.ranges.clear()
    _, parts = s.download(case.case_no, "M01")
    assert s.blobs.ranges == []  # nothing read before the first part is asked for
    assert next(parts) == SCAN[:4096]
    key = f"content/sha256/{hashlib.sha256(SCAN).hexdigest()}"
    assert s.blobs.ranges == [("materials", key, 0, 4096)]
    list(parts)
    assert s.blobs.ranges == [("materials", key, 0, 4096), ("materials", key, 4096, 4096),
                              ("materials", key, 8192, len(SCAN) - 8192 + 1)]  # one more: there is none


def test_a_material_that_ends_on_a_part_boundary_comes_whole_and_checked(s):
    case = submit(s)
    s.download_part_bytes = len(SCAN)
    s.blobs.ranges.clear()
    _, parts = read_all(s, case.case_no, "M01")
    key = f"content/sha256/{hashlib.sha256(SCAN).hexdigest()}"
    assert parts == [SCAN]
    assert s.blobs.ranges == [("materials", key, 0, len(SCAN)), ("materials", key, len(SCAN), 1)]


def test_an_empty_material_is_one_empty_part(s):
    """Uploads refuse empty files; a case stored with one anyway still tells its reader what it is."""
    case = submit(s)
    empty = hashlib.sha256(b"").hexdigest()
    s.blobs.put("materials", f"content/sha256/{empty}", b"")
    refs = [dict(m, object_key=f"content/sha256/{empty}", sha256=empty, size=0) if m["material_code"] == "M02" else m
            for m in case.materials]
    assert s.store.save(dataclasses.replace(case, materials=refs), case.version)
    material, parts = read_all(s, case.case_no, "M02")
    assert parts == [b""] and material.size == 0 and material.sha256 == empty


def test_an_officer_of_a_department_holding_a_task_reads_a_material_and_the_read_is_audited(s):
    case = submit(s)
    s.task_assigned(assigned(case.case_no))
    _, parts = read_all(s, case.case_no, "M02", actor=GAJ, allow=officer_of("gaj"))
    assert b"".join(parts) == b"%PDF-1.4 household register"
    with pytest.raises(NotFound, match=f"there is no case {case.case_no}$"):
        s.download(case.case_no, "M02", actor=SCJG, allow=officer_of("scjg"))
    with pytest.raises(NotFound, match=f"there is no case {case.case_no}$"):
        s.download(case.case_no, "M02", actor=GAJ, allow=officer_of("gaj", "440300"))
    reads = [(r["actor"]["sub"], r["outcome"], r["details"]) for r in s.audit.find("material.read", case.case_no)]
    assert reads == [("officer-g", "ok", {"material_code": "M02"}),
                     ("officer-s", "NOT_FOUND", {"material_code": "M02"}),
                     ("officer-g", "NOT_FOUND", {"material_code": "M02"})]


def test_a_case_one_may_not_see_answers_as_one_that_does_not_exist_and_reads_nothing(s):
    case = submit(s)
    s.blobs.ranges.clear()
    with pytest.raises(NotFound) as hidden:
        s.download(case.case_no, "M01", allow=lambda c: False)
    with pytest.raises(NotFound) as missing:
        s.download("440100XSECS202611269999", "M01")
    assert str(hidden.value) == f"there is no case {case.case_no}"
    assert str(missing.value) == "there is no case 440100XSECS202611269999"
    with pytest.raises(NotFound) as unknown_material_of_hidden:  # whether it has M99 does not leak either
        s.download(case.case_no, "M99", allow=lambda c: False)
    assert str(unknown_material_of_hidden.value) == str(hidden.value)
    assert s.blobs.ranges == []


@pytest.mark.parametrize("case_no, code, error, words", [
    ("nope", "M01", InvalidArgument, "not a case number"),
    ("", "M01", InvalidArgument, "not a case number"),
    ("440100XSECS202611260001", "", InvalidArgument, "material_code"),
    ("440100XSECS202611260001", "M99", NotFound, "has no material 'M99'"),
    ("440100XSECS202611260001", "M03", NotFound, "has no material 'M03'"),
])
def test_bad_requests_and_unknown_materials_are_refused(s, case_no, code, error, words):
    assert submit(s).case_no == "440100XSECS202611260001"
    with pytest.raises(error, match=words):
        s.download(case_no, code)


def test_a_material_a_licence_stands_in_for_has_no_file(s):
    s.licences.held[APPLICANT["id_number"]] = [ID_LICENCE]
    case = submit(s, materials=(("M02", b"%PDF-1.4 household register"),))
    with pytest.raises(FailedPrecondition, match=f"licence {ID_LICENCE['license_id']} stands in for it"):
        s.download(case.case_no, "M01")


def test_after_a_supplement_the_material_handed_in_last_comes_back(s):
    case = submit(s)
    s.rectification_requested(domain.RectificationRequested(case_no=case.case_no, item_code="110000000003",
                                                            department_code="gaj", material_codes=("M02",), round=1))
    again = b"%PDF-1.4 household register, legible this time"
    s.supplement({"case_no": case.case_no, "applicant_id": APPLICANT["id_number"],
                  "materials": [{"material_code": "M02", "upload_id": upload(s, "M02", again)}]})
    material, parts = read_all(s, case.case_no, "M02")
    assert b"".join(parts) == again and material.sha256 == hashlib.sha256(again).hexdigest()


def _stored_key(s, case_no, code):
    return next(m["object_key"] for m in s.store.case(case_no).materials if m["material_code"] == code)


@pytest.mark.parametrize("damage", ["changed", "shorter", "longer", "gone"])
def test_stored_bytes_that_no_longer_match_end_the_stream_with_data_loss(s, damage):
    case = submit(s)
    key = _stored_key(s, case.case_no, "M01")
    data, ctype, meta = s.blobs.objects[("materials", key)]
    if damage == "gone":
        del s.blobs.objects[("materials", key)]
    else:
        bad = {"changed": data[:-1] + b"!", "shorter": data[:-10], "longer": data + b"!"}[damage]
        s.blobs.objects[("materials", key)] = (bad, ctype, meta)
    _, parts = s.download(case.case_no, "M01")
    got = []
    with pytest.raises(domain.MaterialDamaged, match="does not match what was handed in") as err:
        for part in parts:
            got.append(part)
    assert err.value.code == "DATA_LOSS"
    assert len(b"".join(got)) < len(SCAN)  # the part that does not add up is not sent
    assert dataclasses.asdict(s.store.case(case.case_no)) == dataclasses.asdict(case)  # nothing changed
