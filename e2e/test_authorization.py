"""The authorization matrix on the running suite: every RPC of every service called as each role, as
the owner (or the member of staff it concerns) and as someone else, with no token, an expired one,
a forged one (signed with another key) and an alg=none one. The expected status of each call comes
from the policy registry (services/common/policy.py): a bad token is UNAUTHENTICATED, a role the RPC
does not name is PERMISSION_DENIED from the gate, someone else's record gets the rule's `outside`
code (NOT_FOUND where existence must not leak), and the owner gets the handler's own answer, listed
per RPC below. Then a few ownership cases by hand: sequential case numbers guessed, the pickup code
shown only to its owner, a clerk acting for the applicant present, public verification with the QR
token and masked fields, region authority by the GB/T 2260 hierarchy."""
import base64
import datetime
import json
import time

import grpc
import pytest

from e2e.waits import item_of, wait_until
from onething.catalog.v1 import catalog_pb2
from onething.common.v1 import common_pb2
from onething.delivery.v1 import delivery_pb2
from onething.elicense.v1 import elicense_pb2
from onething.evaluation.v1 import evaluation_pb2
from onething.intake.v1 import intake_pb2
from onething.joint_review.v1 import joint_review_pb2
from services.common import auth, policy
from services.common.blobs import Blobs
from tools.client import bearer, citizen_id, demo_pdf

pytestmark = pytest.mark.e2e
S = grpc.StatusCode
OK = S.OK
REGION = "440100"

A = common_pb2.Applicant(id_number=citizen_id("44010619860606123"), name="许晴", phone="13800000000")
B = common_pb2.Applicant(id_number=citizen_id("44010619870707123"), name="何东", phone="13800000000")
NEWBORN = common_pb2.Party(role="newborn", name="许小晴", id_number=citizen_id("44010620261120456"))
ADDRESS = common_pb2.Address(recipient="许晴", phone="13800000000", region_code="440106",
                             line="广州市天河区天河路100号1栋101", postcode="510620")


# --- who calls -----------------------------------------------------------------------------------

def _forged(sub, role, **claims):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    other = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption())
    return (("authorization", "Bearer " + auth.mint(sub, role, private_key_pem=other, **claims)),)


def _expired(sub, role):
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=3)
    return (("authorization", "Bearer " + auth.mint(sub, role, hours=1, issued_at=past)),)


def _alg_none(sub, role):
    now = int(time.time())

    def enc(d):
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()
    kid = next(iter(auth.trusted_keys()))
    token = f"{enc({'alg': 'none', 'typ': 'JWT', 'kid': kid})}." + enc(
        {"sub": sub, "role": role, "iss": "onething-idp", "aud": "onething-api", "iat": now, "exp": now + 600}) + "."
    return (("authorization", "Bearer " + token),)


# variant -> (role, metadata factory); "-other" variants are someone else, or staff of another
# department or region
def _variants():
    return {
        "applicant": ("applicant", lambda: bearer(A.id_number, "applicant")),
        "applicant-other": ("applicant", lambda: bearer(B.id_number, "applicant")),
        "clerk": ("clerk", lambda: bearer("clerk-m", "clerk", region=REGION, on_behalf_of=A.id_number)),
        "clerk-other": ("clerk", lambda: bearer("clerk-sz", "clerk", region="440300", on_behalf_of=A.id_number)),
        "officer": ("officer", None),  # per RPC: the officer the record concerns (OFFICER below)
        "officer-other": ("officer", lambda: bearer("officer-scjg", "officer", "scjg", REGION)),
        "operator": ("operator", lambda: bearer("op-gz", "operator", region=REGION)),
        "operator-other": ("operator", lambda: bearer("op-sz", "operator", region="440300")),
        "sre": ("sre", lambda: bearer("sre-1", "sre")),
        "service": ("service", lambda: bearer("service:matrix", "service")),
        "none": (None, lambda: ()),
        "expired": (None, lambda: _expired(A.id_number, "applicant")),
        "forged": (None, lambda: _forged(A.id_number, "applicant")),
        "alg-none": (None, lambda: _alg_none(A.id_number, "applicant")),
    }


BAD_TOKENS = ("expired", "forged", "alg-none")


# --- the records the matrix is about ---------------------------------------------------------------

