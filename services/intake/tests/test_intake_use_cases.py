"""intake's use cases, unit (no servers): the handlers as services/intake/wiring.py builds them, with
every adapter an override: the shared fake store (services/intake/fakes.py) publishing on a
recording bus, object storage in memory, a stand-in catalog and elicense, a clock that says when.
Submission (and its idempotent retries), reading, listing, withdrawal, 补正 and what the other
services report, each seen in the case the store keeps, the events on the bus and the manifest."""
import dataclasses
import hashlib
import json

import pytest

from services.common.audit import AuditActor, MemoryAuditLog
from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    TooLarge,
)
from services.common.testing import FlakyBus
from services.intake import domain
from services.intake.fakes import Clock, FakeCatalog, FakeIntakeStore, FakeLicences, MemoryBlobs
from services.intake.wiring import build_intake
from tools.client import citizen_id

APPLICANT = {"id_number": citizen_id("44010619900101123"), "name": "李华"}
OTHER = {"id_number": citizen_id("44010619800101123"), "name": "张三"}
PACKAGE = {
    "code": "XSECS", "name": "新生儿出生一件事", "version": 3, "audience": "AUDIENCE_PERSON", "lead_department": "wsjk",
    "region_code": "440100", "implementing_code": "",
    "materials": [{"code": "M01", "name": "父母居民身份证", "license_type_code": "111"},
                  {"code": "M02", "name": "居民户口簿"}, {"code": "M03", "name": "结婚证"}],
    "items": [{"code": "110000000001", "name": "出生医学证明签发", "department_code": "wsjk", "material_codes": ["M01"]},
              {"code": "110000000003", "name": "出生登记（落户）", "department_code": "gaj",
               "material_codes": ["M01", "M02", "M03"]}],
    "form_fields": [{"key": "child_name", "label": "新生儿姓名", "type": "string", "required": True}],
}
ID_LICENCE = {"license_id": "1.2.156.3005.2.111.X.1.001.Z", "type_code": "111", "status": "LICENSE_STATUS_VALID",
              "valid_from": "2020-01-01"}
CLERK = AuditActor("clerk-7", "clerk", region="440100")


@dataclasses.dataclass
class Suite:
    intake: object
    store: FakeIntakeStore
    bus: FlakyBus
    blobs: MemoryBlobs
    catalog: FakeCatalog
    licences: FakeLicences
    clock: Clock
    audit: MemoryAuditLog

    def events(self, case_no=None):
        return [(t, p) for t, p, h in self.bus.published if case_no is None or h.get("case_no") == case_no]

    def manifest(self, case_no):
        return json.loads(self.blobs.get("materials", f"cases/{case_no}/manifest.json"))


def build(store=None):
    bus = FlakyBus("intake")
    store = store or FakeIntakeStore(bus)
    store.bus = bus
    blobs, catalog, licences, clock, audit = (MemoryBlobs(), FakeCatalog(PACKAGE), FakeLicences(), Clock(),
                                              MemoryAuditLog("intake"))
    intake = build_intake(store=store, blobs=blobs, catalog=catalog, licences=licences, clock=clock, audit=audit)
    intake.watch_poll_s = 0.001
    return Suite(intake, store, bus, blobs, catalog, licences, clock, audit)


@pytest.fixture
def s():
    return build()


def upload(s, code, applicant=APPLICANT, data=None):
    data = data or f"%PDF-1.4 {code} {applicant['id_number']}".encode()
    return s.intake.upload({"applicant_id": applicant["id_number"], "material_code": code, "file_name": "a.pdf",
                            "sha256": hashlib.sha256(data).hexdigest()}, iter([data[:9], data[9:]]))


def request(s, codes=("M01", "M02", "M03"), applicant=APPLICANT, **change):
    req = {"package_code": "XSECS", "region_code": "440100", "applicant": dict(applicant),
           "materials": [{"material_code": c, "upload_id": upload(s, c, applicant)["upload_id"]} for c in codes],
           "delivery": {"channel": "DELIVERY_CHANNEL_ELECTRONIC"}, "form": {"child_name": "李小明"}}
    req.update(change)
    return req


def nothing_new(s, before):
    """No case, manifest or event more than `before` (taken by `state`)."""
    assert state(s) == before


def state(s):
    return (s.store.cases_of(APPLICANT["id_number"], 100), s.blobs.list("materials", "cases/"), list(s.bus.published))


