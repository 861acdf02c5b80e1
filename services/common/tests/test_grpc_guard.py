"""The api server's interceptor over real gRPC on an ephemeral port: limits, enum ranges and invalid
UTF-8 refused as INVALID_ARGUMENT before the handler runs, the status details trailer
(google.rpc.Status with BadRequest, LocalizedMessage zh-CN, RetryInfo), and streams that cannot
hold the server: slots per caller and overall, idle and total deadlines, unary calls still served."""
import threading
import time

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from onething.common.v1 import common_pb2
from onething.intake.v1 import intake_pb2 as S
from onething.intake.v1 import intake_pb2_grpc as G
from services.common import policy
from services.common.errors import InvalidArgument, NotFound
from services.common.grpc_server import ApiServer, caller_of
from services.common.streams import StreamLimits

LIMITS = StreamLimits(threads=10, uploads_total=3, uploads_per_caller=2, watches_total=3, watches_per_caller=2,
                      idle_s=0.6, max_s=3.0, retry_after_s=0.5)


class Recording(G.IntakeServiceServicer):
    """Records every call that reached it: a refused call must not."""

    def __init__(self):
        self.calls = []
        self.lock = threading.Lock()

    def _seen(self, what):
        with self.lock:
            self.calls.append(what)

    def UploadMaterial(self, request_iterator, context):
        self._seen("upload")
        n = sum(1 for _ in request_iterator)
        return S.Upload(size=n)

    def SubmitCase(self, request, context):
        self._seen("submit")
        if request.package_code == "FORM":
            raise InvalidArgument("form: 联系电话 (phone) is required", violations=[
                ('form["phone"]', "required", "表单“联系电话”为必填项，请填写。", "REQUIRED")])
        if request.package_code == "NONE":
            raise NotFound("there is no package 'NONE'")
        return S.Case(case_no="C1", package_code=request.package_code)

    def GetCase(self, request, context):
        self._seen("get")
        return S.Case(case_no=request.case_no)

    def WatchCase(self, request, context):
        self._seen("watch")
        yield S.Case(case_no=request.case_no)
        while context.is_active():
            time.sleep(0.05)


@pytest.fixture(scope="module")
def server():
    servicer = Recording()
    # this server's gates under test are limits and streams: its policy lets anyone call (the access
    # policy has its own tests, services/common/tests/test_policy.py)
    srv = ApiServer(0, [(G.add_IntakeServiceServicer_to_server, servicer)], ["onething.intake.v1.IntakeService"],
                    stream_limits=LIMITS, policies=policy.open_to_anyone(["onething.intake.v1.IntakeService"])).start()
    srv.servicer = servicer
    yield srv
    srv.stop(0)


@pytest.fixture
def channel(server):
    server.servicer.calls.clear()
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


def details(err):
    """(BadRequest or None, LocalizedMessage, RetryInfo or None) from the status details trailer."""
    status = rpc_status.from_call(err)
    assert status is not None, "no grpc-status-details-bin trailer"
    assert status.code == err.code().value[0] and status.message == err.details()
    found = {}
    for any_ in status.details:
        for kind in (error_details_pb2.BadRequest, error_details_pb2.LocalizedMessage, error_details_pb2.RetryInfo):
            if any_.Is(kind.DESCRIPTOR):
                msg = kind()
                any_.Unpack(msg)
                found[kind] = msg
    localized = found[error_details_pb2.LocalizedMessage]
    assert localized.locale == "zh-CN" and localized.message
    return found.get(error_details_pb2.BadRequest), localized, found.get(error_details_pb2.RetryInfo)


def refused(code, fn, *args, **kwargs):
    with pytest.raises(grpc.RpcError) as err:
        fn(*args, **kwargs)
    assert err.value.code() == code, err.value.details()
    return err.value


# --- limits, enums, UTF-8 -------------------------------------------------------------------


def test_a_field_over_its_limit_is_invalid_argument_with_bad_request_and_zh(channel, server):
    stub = G.IntakeServiceStub(channel)
    secret = "李" * 40 + "身份证号码" * 2000
    err = refused(grpc.StatusCode.INVALID_ARGUMENT, stub.SubmitCase,
                  S.SubmitCaseRequest(package_code="XSECS", applicant=common_pb2.Applicant(name=secret)), timeout=5)
    assert "applicant.name" in err.details() and "at most 100" in err.details()
    assert "身份证号码" not in err.details() and len(err.details()) < 300
    bad, zh, retry = details(err)
    [v] = bad.field_violations
    assert v.field == "applicant.name" and v.reason == "TOO_LONG" and v.localized_message.locale == "zh-CN"
    assert "100" in zh.message and "姓名" in zh.message and retry is None
    assert server.servicer.calls == []  # the handler never ran