def _until(check, timeout, what):
    """`check()`'s first truthy value; any refusal meanwhile counts as "not yet"."""
    return wait_until(check, timeout, what, ignore=None, interval=0.2)


@pytest.fixture(scope="module")
def world(client):
    """A's WINDOW case X (its results wait at the window, its licences held by the newborn) and A's
    ELECTRONIC case Y, delivered and given a 差评 (a rectification for the lead department wsjk)."""
    codes = client.required_materials()
    x = client.submit(A, client.upload_all(A.id_number, codes), channel_=common_pb2.DELIVERY_CHANNEL_WINDOW,
                      parties=[NEWBORN])
    y = client.submit(A, client.upload_all(A.id_number, codes), parties=[NEWBORN])
    client.wait_status(x.case_no, {intake_pb2.CASE_STATUS_APPROVED}, timeout=120)
    client.wait_status(y.case_no, {intake_pb2.CASE_STATUS_DELIVERED}, timeout=120)
    delivery = _until(lambda: (lambda d: d if d.status == delivery_pb2.DELIVERY_STATUS_READY_FOR_PICKUP else None)(
        client.delivery_of(x.case_no)), 60, "X ready for pickup")
    rating = _until(lambda: client.rate(y.case_no, A.id_number, grade=evaluation_pb2.GRADE_DISSATISFIED,
                                        comment="窗口排队太久"), 30, "Y rateable")
    assert rating.bad_review and rating.rectification.department_code == "wsjk"
    licences = {l.type_code: l for l in client.licenses(x.case_no)}
    assert licences["CSYXZM"].holder_code == NEWBORN.id_number
    return {"x": x.case_no, "y": y.case_no, "code": delivery.pickup_code, "lic": licences["CSYXZM"]}


def _wrong(code):
    return f"{(int(code) + 1) % 1000000:06d}"