# --- uploads -------------------------------------------------------------------------------------


def test_an_upload_is_kept_once_by_content_with_its_record(s):
    data = b"%PDF-1.4 the same scan"
    a, b = upload(s, "M01", data=data), upload(s, "M02", OTHER, data=data)
    sha = hashlib.sha256(data).hexdigest()
    assert a["sha256"] == b["sha256"] == sha and a["content_type"] == "application/pdf"
    assert s.blobs.puts == [("materials", f"content/sha256/{sha}")]  # the bytes once
    stored = s.store.upload(b["upload_id"])
    assert (stored.applicant_id, stored.material_code, stored.size) == (OTHER["id_number"], "M02", len(data))
    assert stored.created_at == s.clock.now


def test_a_refused_upload_keeps_nothing(s):
    with pytest.raises(InvalidArgument, match="application/zip"):
        s.intake.upload({"applicant_id": APPLICANT["id_number"], "material_code": "M01"},
                        iter([b"PK\x03\x04" + b"\x00" * 20]))
    assert s.blobs.objects == {}


def test_an_upload_that_declares_its_hash_is_stored_while_it_arrives_and_one_that_does_not_after():
    s = build()
    streamed, buffered = [], []
    s.blobs.put_stream = lambda *a, **k: streamed.append(a[1]) or MemoryBlobs.put_stream(s.blobs, *a, **k)
    s.blobs.put = lambda *a, **k: buffered.append(a[1]) or MemoryBlobs.put(s.blobs, *a, **k)
    declared = upload(s, "M01", data=b"%PDF-1.4 declared")
    plain = s.intake.upload({"applicant_id": APPLICANT["id_number"], "material_code": "M02"},
                            iter([b"%PDF-1.4 not declared"]))
    assert streamed == [f"content/sha256/{declared['sha256']}"]
    assert f"content/sha256/{plain['sha256']}" in buffered
    assert s.blobs.get("materials", f"content/sha256/{declared['sha256']}") == b"%PDF-1.4 declared"


@pytest.mark.parametrize("chunks, declared, error, words", [
    ([b"%PDF-1.4 ", b"what came"], "%PDF-1.4 what was claimed", InvalidArgument, "not the"),  # another hash
    ([b"%PDF-1.4 ", b"x" * 2000], None, TooLarge, "larger than the limit"),                  # past the limit
    ([b"PK\x03\x04" + b"\x00" * 20], None, InvalidArgument, "application/zip"),              # not a document
])
def test_a_streamed_upload_refused_on_the_way_stores_nothing(chunks, declared, error, words):
    s = build()
    s.intake.max_upload_bytes = 1000
    claimed = hashlib.sha256((declared or "").encode() or b"".join(chunks)).hexdigest()
    with pytest.raises(error, match=words):
        s.intake.upload({"applicant_id": APPLICANT["id_number"], "material_code": "M01", "sha256": claimed},
                        iter(chunks))
    assert s.blobs.objects == {} and s.store._uploads == {}  # no bytes, no record


def test_a_streamed_upload_of_content_stored_already_is_checked_and_not_stored_again(s):
    data = b"%PDF-1.4 the same scan"
    upload(s, "M01", data=data)
    with pytest.raises(InvalidArgument, match="not the"):  # the claimed hash of stored content, other bytes
        s.intake.upload({"applicant_id": APPLICANT["id_number"], "material_code": "M01",
                         "sha256": hashlib.sha256(data).hexdigest()}, iter([b"%PDF-1.4 other bytes"]))
    again = upload(s, "M02", data=data)
    assert len(s.blobs.puts) == 1 and again["sha256"] == hashlib.sha256(data).hexdigest()


# --- submission ------------------------------------------------------------------------------------


