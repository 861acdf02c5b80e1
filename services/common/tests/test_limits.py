"""The one table of request limits, the generic walk over request messages (sizes, counts, map
keys, enum ranges), finding invalid UTF-8 in raw request bytes, the error details a refusal
carries, and the stream slots and time limits — without a server."""
import importlib
import time

import pytest
from google.protobuf.descriptor import FieldDescriptor

from onething.common.v1 import common_pb2
from onething.evaluation.v1 import evaluation_pb2
from onething.intake.v1 import intake_pb2
from onething.joint_review.v1 import joint_review_pb2
from services.common import limits
from services.common.errors import (
    ZH_FALLBACK,
    AlreadyExists,
    Busy,
    DeadlineExceeded,
    DomainError,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from services.common.streams import DeadlineContext, StreamGate, StreamLimits, guarded

SERVICES = ["catalog.v1.catalog", "intake.v1.intake", "joint_review.v1.joint_review", "elicense.v1.elicense",
            "delivery.v1.delivery", "evaluation.v1.evaluation"]


def request_types():
    seen = {}
    for name in SERVICES:
        module = importlib.import_module(f"onething.{name}_pb2")
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                seen[method.input_type.full_name] = method.input_type
    return seen


def fields_within(descriptor, seen=None):
    seen = set() if seen is None else seen
    if descriptor.full_name in seen:
        return
    seen.add(descriptor.full_name)
    for field in descriptor.fields:
        yield field
        if field.message_type is not None and not limits.is_map(field):
            yield from fields_within(field.message_type, seen)


# --- the table -------------------------------------------------------------------------------


def test_every_text_and_collection_field_of_every_request_is_named_in_the_table():
    unnamed = []
    for descriptor in request_types().values():
        for field in fields_within(descriptor):
            sized = field.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES) or field.is_repeated
            if sized and limits.kind_of(field) is None:
                unnamed.append(field.full_name)
    assert not unnamed, f"add these to services/common/limits.py (BY_NAME or FIELDS): {unnamed}"


def test_every_kind_used_exists_and_every_sized_field_gets_a_limit():
    for kind in list(limits.BY_NAME.values()) + list(limits.FIELDS.values()):
        assert kind in limits.KINDS
    for descriptor in request_types().values():
        for field in fields_within(descriptor):
            limit = limits.limit_for(field)
            if field.is_repeated:
                assert limit.count, field.full_name
            if field.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES) and not limits.is_map(field):
                assert limit.size, field.full_name


def test_a_field_nobody_listed_still_has_the_defaults():
    # google.protobuf's own descriptor messages stand in for a future field nobody listed
    from google.protobuf import descriptor_pb2
    field = descriptor_pb2.FieldDescriptorProto.DESCRIPTOR.fields_by_name["type_name"]
    assert limits.kind_of(field) is None and limits.limit_for(field).size == limits.DEFAULT["string"].size
    msg = descriptor_pb2.FieldDescriptorProto(type_name="x" * 300)
    [v] = limits.check_message(msg)
    assert v.field == "type_name" and "256" in v.description


# --- the walk -------------------------------------------------------------------------------


def submit(**kw):
    return intake_pb2.SubmitCaseRequest(**kw)


def test_a_valid_request_has_no_violations():
    msg = submit(package_code="XSECS", region_code="440100", idempotency_key="k" * 128,
                 applicant=common_pb2.Applicant(id_number="440106199001011235", name="李" * 100),
                 form={f"f{i}": "v" * 1000 for i in range(200)}, materials=[intake_pb2.MaterialSubmission()] * 100,
                 delivery=common_pb2.DeliveryPreference(channel=common_pb2.DELIVERY_CHANNEL_MAIL))
    assert limits.check_message(msg) == []


def test_nested_string_too_long_names_the_path_and_the_limit_and_echoes_only_an_excerpt():
    name = "李" * 40 + "秘密" * 5000
    [v] = limits.check_message(submit(applicant=common_pb2.Applicant(name=name)))
    assert v.field == "applicant.name" and v.reason == "TOO_LONG"
    assert "at most 100" in v.description and str(len(name)) in v.description
    assert "秘密" not in v.description and "李" * 32 in v.description and "李" * 33 not in v.description
    assert "100" in v.zh and "姓名" in v.zh


def test_non_bmp_characters_count_as_one_each():
    assert limits.check_message(submit(applicant=common_pb2.Applicant(name="𠀀" * 100))) == []
    [v] = limits.check_message(submit(applicant=common_pb2.Applicant(name="𠀀" * 101)))
    assert v.field == "applicant.name"


def test_repeated_count_and_elements():
    [v] = limits.check_message(submit(materials=[intake_pb2.MaterialSubmission(upload_id="u")] * 101))
    assert v.field == "materials" and v.reason == "TOO_MANY" and "100" in v.description
    msg = submit(materials=[intake_pb2.MaterialSubmission(), intake_pb2.MaterialSubmission(upload_id="u" * 65)])
    [v] = limits.check_message(msg)
    assert v.field == "materials[1].upload_id" and "64" in v.description
    msg = joint_review_pb2.RecordOpinionRequest(defects=["ok", "d" * 501])
    [v] = limits.check_message(msg)
    assert v.field == "defects[1]"