def _calls(client, w):
    """RPC -> (stub method, request, kind, the officer it concerns, owner outcomes). Owner outcomes:
    one code for every caller the policy admits to the record, or {variant: code}."""
    X, Y, lic = w["x"], w["y"], w["lic"]
    R, D, E, L, I, C = joint_review_pb2, delivery_pb2, evaluation_pb2, elicense_pb2, intake_pb2, catalog_pb2
    pkg = C.GetPackageRequest(code="XSECS", region_code=REGION)
    birth = item_of(client, "XSECS", REGION, department="wsjk", issues="CSYXZM")  # 出生医学证明签发, decided
    wsjk = lambda: bearer("officer-wsjk", "officer", "wsjk", REGION)
    gaj = lambda: bearer("officer-gaj", "officer", "gaj", REGION)
    upload = [I.UploadMaterialRequest(header=I.UploadHeader(material_code="M01", file_name="a.pdf")),
              I.UploadMaterialRequest(chunk=demo_pdf("matrix"))]
    return {
        # catalog
        "CatalogService/GetPackage": (client.catalog.GetPackage, pkg, "unary", None, OK),
        "CatalogService/ListPackages": (client.catalog.ListPackages, C.ListPackagesRequest(region_code=REGION),
                                        "unary", None, OK),
        "CatalogService/GetNotice": (client.catalog.GetNotice, pkg, "unary", None, OK),
        "CatalogService/GetSavings": (client.catalog.GetSavings, pkg, "unary", None, OK),
        "CatalogService/CheckForm": (client.catalog.CheckForm, C.CheckFormRequest(package=pkg), "unary", None, OK),
        "CatalogService/ListVersions": (client.catalog.ListVersions, C.ListVersionsRequest(code="XSECS"), "unary",
                                        None, OK),
        "CatalogService/PublishPackage": (client.catalog.PublishPackage, C.PublishPackageRequest(code="NOPEMX"),
                                          "unary", None, S.NOT_FOUND),
        "CatalogService/RetirePackage": (client.catalog.RetirePackage, C.RetirePackageRequest(code="NOPEMX"),
                                         "unary", None, S.NOT_FOUND),
        "CatalogService/ReloadCatalog": (client.catalog.ReloadCatalog, C.ReloadCatalogRequest(), "unary", None, OK),
        # intake
        "IntakeService/UploadMaterial": (client.intake.UploadMaterial, upload, "client_stream", None, OK),
        "IntakeService/SubmitCase": (client.intake.SubmitCase, I.SubmitCaseRequest(
            package_code="NOPEMX", region_code=REGION, applicant=A), "unary", None, S.INVALID_ARGUMENT),  # no channel
        "IntakeService/GetCase": (client.intake.GetCase, I.GetCaseRequest(case_no=X), "unary", None, OK),
        "IntakeService/SupplementCase": (client.intake.SupplementCase, I.SupplementCaseRequest(case_no=X), "unary",
                                         None, S.FAILED_PRECONDITION),
        "IntakeService/WithdrawCase": (client.intake.WithdrawCase, I.WithdrawCaseRequest(case_no=X), "unary", None,
                                       S.FAILED_PRECONDITION),
        "IntakeService/WatchCase": (client.intake.WatchCase, I.WatchCaseRequest(case_no=X), "server_stream", None,
                                    OK),
        "IntakeService/ListCases": (client.intake.ListCases, I.ListCasesRequest(), "unary", None, OK),
        "IntakeService/DownloadMaterial": (client.intake.DownloadMaterial, I.DownloadMaterialRequest(
            case_no=X, material_code="M01"), "server_stream", None, OK),
        # joint_review
        "JointReviewService/GetSession": (client.review.GetSession, R.GetSessionRequest(case_no=X), "unary", wsjk,
                                          OK),
        "JointReviewService/ListTasks": (client.review.ListTasks, R.ListTasksRequest(department_code="wsjk"),
                                         "unary", wsjk, OK),
        "JointReviewService/RecordOpinion": (client.review.RecordOpinion, R.RecordOpinionRequest(
            case_no=X, item_code=birth, decision=common_pb2.DECISION_REJECT, reason="矩阵"), "unary", wsjk,
            S.FAILED_PRECONDITION),  # decided already (the same decision again would be an idempotent retry)
        "JointReviewService/ClaimTask": (client.review.ClaimTask, R.ClaimTaskRequest(
            case_no=X, item_code=birth), "unary", wsjk, S.FAILED_PRECONDITION),
        "JointReviewService/ScheduleInspection": (client.review.ScheduleInspection, R.ScheduleInspectionRequest(
            case_no=X, at=datetime.datetime.fromisoformat("2026-12-01T10:00:00+08:00"), place="现场"), "unary", wsjk,
            S.FAILED_PRECONDITION),
        "JointReviewService/RecordFindings": (client.review.RecordFindings, R.RecordFindingsRequest(
            case_no=X, passed=True), "unary", wsjk, S.FAILED_PRECONDITION),
        "JointReviewService/SuspendClock": (client.review.SuspendClock, R.SuspendClockRequest(
            case_no=X, item_code=birth, reason=R.CLOCK_PAUSE_REASON_HEARING), "unary", wsjk,
            S.FAILED_PRECONDITION),
        "JointReviewService/ResumeClock": (client.review.ResumeClock, R.ResumeClockRequest(
            case_no=X, item_code=birth), "unary", wsjk, S.FAILED_PRECONDITION),
        # elicense
        "ElicenseService/GetLicense": (client.elicense.GetLicense, L.GetLicenseRequest(license_id=lic.license_id),
                                       "unary", gaj, OK),
        "ElicenseService/ListLicenses": (client.elicense.ListLicenses, L.ListLicensesRequest(case_no=X), "unary",
                                         None, OK),
        "ElicenseService/VerifyLicense": (client.elicense.VerifyLicense, L.VerifyLicenseRequest(
            license_id=lic.license_id, token=lic.signature[:24]), "unary", None, OK),
        "ElicenseService/VerifyLicenseDocument": (client.elicense.VerifyLicenseDocument, L.VerifyLicenseDocumentRequest(
            document=Blobs().get("results", lic.document_key)), "unary", None, OK),
        "ElicenseService/RevokeLicense": (client.elicense.RevokeLicense, L.RevokeLicenseRequest(
            license_id=lic.license_id, reason=""), "unary", wsjk, S.INVALID_ARGUMENT),  # no reason: nothing revoked
        "ElicenseService/ListSigningKeys": (client.elicense.ListSigningKeys, L.ListSigningKeysRequest(
            region_code=REGION), "unary", None, OK),
        "ElicenseService/RotateSigningKey": (client.elicense.RotateSigningKey, L.RotateSigningKeyRequest(
            region_code="440199"), "unary", None, OK),
        # delivery (X waits at the window)
        "DeliveryService/GetDelivery": (client.delivery.GetDelivery, D.GetDeliveryRequest(case_no=X), "unary", None,
                                        OK),
        "DeliveryService/ConfirmPickup": (client.delivery.ConfirmPickup, D.ConfirmPickupRequest(
            case_no=X, pickup_code=_wrong(w["code"])), "unary", None, S.PERMISSION_DENIED),  # the code is wrong
        "DeliveryService/RecordDispatch": (client.delivery.RecordDispatch, D.RecordDispatchRequest(
            case_no=X, carrier=D.CARRIER_EMS, tracking_number="EA473124829CN"), "unary", None, S.FAILED_PRECONDITION),
        "DeliveryService/RecordDelivered": (client.delivery.RecordDelivered, D.RecordDeliveredRequest(
            case_no=X, tracking_number="EA473124829CN", signed_by="许晴"), "unary", None, S.FAILED_PRECONDITION),
        "DeliveryService/RecordUndeliverable": (client.delivery.RecordUndeliverable, D.RecordUndeliverableRequest(
            case_no=X, tracking_number="EA473124829CN", reason="查无此人"), "unary", None, S.FAILED_PRECONDITION),
        "DeliveryService/Redispatch": (client.delivery.Redispatch, D.RedispatchRequest(
            case_no=X, address=ADDRESS, carrier=D.CARRIER_SF, tracking_number="SF1234567890123"), "unary", None,
            S.FAILED_PRECONDITION),
        # evaluation (Y was rated with a 差评 for wsjk)
        "EvaluationService/SubmitEvaluation": (client.evaluation.SubmitEvaluation, E.SubmitEvaluationRequest(
            case_no=Y, channel=E.CHANNEL_ONLINE, grade=E.GRADE_SATISFIED), "unary", None, S.ALREADY_EXISTS),
        "EvaluationService/GetEvaluation": (client.evaluation.GetEvaluation, E.GetEvaluationRequest(case_no=Y),
                                            "unary", wsjk, OK),
        "EvaluationService/RecordCallback": (client.evaluation.RecordCallback, E.RecordCallbackRequest(
            case_no=Y, note="已回访"), "unary", wsjk, OK),
        "EvaluationService/CloseRectification": (client.evaluation.CloseRectification, E.CloseRectificationRequest(
            case_no=Y, result="已整改"), "unary", wsjk, {OK, S.FAILED_PRECONDITION}),  # closed once, then closed
        "EvaluationService/ListBadReviews": (client.evaluation.ListBadReviews, E.ListBadReviewsRequest(
            department_code="wsjk", region_code=REGION), "unary", wsjk, OK),
        "EvaluationService/GetStatistics": (client.evaluation.GetStatistics, E.GetStatisticsRequest(
            group_by=E.STATISTICS_GROUP_REGION), "unary", None, OK),
    }