def test_submit_keeps_one_case_writes_its_manifest_and_publishes_one_event(s):
    case = s.intake.submit(request(s, situations={"maternity": "yes"}))
    assert case.case_no == "440100XSECS202611260001" and case.status is domain.SUBMITTED
    assert case == s.store.case(case.case_no) and case.version == 1
    assert case.submitted_at == s.clock.now and case.package_version == 3
    assert case.history == [domain.HistoryEntry(domain.SUBMITTED, "2026-11-26T02:00:00+00:00", "submitted")]
    assert s.catalog.calls == [("XSECS", "440100", {"maternity": "yes"})]
    assert [m["material_code"] for m in s.manifest(case.case_no)["materials"]] == ["M01", "M02", "M03"]
    [(kind, body)] = s.events(case.case_no)
    assert kind == "case_submitted" and body["package_snapshot"]["code"] == "XSECS" and body["acted_by"] == "applicant"
    # intake's own snapshot of the package version, taken once; no longer the catalog's message
    assert body["package_snapshot"] == domain.package_snapshot(PACKAGE) and "package" not in body
    assert [m["material_code"] for m in body["materials"]] == ["M01", "M02", "M03"]
    assert s.store.pending(case.case_no) == []


def test_a_clerks_submission_says_who_acted(s):
    case = s.intake.submit(request(s), acted_by="clerk:clerk-7", by="clerk clerk-7 for the applicant present")
    assert case.history[0].note == "submitted by clerk clerk-7 for the applicant present"
    assert s.events()[0][1]["acted_by"] == "clerk:clerk-7"


def test_the_case_number_counts_per_day_in_china_time(s):
    first = s.intake.submit(request(s)).case_no
    s.clock.advance(hours=16)  # 18:00 UTC: already the 27th in China
    second = s.intake.submit(request(s)).case_no
    third = s.intake.submit(request(s)).case_no
    assert (first, second, third) == ("440100XSECS202611260001", "440100XSECS202611270001",
                                      "440100XSECS202611270002")


def test_a_retry_with_the_same_key_returns_the_first_case_and_adds_nothing(s):
    req = request(s, idempotency_key="k-1")
    first = s.intake.submit(dict(req))
    before = state(s)
    again = s.intake.submit(dict(req))
    assert again == first
    nothing_new(s, before)
    assert s.store.next_sequence("440100XSECS20261126") == 2  # the retry took no number


def test_the_same_key_for_another_request_is_refused_and_for_another_applicant_is_another_case(s):
    first = s.intake.submit(request(s, idempotency_key="k-1"))
    before = state(s)
    with pytest.raises(AlreadyExists, match="k-1") as err:
        s.intake.submit(request(s, idempotency_key="k-1", form={"child_name": "李小红"}))
    assert err.value.violations[0].field == "idempotency_key"
    nothing_new(s, before)
    other = s.intake.submit(request(s, applicant=OTHER, idempotency_key="k-1"))
    assert other.case_no != first.case_no and other.applicant["id_number"] == OTHER["id_number"]


class RaceLost(FakeIntakeStore):
    """Another request with the same key commits its case between our check and our insert."""

    def __init__(self):
        super().__init__()
        self.winner = None

    def insert_case(self, case, events=()):
        if self.winner is None and case.idempotency_key:
            self.winner = dataclasses.replace(case, case_no=case.case_no[:-4] + "9999")
            super().insert_case(self.winner)
        return super().insert_case(case, events)


def test_a_submission_that_loses_the_race_for_its_key_returns_the_winners_case():
    s = build(RaceLost())
    case = s.intake.submit(request(s, idempotency_key="k-race"))
    assert case.case_no == s.store.winner.case_no
    # the loser's manifest is gone and its event never left
    assert s.blobs.list("materials", "cases/") == [] and s.events() == []


@pytest.mark.parametrize("change, error, words", [
    ({"package_code": "NOPE"}, NotFound, "no package"),
    ({"codes": ("M01", "M02")}, FailedPrecondition, r"结婚证 \(M03\)"),
    ({"form": {}}, InvalidArgument, r"新生儿姓名 \(child_name\) is required"),
    ({"region_code": ""}, InvalidArgument, "region_code"),
    ({"delivery": {"channel": "DELIVERY_CHANNEL_MAIL"}}, InvalidArgument, "postal address"),
    ({"materials": [{"material_code": "M01", "upload_id": "nope"}]}, FailedPrecondition, "does not exist"),
])
def test_a_refused_submission_keeps_no_case_no_manifest_and_no_event(s, change, error, words):
    change = dict(change)
    req = request(s, codes=change.pop("codes", ("M01", "M02", "M03")), **change)
    before = state(s)
    with pytest.raises(error, match=words):
        s.intake.submit(req)
    nothing_new(s, before)


