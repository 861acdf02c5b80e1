"""Bad input against the running suite over real gRPC: limits, unknown enum numbers and invalid
UTF-8 refused as INVALID_ARGUMENT with the status details trailer on every service; an
idempotency key reused for a different submission refused; idle uploads and watches that cannot
take the intake api's threads from unary calls."""
import threading
import time
import uuid

import grpc
import pymongo
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from e2e.waits import wait_until
from onething.common.v1 import common_pb2
from onething.delivery.v1 import delivery_pb2
from onething.evaluation.v1 import evaluation_pb2
from onething.intake.v1 import intake_pb2 as S
from onething.joint_review.v1 import joint_review_pb2
from services.common.config import settings
from tools.client import applicant_md, citizen_id, officer

pytestmark = pytest.mark.e2e


def person(first17, name="李华"):
    return common_pb2.Applicant(id_number=citizen_id(first17), name=name, phone="13800000000")


def _details(err):
    status = rpc_status.from_call(err)
    assert status is not None and status.message == err.details()
    out = {}
    for d in status.details:
        for kind in (error_details_pb2.BadRequest, error_details_pb2.LocalizedMessage, error_details_pb2.RetryInfo):
            if d.Is(kind.DESCRIPTOR):
                m = kind()
                d.Unpack(m)
                out[kind.__name__] = m
    assert out["LocalizedMessage"].locale == "zh-CN" and out["LocalizedMessage"].message
    return out


def _refused(code, fn, *args, **kwargs):
    with pytest.raises(grpc.RpcError) as err:
        fn(*args, **kwargs)
    assert err.value.code() == code, err.value.details()
    return err.value


def _cases(applicant_id):
    s = settings()
    with pymongo.MongoClient(s.mongo_uri) as c:
        return c[s.db_name("intake")]["cases"].count_documents({"applicant.id_number": applicant_id})


def test_limits_enums_and_utf8_on_every_service(client):
    err = _refused(grpc.StatusCode.INVALID_ARGUMENT, client.intake.SubmitCase, S.SubmitCaseRequest(
        package_code="XSECS", region_code="440100", applicant=person("44010619920101123", "名" * 101)), timeout=10)
    d = _details(err)
    assert d["BadRequest"].field_violations[0].field == "applicant.name" and "100" in err.details()
    err = _refused(grpc.StatusCode.INVALID_ARGUMENT, client.evaluation.SubmitEvaluation,
                   evaluation_pb2.SubmitEvaluationRequest(case_no="440100XSECS202611260001", grade=77), timeout=10)
    assert _details(err)["BadRequest"].field_violations[0].field == "grade"
    err = _refused(grpc.StatusCode.INVALID_ARGUMENT, client.review.ListTasks,
                   joint_review_pb2.ListTasksRequest(state=-3), metadata=officer("gaj"), timeout=10)
    assert _details(err)["BadRequest"].field_violations[0].field == "state"
    for request, words in ((joint_review_pb2.ListTasksRequest(page_size=-1), "page_size cannot be negative"),
                           (joint_review_pb2.ListTasksRequest(page_token="x"), "page_token is not one")):
        err = _refused(grpc.StatusCode.INVALID_ARGUMENT, client.review.ListTasks, request, metadata=officer("gaj"),
                       timeout=10)
        assert words in err.details()
    for request, words in ((evaluation_pb2.ListBadReviewsRequest(page_size=-1), "page_size cannot be negative"),
                           (evaluation_pb2.ListBadReviewsRequest(page_token="eyJhZnRlciI6IDF9"), "page_token is not one")):
        err = _refused(grpc.StatusCode.INVALID_ARGUMENT, client.evaluation.ListBadReviews, request,
                       metadata=officer("gaj"), timeout=10)
        assert words in err.details()
    raw = grpc.insecure_channel(settings().address("delivery")).unary_unary(
        "/onething.delivery.v1.DeliveryService/GetDelivery", request_serializer=None, response_deserializer=None)
    err = _refused(grpc.StatusCode.INVALID_ARGUMENT, raw, b"\x0a\x02\xc3\x28", timeout=10,  # case_no: bad UTF-8
                   metadata=applicant_md(citizen_id("44010619920101123")))
    assert _details(err)["BadRequest"].field_violations[0].field == "case_no"
    err = _refused(grpc.StatusCode.INVALID_ARGUMENT, client.delivery.ConfirmPickup, delivery_pb2.ConfirmPickupRequest(
        case_no="4" * 10, pickup_code="1" * 17), timeout=10)
    assert "pickup_code" in err.details()