# "-other" callers who get the owner's answer: the record is their own (an upload in their own name,
# their own list of cases, empty here), or anyone with the QR token may verify
SAME_FOR_OTHERS = {
    "IntakeService/UploadMaterial": {"applicant-other", "clerk-other"},
    "IntakeService/ListCases": {"applicant-other", "clerk-other"},
    "ElicenseService/VerifyLicense": {"applicant-other", "clerk-other", "officer-other", "operator-other"},
    "ElicenseService/VerifyLicenseDocument": {"applicant-other", "clerk-other", "officer-other", "operator-other"},
}


def _full(rpc):
    service, method = rpc.split("/")
    package = {"CatalogService": "catalog", "IntakeService": "intake", "JointReviewService": "joint_review",
               "ElicenseService": "elicense", "DeliveryService": "delivery", "EvaluationService": "evaluation"}[service]
    return f"/onething.{package}.v1.{service}/{method}"


def expected(rpc, variant, owner_outcome):
    """The documented answer of `rpc` for `variant`, from the policy registry and the owner's outcome."""
    pol = policy.policy_for(_full(rpc))
    role = _variants()[variant][0]
    if variant in BAD_TOKENS:
        return {S.UNAUTHENTICATED}, "token"
    if role is None:  # no token
        return ({S.UNAUTHENTICATED}, "token") if not pol.public else (_codes(owner_outcome, variant), None)
    if not pol.public and role not in pol.roles:
        return {S.PERMISSION_DENIED}, "may call"  # the gate: the role is not named
    outside = pol.outside
    if variant.endswith("-other") and outside and variant not in SAME_FOR_OTHERS.get(rpc, set()):
        return {getattr(S, outside)}, None
    return _codes(owner_outcome, variant), None