def test_a_region_this_site_does_not_serve_is_refused(s):
    s.intake.serves = lambda region: region.startswith("4401")
    before = state(s)
    with pytest.raises(FailedPrecondition, match="does not handle cases for region '110101'"):
        s.intake.submit(request(s, region_code="110101"))
    nothing_new(s, before)


def test_an_upload_of_another_applicant_is_refused(s):
    req = request(s)
    req["materials"][0]["upload_id"] = upload(s, "M01", OTHER)["upload_id"]
    with pytest.raises(FailedPrecondition, match="another applicant"):
        s.intake.submit(req)


def test_a_licence_held_stands_in_for_its_material_and_without_elicense_every_material_is_asked(s):
    s.licences.held[APPLICANT["id_number"]] = [ID_LICENCE]
    case = s.intake.submit(request(s, codes=("M02", "M03")))
    m01 = next(m for m in case.materials if m["material_code"] == "M01")
    assert m01["license_id"] == ID_LICENCE["license_id"] and not m01.get("object_key")
    s.licences.down = True
    with pytest.raises(FailedPrecondition, match=r"父母居民身份证 \(M01\)"):
        s.intake.submit(request(s, codes=("M02", "M03")))


def test_a_licence_not_yet_valid_on_the_clocks_day_does_not_count(s):
    s.licences.held[APPLICANT["id_number"]] = [dict(ID_LICENCE, valid_from="2026-11-27")]
    with pytest.raises(FailedPrecondition, match=r"\(M01\)"):
        s.intake.submit(request(s, codes=("M02", "M03")))
    s.clock.advance(days=1)
    assert s.intake.submit(request(s, codes=("M02", "M03")))


# --- reading and listing ----------------------------------------------------------------------------


def test_get_case_answers_a_case_it_may_not_show_as_one_that_does_not_exist(s):
    case = s.intake.submit(request(s))
    assert s.intake.get_case(case.case_no) == case
    assert s.intake.get_case(case.case_no, allow=lambda case: case.applicant["id_number"] == APPLICANT["id_number"])
    with pytest.raises(NotFound, match=case.case_no):
        s.intake.get_case(case.case_no, allow=lambda case: False)
    with pytest.raises(NotFound):
        s.intake.get_case("440100XSECS209901019999")
    with pytest.raises(InvalidArgument, match="not a case number"):
        s.intake.get_case("nope")


def test_a_staff_read_is_audited_and_the_applicants_own_is_not(s):
    case = s.intake.submit(request(s))
    s.intake.get_case(case.case_no)
    s.intake.get_case(case.case_no, actor=CLERK)
    assert [(r["action"], r["actor"]["sub"]) for r in s.audit.records] == [("case.read", "clerk-7")]


def test_list_cases_newest_first_in_pages(s):
    made = []
    for _ in range(3):
        made.append(s.intake.submit(request(s)).case_no)
        s.clock.advance(minutes=1)
    s.intake.submit(request(s, applicant=OTHER))
    page, token = s.intake.list_cases({"applicant_id": APPLICANT["id_number"], "page_size": 2})
    assert [c.case_no for c in page] == made[::-1][:2] and token
    rest, last = s.intake.list_cases({"applicant_id": APPLICANT["id_number"], "page_size": 2, "page_token": token})
    assert [c.case_no for c in rest] == made[:1] and last == ""
    staff, _ = s.intake.list_cases({"applicant_id": APPLICANT["id_number"]}, actor=CLERK, region_prefix="4401")
    assert [c.case_no for c in staff] == made[::-1]
    assert s.audit.records[-1]["details"]["case_nos"] == made[::-1]
    assert s.intake.list_cases({"applicant_id": APPLICANT["id_number"]}, region_prefix="4402")[0] == []
    with pytest.raises(InvalidArgument, match="page_token"):
        s.intake.list_cases({"applicant_id": APPLICANT["id_number"], "page_token": "garbage!"})


def test_watch_sends_the_case_then_each_change_until_it_is_final(s):
    case = s.intake.submit(request(s))
    watch = s.intake.watch(case.case_no)
    assert next(watch) == case
    s.intake.case_concluded(domain.CaseConcluded(case_no=case.case_no, approved=False, reason="不符合条件"))
    last = next(watch)
    assert last.status is domain.REJECTED and last.history[-1].note == "不符合条件"
    assert next(watch, None) is None  # REJECTED is final: the watch ends