def test_counts_maps_and_many_violations(channel, server):
    stub = G.IntakeServiceStub(channel)
    err = refused(grpc.StatusCode.INVALID_ARGUMENT, stub.SubmitCase, S.SubmitCaseRequest(
        materials=[S.MaterialSubmission(upload_id="u")] * 101, form={"k": "v" * 1001},
        idempotency_key="k" * 129), timeout=5)
    bad, zh, _ = details(err)
    fields = [v.field for v in bad.field_violations]
    assert fields == ['form["k"]', "materials", "idempotency_key"]  # in field-number order
    assert "2 more problems" in err.details() and "另有 2 处问题" in zh.message
    assert server.servicer.calls == []


def test_an_unknown_enum_number_is_invalid_argument(channel, server):
    stub = G.IntakeServiceStub(channel)
    err = refused(grpc.StatusCode.INVALID_ARGUMENT, stub.SubmitCase, S.SubmitCaseRequest(
        delivery=common_pb2.DeliveryPreference(channel=42)), timeout=5)
    bad, _, _ = details(err)
    assert bad.field_violations[0].field == "delivery.channel" and "42" in err.details()
    assert server.servicer.calls == []


def test_invalid_utf8_and_garbage_are_invalid_argument_not_internal(channel, server):
    raw = channel.unary_unary("/onething.intake.v1.IntakeService/SubmitCase",
                              request_serializer=lambda b: b, response_deserializer=lambda b: b)
    name_ff = b"\x1a\x04\x12\x02\xff\xfe"  # applicant { name: ff fe }
    err = refused(grpc.StatusCode.INVALID_ARGUMENT, raw, name_ff, timeout=5)
    bad, zh, _ = details(err)
    assert bad.field_violations[0].field == "applicant.name" and bad.field_violations[0].reason == "INVALID_UTF8"
    assert "UTF-8" in zh.message
    err = refused(grpc.StatusCode.INVALID_ARGUMENT, raw, b"\xff\xff\xff\xff", timeout=5)
    assert "could not be read" in err.details()
    details(err)
    assert server.servicer.calls == []
    # in a client stream too: the header's file name
    upload = channel.stream_unary("/onething.intake.v1.IntakeService/UploadMaterial",
                                  request_serializer=lambda b: b, response_deserializer=lambda b: b)
    err = refused(grpc.StatusCode.INVALID_ARGUMENT, upload, iter([b"\x0a\x03\x1a\x01\x80"]), timeout=5)
    assert details(err)[0].field_violations[0].field == "header.file_name"


def test_domain_refusals_carry_their_fields_and_chinese_or_the_fallback(channel):
    stub = G.IntakeServiceStub(channel)
    err = refused(grpc.StatusCode.INVALID_ARGUMENT, stub.SubmitCase, S.SubmitCaseRequest(package_code="FORM"),
                  timeout=5)
    bad, zh, _ = details(err)
    assert bad.field_violations[0].field == 'form["phone"]' and zh.message == "表单“联系电话”为必填项，请填写。"
    err = refused(grpc.StatusCode.NOT_FOUND, stub.SubmitCase, S.SubmitCaseRequest(package_code="NONE"), timeout=5)
    bad, zh, _ = details(err)
    assert bad is None and zh.message == "未找到相关记录，请核对编号后再试。"
    assert stub.SubmitCase(S.SubmitCaseRequest(package_code="OK"), timeout=5).case_no == "C1"


# --- streams --------------------------------------------------------------------------------


class Held:
    """A client stream that sends its header and then waits until released."""

    def __init__(self, stub, metadata=None):
        self.release = threading.Event()
        self.result = None

        def parts():
            yield S.UploadMaterialRequest(header=S.UploadHeader(material_code="M"))
            while not self.release.wait(0.1):
                yield S.UploadMaterialRequest(chunk=b"x")  # keep-alive: never idle

        self.future = stub.UploadMaterial.future(parts(), timeout=20, metadata=metadata)

    def finish(self):
        self.release.set()
        return self.future.result(timeout=10)


def _wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    return predicate()


def test_uploads_per_caller_and_overall_and_unary_calls_still_served(channel, server, tmp_path, monkeypatch):
    stub = G.IntakeServiceStub(channel)
    gate = server.stream_guard.uploads
    held = [Held(stub), Held(stub)]
    assert _wait_for(lambda: gate.in_use() == 2)
    err = refused(grpc.StatusCode.RESOURCE_EXHAUSTED, stub.UploadMaterial,
                  iter([S.UploadMaterialRequest(header=S.UploadHeader())]), timeout=5)
    _, zh, retry = details(err)
    assert "limit 2" in err.details() and retry.retry_delay.ToNanoseconds() == 500_000_000 and "上限" in zh.message
    # another caller (a token's subject) still gets the last slot; then the server is full
    token = _token(tmp_path, monkeypatch, "officer-9")
    held.append(Held(stub, metadata=[("authorization", f"Bearer {token}")]))
    assert _wait_for(lambda: gate.in_use() == 3)
    other = _token(tmp_path, monkeypatch, "officer-10")
    err = refused(grpc.StatusCode.RESOURCE_EXHAUSTED, stub.UploadMaterial,
                  iter([S.UploadMaterialRequest(header=S.UploadHeader())]), timeout=5,
                  metadata=[("authorization", f"Bearer {other}")])
    assert "limit 3" in err.details()
    # with every upload slot taken, unary calls are answered at once
    t0 = time.monotonic()
    for i in range(20):
        assert stub.GetCase(S.GetCaseRequest(case_no=f"C{i}"), timeout=2).case_no == f"C{i}"
    assert time.monotonic() - t0 < 2
    for h in held:
        assert h.finish().size >= 1
    assert _wait_for(lambda: gate.in_use() == 0)