def test_a_form_problem_names_its_field_in_chinese(client):
    a = person("44010619920202123")
    materials = client.upload_all(a.id_number, client.required_materials())
    err = _refused(grpc.StatusCode.INVALID_ARGUMENT, client.submit, a, materials, form={"mother_phone": "12"})
    d = _details(err)
    fields = [v.field for v in d["BadRequest"].field_violations]
    assert fields and fields[0].startswith("form[") and d["LocalizedMessage"].message.startswith("表单")


def test_an_idempotency_key_reused_for_another_request_is_refused(client):
    a = person("44010619920303123")
    materials = client.upload_all(a.id_number, client.required_materials())
    key = uuid.uuid4().hex
    first = client.submit(a, materials, key=key)
    assert client.submit(a, materials, key=key).case_no == first.case_no  # a retry: the same case
    before = _cases(a.id_number)
    err = _refused(grpc.StatusCode.ALREADY_EXISTS, client.submit, a, materials, key=key,
                   channel_=common_pb2.DELIVERY_CHANNEL_WINDOW)
    assert first.case_no in err.details() and "different request" in err.details()
    d = _details(err)
    assert d["BadRequest"].field_violations[0].field == "idempotency_key" and "幂等键" in d["LocalizedMessage"].message
    assert _cases(a.id_number) == before
    assert client.submit(a, materials, key=key).case_no == first.case_no  # and the retry still works


def _idle_upload(stub, applicant_id, stop, results):
    def parts():
        yield S.UploadMaterialRequest(header=S.UploadHeader(material_code="M01"))
        stop.wait(30)
    try:
        stub.UploadMaterial(parts(), metadata=applicant_md(applicant_id), timeout=40)
        results.append("OK")
    except grpc.RpcError as err:
        results.append(err.code().name)


def test_idle_uploads_cannot_starve_unary_calls_and_are_ended(client):
    a = person("44010619920404123")
    stop, results = threading.Event(), []
    threads = [threading.Thread(target=_idle_upload, args=(client.intake, a.id_number, stop, results))
               for _ in range(16)]
    for t in threads:
        t.start()
    # every idle upload has reached the api: refused, or holding one of the caller's slots (idle)
    held = settings().stream_uploads_per_caller
    wait_until(lambda: len(results) >= len(threads) - held, 10, "the refusals of the uploads beyond the slots")
    try:
        t0 = time.monotonic()
        for _ in range(10):  # answered at once, while the uploads sit idle
            _refused(grpc.StatusCode.NOT_FOUND, client.intake.GetCase,
                     S.GetCaseRequest(case_no="440100XSECS209901019999"), timeout=3)
        assert time.monotonic() - t0 < 5
    finally:
        for t in threads:
            t.join(25)  # the idle ones end by themselves (ONETHING_STREAM_IDLE_SECONDS)
        stop.set()
    assert results.count("RESOURCE_EXHAUSTED") >= 13 and results.count("DEADLINE_EXCEEDED") >= 1, results
    assert "OK" not in results
    # and the slots are free again
    assert client.upload(a.id_number, "M01", b"%PDF-1.4\n% fine\n%%EOF\n").upload_id


def test_watches_are_capped_per_caller_and_unary_calls_still_answer(client):
    a = person("44010619920505123")
    case = client.newborn_case(applicant=a)
    cap = settings().stream_watches_per_caller  # the per-caller cap (the same settings as the suite's)
    streams = [client.watch(case.case_no, timeout=60) for _ in range(cap)]
    try:
        for s in streams:
            assert next(s).case_no == case.case_no
        err = _refused(grpc.StatusCode.RESOURCE_EXHAUSTED, lambda: next(client.watch(case.case_no, timeout=10)))
        assert _details(err)["RetryInfo"].retry_delay.ToNanoseconds() > 0
        assert client.intake.GetCase(S.GetCaseRequest(case_no=case.case_no), timeout=3).case_no == case.case_no
    finally:
        for s in streams:
            s.cancel()
    # the cancelled watches give their slots back: a new watch is answered (RESOURCE_EXHAUSTED until then)
    first = wait_until(lambda: next(client.watch(case.case_no, timeout=10)), 10, "a watch after the cancelled ones",
                       ignore=(grpc.StatusCode.RESOURCE_EXHAUSTED,))
    assert first.case_no == case.case_no