# --- withdrawal --------------------------------------------------------------------------------------


def test_withdraw_before_the_conclusion_and_a_late_conclusion_changes_nothing(s):
    case = s.intake.submit(request(s))
    s.intake.rectification_requested(domain.RectificationRequested(case_no=case.case_no, item_code="I1",
                                                                   department_code="gaj", material_codes=("M02",)))
    s.clock.advance(minutes=5)
    done = s.intake.withdraw({"case_no": case.case_no, "applicant_id": APPLICANT["id_number"], "reason": "不再办理"})
    assert done.status is domain.WITHDRAWN and done.rectification == {}
    assert done.history[-1] == domain.HistoryEntry(domain.WITHDRAWN, "2026-11-26T02:05:00+00:00", "withdrawn: 不再办理")
    assert s.events(case.case_no)[-1] == ("case_withdrawn", {
        "case_no": case.case_no, "reason": "不再办理", "applicant_id": APPLICANT["id_number"],
        "region_code": "440100", "package_code": "XSECS", "acted_by": "applicant"})
    assert not s.intake.case_concluded(domain.CaseConcluded(case_no=case.case_no, approved=True, license_ids=("L",)))
    assert s.store.case(case.case_no) == done


@pytest.mark.parametrize("kind, error, words", [
    ("other applicant", PermissionDenied, "only the applicant"),
    ("concluded", FailedPrecondition, "APPROVED already"),
    ("withdrawn", FailedPrecondition, "WITHDRAWN already"),
    ("long reason", InvalidArgument, "500"),
    ("unknown case", NotFound, "no case"),
])
def test_a_refused_withdrawal_changes_nothing_and_publishes_nothing(s, kind, error, words):
    case_no = s.intake.submit(request(s)).case_no
    req = {"case_no": case_no, "applicant_id": APPLICANT["id_number"], "reason": ""}
    if kind == "other applicant":
        req["applicant_id"] = OTHER["id_number"]
    elif kind == "concluded":
        s.intake.case_concluded(domain.CaseConcluded(case_no=case_no, approved=True))
    elif kind == "withdrawn":
        s.intake.withdraw(dict(req))
    elif kind == "long reason":
        req["reason"] = "太" * 501
    elif kind == "unknown case":
        req["case_no"] = "440100XSECS209901019999"
    before = (s.store.case(case_no), list(s.bus.published))
    with pytest.raises(error, match=words):
        s.intake.withdraw(req)
    assert (s.store.case(case_no), s.bus.published) == before


class NoteComesFirst(FakeIntakeStore):
    """Between the handler's read and its save, `n` other changes (notes of 督办) land on the case."""

    def __init__(self, n):
        super().__init__()
        self.n = n

    def save(self, case, expected_version, events=()):
        if self.n and events:
            self.n -= 1
            current = self.case(case.case_no)
            assert super().save(current.changed(current.status, "督办", "t", note_only=True), current.version)
        return super().save(case, expected_version, events)


def test_a_withdrawal_decides_again_when_the_case_changed_meanwhile():
    s = build(NoteComesFirst(2))
    case = s.intake.submit(request(s))  # (its insert is not a save)
    done = s.intake.withdraw({"case_no": case.case_no, "applicant_id": APPLICANT["id_number"]})
    assert done.status is domain.WITHDRAWN
    assert [h.note for h in done.history] == ["submitted", "督办", "督办", "withdrawn"]  # the notes are kept
    assert [t for t, _ in s.events()] == ["case_submitted", "case_withdrawn"]


# --- 补正 -------------------------------------------------------------------------------------------------


def rectify(s, case_no, codes=("M02",), item="110000000003", dept="gaj", round_=0):
    return s.intake.rectification_requested(domain.RectificationRequested(
        case_no=case_no, item_code=item, department_code=dept, material_codes=tuple(codes), reason="照片模糊",
        round=round_))


def subs(s, codes, applicant=APPLICANT, label="new"):
    return [{"material_code": c, "upload_id": upload(s, c, applicant, data=f"%PDF-1.4 {label} {c}".encode())["upload_id"]}
            for c in codes]