def _codes(outcome, variant):
    if isinstance(outcome, dict):
        outcome = outcome.get(variant, outcome.get("*"))
    return set(outcome) if isinstance(outcome, (set, frozenset)) else {outcome}


def _call(fn, request, kind, metadata):
    try:
        if kind == "client_stream":
            fn(iter(request), metadata=metadata, timeout=20)
        elif kind == "server_stream":
            stream = fn(request, metadata=metadata, timeout=20)
            next(stream)
            stream.cancel()
        else:
            fn(request, metadata=metadata, timeout=20)
    except grpc.RpcError as err:
        if err.code() == S.CANCELLED and kind == "server_stream":
            return OK, ""
        return err.code(), err.details() or ""
    return OK, ""


def test_every_rpc_as_every_role_owner_other_and_bad_tokens(client, world):
    calls = _calls(client, world)
    declared = {f"{s.rsplit('.', 1)[1]}/{m}" for s, methods in policy.POLICIES.items() for m in methods}
    assert set(calls) == declared, f"the matrix misses {declared - set(calls)}"
    failures, table = [], []
    for rpc, (fn, request, kind, officer, owner_outcome) in sorted(calls.items()):
        row = []
        for variant, (role, factory) in _variants().items():
            metadata = (officer or (lambda: bearer("officer-wsjk", "officer", "wsjk", REGION)))() \
                if variant == "officer" else factory()
            codes, words = expected(rpc, variant, owner_outcome)
            got, details = _call(fn, request, kind, metadata)
            row.append(f"{variant}={got.name}")
            if got not in codes or (words and words not in details):
                failures.append(f"{rpc} as {variant}: {got.name} ({details[:120]}), expected "
                                f"{sorted(c.name for c in codes)}{' with ' + repr(words) if words else ''}")
            if got == S.PERMISSION_DENIED and not words and "may call" in details and not (
                    policy.policy_for(_full(rpc)).public):
                failures.append(f"{rpc} as {variant}: refused by the gate, but the policy admits {role}")
        table.append(f"{rpc:40s} " + " ".join(row))
    print("\n".join(table))
    assert not failures, "\n".join(failures)


# --- ownership by hand ---------------------------------------------------------------------------

def _code(fn, request, metadata):
    return _call(fn, request, "unary", metadata)


def test_guessing_sequential_case_numbers_finds_nothing(client, world):
    x = world["x"]
    number = int(x[-4:])
    guesses = [x] + [f"{x[:-4]}{n:04d}" for n in (number - 1, number + 1, 9999)]
    other = bearer(B.id_number, "applicant")
    for no in guesses:
        for fn, request in ((client.intake.GetCase, intake_pb2.GetCaseRequest(case_no=no)),
                            (client.delivery.GetDelivery, delivery_pb2.GetDeliveryRequest(case_no=no)),
                            (client.review.GetSession, joint_review_pb2.GetSessionRequest(case_no=no)),
                            (client.elicense.ListLicenses, elicense_pb2.ListLicensesRequest(case_no=no))):
            code, details = _code(fn, request, other)
            assert code == S.NOT_FOUND, (no, code, details)
            assert "no " in details and "许晴" not in details  # the same answer as for a number never given
    code, mine = _code(client.intake.GetCase, intake_pb2.GetCaseRequest(case_no=x), other)
    code2, unknown = _code(client.intake.GetCase, intake_pb2.GetCaseRequest(case_no=x[:-4] + "9999"), other)
    assert (code, mine.replace(x, "N")) == (code2, unknown.replace(x[:-4] + "9999", "N"))
    # nor may B withdraw it, rate it or list its licences by holder
    assert _code(client.intake.WithdrawCase, intake_pb2.WithdrawCaseRequest(case_no=x), other)[0] == S.NOT_FOUND
    assert _code(client.elicense.ListLicenses, elicense_pb2.ListLicensesRequest(holder_code=NEWBORN.id_number),
                 other)[0] == S.PERMISSION_DENIED
    assert client.intake.GetCase(intake_pb2.GetCaseRequest(case_no=x), timeout=10,
                                 metadata=bearer(A.id_number, "applicant")).status == intake_pb2.CASE_STATUS_APPROVED