def _token(tmp_path, monkeypatch, sub):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from services.common import auth
    key_file = tmp_path / "idp.pub"
    if not key_file.exists():
        key = Ed25519PrivateKey.generate()
        (tmp_path / "idp.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        key_file.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo))
    monkeypatch.setenv("ONETHING_AUTH_PUBLIC_KEY_FILE", str(key_file))
    return auth.mint(sub, "officer", "gaj", "440100", private_key_pem=(tmp_path / "idp.key").read_bytes())


def test_an_idle_upload_is_ended_with_deadline_exceeded_and_frees_its_slot(channel, server):
    stub = G.IntakeServiceStub(channel)

    def silent():
        yield S.UploadMaterialRequest(header=S.UploadHeader(material_code="M"))
        time.sleep(5)
    t0 = time.monotonic()
    err = refused(grpc.StatusCode.DEADLINE_EXCEEDED, stub.UploadMaterial, silent(), timeout=10)
    assert time.monotonic() - t0 < 2.5 and "nothing arrived" in err.details()
    details(err)
    assert _wait_for(lambda: server.stream_guard.uploads.in_use() == 0)
    # the reader threads end with their streams
    assert _wait_for(lambda: not [t for t in threading.enumerate() if t.name == "stream-reader"], 8)


def test_an_upload_that_never_sends_a_message_is_ended_too(channel):
    stub = G.IntakeServiceStub(channel)

    def nothing():
        time.sleep(5)
        yield S.UploadMaterialRequest()
    refused(grpc.StatusCode.DEADLINE_EXCEEDED, stub.UploadMaterial, nothing(), timeout=10)


def test_watches_per_caller_release_on_cancel_and_end_at_the_total_deadline(channel, server):
    stub = G.IntakeServiceStub(channel)
    gate = server.stream_guard.watches
    a = stub.WatchCase(S.WatchCaseRequest(case_no="A"), timeout=10)
    b = stub.WatchCase(S.WatchCaseRequest(case_no="B"), timeout=10)
    assert next(a).case_no == "A" and next(b).case_no == "B"
    err = refused(grpc.StatusCode.RESOURCE_EXHAUSTED, lambda: list(stub.WatchCase(
        S.WatchCaseRequest(case_no="C"), timeout=5)))
    assert details(err)[2] is not None  # RetryInfo
    assert stub.GetCase(S.GetCaseRequest(case_no="G"), timeout=2).case_no == "G"
    a.cancel()
    assert _wait_for(lambda: gate.in_use() == 1)
    c = stub.WatchCase(S.WatchCaseRequest(case_no="C"), timeout=10)
    assert next(c).case_no == "C"
    t0 = time.monotonic()
    err = refused(grpc.StatusCode.DEADLINE_EXCEEDED, lambda: list(c))
    assert time.monotonic() - t0 < LIMITS.max_s + 1 and "time limit" in err.details()
    details(err)
    b.cancel()
    assert _wait_for(lambda: gate.in_use() == 0)


def test_a_watch_with_an_invalid_request_takes_no_slot(channel, server):
    stub = G.IntakeServiceStub(channel)
    refused(grpc.StatusCode.INVALID_ARGUMENT, lambda: list(stub.WatchCase(
        S.WatchCaseRequest(case_no="9" * 65), timeout=5)))
    assert server.stream_guard.watches.in_use() == 0 and server.servicer.calls == []


def test_the_caller_is_the_verified_subject_else_the_peer_host(tmp_path, monkeypatch):
    class Ctx:
        def __init__(self, metadata, peer):
            self.metadata, self._peer = metadata, peer

        def invocation_metadata(self):
            return self.metadata

        def peer(self):
            return self._peer
    assert caller_of(Ctx((), "ipv4:127.0.0.1:5555")) == "peer:127.0.0.1"
    assert caller_of(Ctx((), "ipv6:[::1]:5555")) == "peer:[::1]"
    assert caller_of(Ctx((("authorization", "Bearer forged"),), "ipv4:10.0.0.1:1")) == "peer:10.0.0.1"
    token = _token(tmp_path, monkeypatch, "clerk-1")
    assert caller_of(Ctx((("authorization", f"Bearer {token}"),), "ipv4:10.0.0.1:1")) == "sub:clerk-1"