def test_rectification_waits_for_the_named_materials_and_the_supplement_resumes_the_case(s):
    case = s.intake.submit(request(s))
    old = {m["material_code"]: m for m in case.materials}
    assert rectify(s, case.case_no, ("M02",), round_=1) and not rectify(s, case.case_no, ("M02",), round_=1)
    assert rectify(s, case.case_no, ("M03", "M02"), item="110000000001", dept="wsjk")
    waiting = s.store.case(case.case_no)
    assert waiting.status is domain.RECTIFYING and waiting.rectification["material_codes"] == ["M02", "M03"]
    assert waiting.rectification["resume_status"] is domain.SUBMITTED
    assert waiting.rectification_rounds == {"110000000003": 1}
    assert waiting.rectification["requests"][0]["at"] == s.clock.now.isoformat()
    assert [h.status for h in waiting.history] == [domain.SUBMITTED, domain.RECTIFYING, domain.RECTIFYING]

    done = s.intake.supplement({"case_no": case.case_no, "applicant_id": APPLICANT["id_number"],
                                "materials": subs(s, ["M02", "M03"])})
    assert done.status is domain.SUBMITTED and done.rectification == {}
    assert done.history[-1].note == "supplemented M02, M03"
    now = {m["material_code"]: m for m in done.materials}
    assert now["M01"] == old["M01"] and now["M02"]["sha256"] != old["M02"]["sha256"]
    assert {m["material_code"]: m["sha256"] for m in s.manifest(case.case_no)["materials"]} == {
        c: m["sha256"] for c, m in now.items()}
    kind, body = s.events(case.case_no)[-1]
    assert kind == "case_supplemented" and body["item_codes"] == ["110000000003", "110000000001"]
    assert body["rounds"] == {"110000000003": 1} and [m["material_code"] for m in body["materials"]] == ["M02", "M03"]
    assert not rectify(s, case.case_no, ("M02",), round_=1)  # the answered round, redelivered late
    assert rectify(s, case.case_no, ("M02",), round_=2)      # a new round is asked


def test_a_case_in_review_resumes_in_review_after_the_supplement(s):
    case = s.intake.submit(request(s))
    rectify(s, case.case_no)
    assert s.intake.session_opened(domain.SessionOpened(case_no=case.case_no, department_codes=("gaj",)))
    assert s.store.case(case.case_no).rectification["resume_status"] is domain.IN_REVIEW
    done = s.intake.supplement({"case_no": case.case_no, "applicant_id": APPLICANT["id_number"],
                                "materials": subs(s, ["M02"])})
    assert done.status is domain.IN_REVIEW


@pytest.mark.parametrize("kind, error, words", [
    ("other applicant", PermissionDenied, "only the applicant"),
    ("not named", InvalidArgument, "did not ask for M03"),
    ("no material code", InvalidArgument, "material_code"),
    ("not rectifying", FailedPrecondition, "RECTIFYING"),
])
def test_a_refused_supplement_changes_nothing_and_publishes_nothing(s, kind, error, words):
    case_no = s.intake.submit(request(s)).case_no
    if kind != "not rectifying":
        rectify(s, case_no)
    req = {"case_no": case_no, "applicant_id": APPLICANT["id_number"], "materials": subs(s, ["M02"])}
    if kind == "other applicant":
        req["applicant_id"] = OTHER["id_number"]
    elif kind == "not named":
        req["materials"] += subs(s, ["M03"])
    elif kind == "no material code":
        req["materials"][0]["material_code"] = ""
    before = (s.store.case(case_no), list(s.bus.published), s.manifest(case_no))
    with pytest.raises(error, match=words):
        s.intake.supplement(req)
    assert (s.store.case(case_no), s.bus.published, s.manifest(case_no)) == before


class RequestComesFirst(FakeIntakeStore):
    """Between the supplement's read and its save, another department asks for a material."""

    def __init__(self, intake_of):
        super().__init__()
        self.intake_of, self.armed = intake_of, False

    def save(self, case, expected_version, events=()):
        if self.armed and events:
            self.armed = False
            assert self.intake_of().rectification_requested(domain.RectificationRequested(
                case_no=case.case_no, item_code="110000000001", department_code="wsjk", material_codes=("M03",)))
        return super().save(case, expected_version, events)