def test_the_pickup_code_is_shown_to_its_owner_only_and_the_clerk_confirms_with_it(client, world):
    x = world["x"]
    mine = client.delivery.GetDelivery(delivery_pb2.GetDeliveryRequest(case_no=x), timeout=10,
                                       metadata=bearer(A.id_number, "applicant"))
    assert mine.pickup_code == world["code"] and len(mine.pickup_code) == 6
    staff = client.delivery.GetDelivery(delivery_pb2.GetDeliveryRequest(case_no=x), timeout=10,
                                        metadata=bearer("clerk-m", "clerk", region=REGION))
    assert staff.pickup_code == "" and all(not r.download_url for r in staff.results)
    assert "*" in staff.applicant_id  # masked for staff
    assert _code(client.delivery.ConfirmPickup, delivery_pb2.ConfirmPickupRequest(
        case_no=x, pickup_code=world["code"]), bearer("clerk-sz", "clerk", region="440300"))[0] == S.PERMISSION_DENIED
    done = client.delivery.ConfirmPickup(delivery_pb2.ConfirmPickupRequest(case_no=x, pickup_code=world["code"]),
                                         metadata=bearer("clerk-m", "clerk", region=REGION), timeout=10)
    assert done.status == delivery_pb2.DELIVERY_STATUS_COMPLETED and done.history[-1].by == "clerk-m"
    assert done.pickup_code == ""  # a clerk's answer never carries it


def test_a_clerk_acts_for_the_applicant_present_and_is_recorded_so(client, probe):
    at_window = bearer("clerk-w", "clerk", region=REGION, on_behalf_of=B.id_number)
    materials = [intake_pb2.MaterialSubmission(material_code=c, upload_id=client.intake.UploadMaterial(iter([
        intake_pb2.UploadMaterialRequest(header=intake_pb2.UploadHeader(material_code=c, file_name="s.pdf")),
        intake_pb2.UploadMaterialRequest(chunk=demo_pdf(c))]), metadata=at_window, timeout=30).upload_id)
        for c in client.required_materials()]
    from tools.client import demo_form
    pkg = client.package()
    parties = [common_pb2.Party(role="newborn", name="何小东", id_number=citizen_id("44010620261120789"))]
    case = client.intake.SubmitCase(intake_pb2.SubmitCaseRequest(
        package_code="XSECS", region_code=REGION, applicant=common_pb2.Applicant(name=B.name, phone=B.phone),
        materials=materials, form=demo_form(pkg, B, parties), parties=parties,
        delivery=common_pb2.DeliveryPreference(channel=common_pb2.DELIVERY_CHANNEL_ELECTRONIC)),
        metadata=at_window, timeout=30)
    assert case.applicant.id_number == B.id_number  # taken from x-on-behalf-of
    assert case.history[0].note.startswith("submitted by clerk clerk-w on behalf of the applicant 4401")
    assert B.id_number not in case.history[0].note
    # the applicant sees it as theirs; a clerk of another city, or for someone else, does not
    assert client.intake.GetCase(intake_pb2.GetCaseRequest(case_no=case.case_no), timeout=10,
                                 metadata=bearer(B.id_number, "applicant")).case_no == case.case_no
    for md in (bearer("clerk-sz", "clerk", region="440300", on_behalf_of=B.id_number),
               bearer("clerk-w", "clerk", region=REGION, on_behalf_of=A.id_number)):
        assert _code(client.intake.GetCase, intake_pb2.GetCaseRequest(case_no=case.case_no), md)[0] == S.NOT_FOUND
    # the applicant's list of cases at a window of their region, and none at another city's
    listed = client.intake.ListCases(intake_pb2.ListCasesRequest(), metadata=at_window, timeout=10).cases
    assert case.case_no in [c.case_no for c in listed] and all(c.applicant.id_number == B.id_number for c in listed)
    assert not client.intake.ListCases(intake_pb2.ListCasesRequest(), timeout=10, metadata=bearer(
        "clerk-sz", "clerk", region="440300", on_behalf_of=B.id_number)).cases
    # a clerk without the applicant present, and in another person's name, is refused
    assert _code(client.intake.GetCase, intake_pb2.GetCaseRequest(case_no=case.case_no),
                 bearer("clerk-w", "clerk", region=REGION))[0] == S.PERMISSION_DENIED
    assert _code(client.intake.SubmitCase, intake_pb2.SubmitCaseRequest(package_code="XSECS", region_code=REGION,
                                                                        applicant=A), at_window)[0] == \
        S.PERMISSION_DENIED
    # the event says a clerk acted, without the applicant's number
    _until(lambda: [b for k, b in probe.for_case(case.case_no) if k == "case_submitted"], 10, "case_submitted")
    submitted = next(b for k, b in probe.for_case(case.case_no) if k == "case_submitted")
    assert submitted["acted_by"] == "clerk:clerk-w"
    # the audit log records the clerk on behalf of the applicant
    import io

    from tools import audit as audit_tool
    client.intake.GetCase(intake_pb2.GetCaseRequest(case_no=case.case_no), metadata=at_window, timeout=10)
    out = io.StringIO()
    audit_tool.main(["list", "--case", case.case_no, "--service", "intake", "--json"], out=out, err=out)
    reads = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    reads = [r for r in reads if r.get("action") == "case.read"]
    assert reads and reads[-1]["actor"]["sub"] == "clerk-w" and reads[-1]["actor"]["on_behalf_of"]