def test_map_count_key_and_value():
    [v] = limits.check_message(submit(form={str(i): "x" for i in range(201)}))
    assert v.field == "form" and "200" in v.description
    [v] = limits.check_message(submit(form={"k" * 65: "x"}))
    assert v.field.startswith("form[") and v.reason == "KEY_TOO_LONG"
    assert "k" * 33 not in v.field  # the key in the path is an excerpt too
    [v] = limits.check_message(submit(form={"birth": "x" * 1001}))
    assert v.field == 'form["birth"]' and "1000" in v.description
    [v] = limits.check_message(submit(situations={"twins": "y" * 65}))
    assert v.field == 'situations["twins"]'


def test_enum_out_of_range_anywhere():
    [v] = limits.check_message(submit(delivery=common_pb2.DeliveryPreference(channel=99)))
    assert v.field == "delivery.channel" and v.reason == "UNKNOWN_ENUM_VALUE" and "99" in v.description
    [v] = limits.check_message(evaluation_pb2.SubmitEvaluationRequest(grade=-1))
    assert v.field == "grade"
    [v] = limits.check_message(joint_review_pb2.ListTasksRequest(state=2 ** 31 - 1))
    assert v.field == "state"
    assert limits.check_message(evaluation_pb2.SubmitEvaluationRequest(grade=5)) == []


def test_at_most_ten_violations_are_reported():
    msg = submit(form={f"{i:03d}": "x" * 2000 for i in range(50)})
    assert len(limits.check_message(msg)) == limits.MAX_VIOLATIONS


def test_excerpt():
    assert limits.excerpt("abc") == '"abc"'
    assert limits.excerpt("a" * 40) == '"' + "a" * 32 + '"…'
    assert limits.excerpt(b"\xff" * 40).startswith("0x" + "ff" * 32)


# --- invalid UTF-8 in the raw bytes -----------------------------------------------------------

def _ld(number, payload):
    return bytes([number << 3 | 2, len(payload)]) + payload


def test_invalid_utf8_is_found_at_its_path():
    d = intake_pb2.SubmitCaseRequest.DESCRIPTOR
    assert limits.invalid_utf8_path(d, _ld(1, b"\xff")) == "package_code"
    assert limits.invalid_utf8_path(d, _ld(3, _ld(2, b"ok") + _ld(3, b"\xc3("))) == "applicant.phone"
    two = _ld(5, _ld(2, b"fine")) + _ld(5, _ld(2, b"\xed\xa0\x80"))  # a lone surrogate
    assert limits.invalid_utf8_path(d, two) == "materials[1].upload_id"
    assert limits.invalid_utf8_path(d, _ld(4, _ld(1, b"k") + _ld(2, b"\xff"))).startswith("form[")
    assert limits.invalid_utf8_path(d, _ld(1, "好".encode())) is None
    assert limits.invalid_utf8_path(d, b"\xff\xff\xff") is None  # not protobuf at all
    header = intake_pb2.UploadMaterialRequest.DESCRIPTOR
    assert limits.invalid_utf8_path(header, _ld(1, _ld(3, b"\x80"))) == "header.file_name"
    assert limits.invalid_utf8_path(header, _ld(2, b"\xff\xfe")) is None  # bytes may be anything


# --- errors ---------------------------------------------------------------------------------

def test_every_code_has_a_chinese_fallback_and_errors_carry_fields():
    import grpc
    assert set(ZH_FALLBACK) == {c.name for c in grpc.StatusCode}
    assert NotFound("no case").zh_message == ZH_FALLBACK["NOT_FOUND"]
    exc = InvalidArgument("form: x", violations=[("form[\"x\"]", "required", "请填写", "REQUIRED")])
    assert exc.violations == (FieldViolation('form["x"]', "required", "请填写", "REQUIRED"),)
    assert exc.zh_message == "请填写"  # one field: its message is the error's
    assert AlreadyExists("x", zh="已存在").zh_message == "已存在"
    assert Busy("b", retry_after_s=1).retry_after_s == 1 and Busy.code == "RESOURCE_EXHAUSTED"
    assert DeadlineExceeded("d").code == "DEADLINE_EXCEEDED" and isinstance(DeadlineExceeded("d"), DomainError)


def test_form_validation_names_the_field():
    from services.intake import domain
    fields = [{"key": "phone", "label": "联系电话", "validator": "phone", "required": True},
              {"key": "birth", "label": "出生日期", "type": "date"}]
    with pytest.raises(InvalidArgument) as err:
        domain.check_form(fields, {})
    assert err.value.violations[0].field == 'form["phone"]' and "联系电话" in err.value.zh_message
    with pytest.raises(InvalidArgument) as err:
        domain.check_form(fields, {"phone": "12", "birth": "2020-01-01"})
    assert err.value.violations[0].reason == "INVALID_VALUE" and "手机" in err.value.zh_message
    with pytest.raises(InvalidArgument) as err:
        domain.check_form(fields, {"phone": "13800000000", "birth": "x" * 500})
    assert err.value.violations[0].field == 'form["birth"]' and "x" * 33 not in err.value.message