def test_a_supplement_whose_rectification_changed_meanwhile_is_refused():
    holder = {}
    s = build(RequestComesFirst(lambda: holder["intake"]))
    holder["intake"] = s.intake
    case_no = s.intake.submit(request(s)).case_no
    rectify(s, case_no)
    s.store.armed = True
    with pytest.raises(FailedPrecondition, match="changed meanwhile \\(it is RECTIFYING now\\)"):
        s.intake.supplement({"case_no": case_no, "applicant_id": APPLICANT["id_number"], "materials": subs(s, ["M02"])})
    assert s.store.case(case_no).rectification["material_codes"] == ["M02", "M03"]
    assert [t for t, _ in s.events(case_no)] == ["case_submitted"]


def test_a_note_landing_during_a_supplement_does_not_refuse_it():
    s = build(NoteComesFirst(0))
    case_no = s.intake.submit(request(s)).case_no
    rectify(s, case_no)
    s.store.n = 1
    done = s.intake.supplement({"case_no": case_no, "applicant_id": APPLICANT["id_number"],
                                "materials": subs(s, ["M02"])})
    assert done.status is domain.SUBMITTED and [h.note for h in done.history][-2:] == ["督办", "supplemented M02"]


# --- what the other services report --------------------------------------------------------------------


def test_the_review_the_conclusion_the_delivery_and_the_rating_move_the_case_forward_once(s):
    case_no = s.intake.submit(request(s)).case_no
    steps = [
        (s.intake.session_opened, domain.SessionOpened(case_no=case_no, item_codes=("I1",), department_codes=("gaj",))),
        (s.intake.case_concluded, domain.CaseConcluded(case_no=case_no, approved=True, license_ids=("L1", "L2"))),
        (s.intake.delivery_completed, domain.DeliveryCompleted(case_no=case_no)),
        (s.intake.evaluation_received, domain.EvaluationReceived(case_no=case_no)),
    ]
    for handler, event in steps:
        s.clock.advance(hours=1)
        assert handler(event), handler.__name__
        assert not handler(event), handler.__name__  # redelivered: nothing changes
    case = s.store.case(case_no)
    assert [h.status for h in case.history] == [domain.SUBMITTED, domain.IN_REVIEW, domain.APPROVED,
                                                domain.DELIVERED, domain.RATED]
    assert [h.at[11:16] for h in case.history] == ["02:00", "03:00", "04:00", "05:00", "06:00"]
    assert case.license_ids == ["L1", "L2"] and case.noted == ["session_opened"]
    assert [t for t, _ in s.events(case_no)] == ["case_submitted"]  # reactions publish nothing


def test_licences_reported_after_the_delivery_are_kept(s):
    case_no = s.intake.submit(request(s)).case_no
    assert s.intake.delivery_completed(domain.DeliveryCompleted(case_no=case_no))
    assert not s.intake.case_concluded(domain.CaseConcluded(case_no=case_no, approved=True,
                                                            license_ids=("L1", "L2", "L1")))
    case = s.store.case(case_no)
    assert case.status is domain.DELIVERED and case.license_ids == ["L1", "L2"]


def test_delivery_failure_redispatch_and_revocation_are_recorded_on_the_case(s):
    case_no = s.intake.submit(request(s)).case_no
    s.intake.case_concluded(domain.CaseConcluded(case_no=case_no, approved=True, license_ids=("L1",)))
    assert s.intake.delivery_failed(domain.DeliveryFailed(case_no=case_no, reason="查无此人", attempt=1))
    assert s.intake.delivery_dispatched(domain.DeliveryDispatched(case_no=case_no, attempt=2, by_mail=True,
                                                                  carrier="SF", tracking_number="SF123"))
    assert s.intake.license_revoked(domain.LicenseRevoked(case_no=case_no, license_id="L1", reason="信息有误"))
    assert s.intake.task_overdue(domain.TaskOverdue(case_no=case_no, item_code="I1", department_code="gaj"))
    case = s.store.case(case_no)
    assert [h.status for h in case.history if not h.note_only] == [
        domain.SUBMITTED, domain.APPROVED, domain.DELIVERY_FAILED, domain.APPROVED]
    assert case.delivery_attempt == 2 and case.revoked_license_ids == ["L1"]
    assert "SF123" in case.history[3].note and "信息有误" in case.history[4].note and "督办" in case.history[5].note
    assert case.noted == ["delivery_failed:1", "delivery_dispatched:2", "license_revoked:L1", "task_overdue:I1"]


# --- the case as this process last read to change or saved it (store.recent) ----------------------