def test_public_verification_needs_the_qr_token_and_shows_masked_fields(client, world):
    lic = world["lic"]
    ok = client.elicense.VerifyLicense(elicense_pb2.VerifyLicenseRequest(license_id=lic.license_id,
                                                                         token=lic.signature[:24]), timeout=10,
                                       metadata=())
    assert ok.valid and ok.license.type_code == "CSYXZM" and ok.license.license_id == lic.license_id
    shown = ok.license
    assert shown.holder_name == NEWBORN.name[0] + "*" * (len(NEWBORN.name) - 1)
    assert shown.holder_code != NEWBORN.id_number and "*" in shown.holder_code
    assert not (shown.case_no or shown.signature or shown.document_key or shown.item_code)
    for token, code in (("", S.INVALID_ARGUMENT), ("x" * 24, S.NOT_FOUND), (lic.signature[1:25], S.NOT_FOUND)):
        assert _code(client.elicense.VerifyLicense, elicense_pb2.VerifyLicenseRequest(
            license_id=lic.license_id, token=token), ())[0] == code
    # the holder reads their own licence in full; the applicant who applied too
    for who in (NEWBORN.id_number, A.id_number):
        full = client.elicense.GetLicense(elicense_pb2.GetLicenseRequest(license_id=lic.license_id), timeout=10,
                                          metadata=bearer(who, "applicant"))
        assert full.holder_code == NEWBORN.id_number and full.case_no == world["x"]


def test_region_authority_is_by_the_hierarchy(client, world):
    lic = world["lic"]  # issued in 440100 by wsjk
    revoke = elicense_pb2.RevokeLicenseRequest(license_id=lic.license_id, reason="")  # no reason: nothing changes
    for md, code in ((bearer("op-gd", "operator", region="440000"), S.INVALID_ARGUMENT),   # the province: may
                     (bearer("op-gz", "operator", region="440100"), S.INVALID_ARGUMENT),   # the city: may
                     (bearer("op-th", "operator", region="440106"), S.PERMISSION_DENIED),  # a district below: not
                     (bearer("op-sz", "operator", region="440300"), S.PERMISSION_DENIED),  # another city: not
                     (bearer("o", "officer", "wsjk", "440300"), S.PERMISSION_DENIED),
                     (bearer("o", "officer", "wsjk", "440000"), S.PERMISSION_DENIED)):
        assert _code(client.elicense.RevokeLicense, revoke, md)[0] == code
    # a token naming a region that is not a 6-digit code is not valid at all ("44" is no prefix of anything)
    bad = bearer("op-44", "operator", region="44")
    assert _code(client.elicense.RevokeLicense, revoke, bad)[0] == S.UNAUTHENTICATED
    assert client.elicense.GetLicense(elicense_pb2.GetLicenseRequest(license_id=lic.license_id), timeout=10,
                                      metadata=bearer(A.id_number, "applicant")).status == \
        elicense_pb2.LICENSE_STATUS_VALID