def test_the_idempotency_digest_is_about_content_not_form():
    from services.intake import domain
    a = {"package_code": "XSECS", "region_code": "440100", "idempotency_key": "k1",
         "form": {"a": "1", "b": "2"}, "materials": [{"material_code": "M1", "upload_id": "u1"},
                                                      {"material_code": "M2", "upload_id": "u2"}]}
    b = {"idempotency_key": "k2", "form": {"b": "2", "a": "1"}, "region_code": "440100", "package_code": "XSECS",
         "materials": [{"material_code": "M2", "upload_id": "u2"}, {"material_code": "M1", "upload_id": "u1"}],
         "situations": {}}
    assert domain.request_digest(a) == domain.request_digest(b)
    assert domain.request_digest(a) != domain.request_digest(dict(a, form={"a": "1", "b": "3"}))

    class Case:
        case_no, request_hash = "440100XSECS202611260001", domain.request_digest(a)
    assert domain.check_same_request(Case, domain.request_digest(b), "k1") is Case
    with pytest.raises(AlreadyExists) as err:
        domain.check_same_request(Case, domain.request_digest(dict(a, region_code="440300")), "k1")
    assert err.value.violations[0].field == "idempotency_key" and Case.case_no in err.value.message

    class Old:
        case_no, request_hash = "X", None
    assert domain.check_same_request(Old, "anything", "k") is Old


# --- streams --------------------------------------------------------------------------------

def test_stream_gate_per_caller_and_total():
    gate = StreamGate("uploads", total=3, per_caller=2)
    r1, r2 = gate.acquire("a"), gate.acquire("a")
    with pytest.raises(Busy) as err:
        gate.acquire("a")
    assert "limit 2" in err.value.message and err.value.retry_after_s
    r3 = gate.acquire("b")
    with pytest.raises(Busy) as err:
        gate.acquire("c")
    assert "limit 3" in err.value.message
    r1()
    r1()  # twice changes nothing
    assert gate.in_use() == 2 and gate.in_use("a") == 1
    gate.acquire("c")
    r2(), r3()
    assert gate.in_use("a") == 0


def test_stream_limits_leave_threads_for_unary_calls():
    # what holds threads (uploads, server streams on the pool) takes at most three quarters of them
    checked = StreamLimits(threads=8, uploads_total=10, uploads_per_caller=9, watches_total=10).checked()
    assert checked.uploads_total + checked.pool_streams <= 6 and checked.pool_streams >= 1
    assert checked.uploads_per_caller <= checked.uploads_total
    default = StreamLimits().checked()
    assert default.uploads_total + default.pool_streams <= default.threads - 4


def test_watches_hold_no_thread_so_their_caps_do_not_follow_the_threads():
    checked = StreamLimits(threads=8, uploads_total=3, watches_total=2000, watches_per_caller=5000).checked()
    assert checked.watches_total == 2000 and checked.watches_per_caller == 2000
    assert StreamLimits().checked().watches_total == 2000
    assert StreamLimits(watches_total=0, watches_per_caller=0).checked().watches_per_caller == 1


def test_stream_settings_come_from_config(monkeypatch):
    from services.common.config import settings
    monkeypatch.setenv("ONETHING_STREAM_IDLE_SECONDS", "2.5")
    monkeypatch.setenv("ONETHING_STREAM_UPLOADS_PER_CALLER", "1")
    got = StreamLimits.from_settings(settings())
    assert got.idle_s == 2.5 and got.uploads_per_caller == 1 and got.threads == 16


def test_guarded_passes_messages_and_ends_idle_or_late_streams():
    assert list(guarded(iter([1, 2, 3]), 1.0, time.monotonic() + 5)) == [1, 2, 3]

    def slow():
        yield 1
        time.sleep(2)
        yield 2
    got, t0 = [], time.monotonic()
    with pytest.raises(DeadlineExceeded) as err:
        for m in guarded(slow(), 0.3, time.monotonic() + 5):
            got.append(m)
    assert got == [1] and time.monotonic() - t0 < 1.5 and "nothing arrived" in err.value.message

    def steady():
        while True:
            time.sleep(0.05)
            yield 0
    with pytest.raises(DeadlineExceeded) as err:
        for _ in guarded(steady(), 0.3, time.monotonic() + 0.5):
            pass
    assert "time limit" in err.value.message or "longer than" in err.value.message

    def broken():
        yield 1
        raise ValueError("gone")
    with pytest.raises(ValueError):
        list(guarded(broken(), 1.0, time.monotonic() + 5))


def test_deadline_context_turns_inactive():
    class Ctx:
        def is_active(self):
            return True

        def time_remaining(self):
            return None

        def peer(self):
            return "ipv4:1.2.3.4:5"
    ctx = DeadlineContext(Ctx(), time.monotonic() + 0.2)
    assert ctx.is_active() and ctx.peer() == "ipv4:1.2.3.4:5" and 0 < ctx.time_remaining() <= 0.2
    time.sleep(0.25)
    assert not ctx.is_active() and ctx.expired()