def _other_process(s):
    """Another worker process over the same cases: a store with recent copies of its own."""
    other = FakeIntakeStore(s.bus)
    other._cases, other._outboxes, other._lock = s.store._cases, s.store._outboxes, s.store._lock
    return build_intake(store=other, blobs=s.blobs, catalog=s.catalog, licences=s.licences, clock=s.clock)


def _counting_reads(s):
    reads = []
    real = s.store.case_to_change
    s.store.case_to_change = lambda case_no: reads.append(case_no) or real(case_no)
    return reads


def test_what_the_other_services_report_starts_from_the_copy_the_last_change_left(s):
    case_no = s.intake.submit(request(s)).case_no
    reads = _counting_reads(s)
    assert s.intake.session_opened(domain.SessionOpened(case_no=case_no, item_codes=("I1",), department_codes=("gaj",)))
    assert reads == [case_no]  # nothing kept yet: read
    assert s.intake.tasks_assigned(domain.TasksAssigned(case_no, (domain.TaskHolder("gaj", "440100"),)))
    assert s.intake.case_concluded(domain.CaseConcluded(case_no=case_no, approved=True, license_ids=("L1",)))
    assert s.intake.delivery_completed(domain.DeliveryCompleted(case_no=case_no))
    assert reads == [case_no]  # each started from the copy the save before left
    assert not s.intake.delivery_completed(domain.DeliveryCompleted(case_no=case_no))
    assert reads == [case_no, case_no]  # "nothing to change" is only decided on a fresh read
    case = s.store.case(case_no)
    assert [h.status for h in case.history] == [domain.SUBMITTED, domain.IN_REVIEW, domain.APPROVED, domain.DELIVERED]
    assert case.task_holders == [domain.TaskHolder("gaj", "440100")] and case.license_ids == ["L1"]


def test_a_stale_copy_meets_the_version_check_and_the_change_is_made_on_a_fresh_read(s):
    case_no = s.intake.submit(request(s)).case_no
    s.intake.session_opened(domain.SessionOpened(case_no=case_no, item_codes=("I1",), department_codes=("gaj",)))
    s.clock.advance(hours=1)
    assert _other_process(s).task_overdue(domain.TaskOverdue(case_no=case_no, item_code="I1", department_code="gaj",
                                                             elapsed_days=6, limit_days=5))
    reads = _counting_reads(s)
    s.clock.advance(hours=1)
    assert s.intake.case_concluded(domain.CaseConcluded(case_no=case_no, approved=True))  # from the stale copy
    assert reads == [case_no]  # refused by the version check, then read
    case = s.store.case(case_no)
    assert [(h.status, h.note_only) for h in case.history] == [
        (domain.SUBMITTED, False), (domain.IN_REVIEW, False), (domain.IN_REVIEW, True), (domain.APPROVED, False)]
    assert case.noted == ["session_opened", "task_overdue:I1"] and case.version == 4


@pytest.mark.parametrize("handler, event, stale", [
    ("session_opened", lambda no: domain.SessionOpened(case_no=no, item_codes=("I1",), department_codes=("gaj",)),
     {"status": domain.IN_REVIEW, "noted": ["session_opened"]}),
    ("case_concluded", lambda no: domain.CaseConcluded(case_no=no, approved=True), {"status": domain.APPROVED}),
    ("tasks_assigned", lambda no: domain.TasksAssigned(no, (domain.TaskHolder("gaj", "440100"),)),
     {"task_holders": [domain.TaskHolder("gaj", "440100")]}),
    ("rectification_requested", lambda no: domain.RectificationRequested(
        case_no=no, item_code="I1", department_code="gaj", material_codes=("M02",), round=1),
     {"rectification_rounds": {"I1": 1}}),
])
def test_what_a_copy_says_needs_no_change_is_decided_again_on_a_fresh_read(s, handler, event, stale):
    """A copy that says the event changes nothing (planted here: another version of the case than
    the stored one) does not decide it: the case as stored does."""
    case_no = s.intake.submit(request(s)).case_no
    s.store.recent_copies[case_no] = dataclasses.replace(s.store.case(case_no), **stale)
    assert getattr(s.intake, handler)(event(case_no)), handler
    stored = s.store.case(case_no)
    for name, value in stale.items():
        assert getattr(stored, name) == value, name  # what the copy claimed is now so, by this change
