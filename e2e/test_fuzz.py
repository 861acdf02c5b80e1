"""Fuzzing every RPC of every service over real gRPC against the running suite, with requests
generated from the proto descriptors (hypothesis): strings short, at and over their limits,
non-BMP and invalid UTF-8, numbers across their range, enum numbers the proto does not declare,
repeated and map fields up to and over their counts, with and without a token.

Asserted for every call: the status is a documented one (never INTERNAL or UNKNOWN); a refusal
carries the google.rpc.Status details trailer with a zh-CN LocalizedMessage and echoes no more
than a short excerpt of any long input; and a refused call writes nothing (the documents in the
called service's database, and for intake the objects in its bucket, are counted before and after).

ONETHING_FUZZ_EXAMPLES (default 25) sets the examples per RPC; raise it for a long run, e.g.
ONETHING_FUZZ_EXAMPLES=500 ONETHING_TEST_PORT_BASE=23051 .venv/bin/python -m pytest -m e2e e2e/test_fuzz.py
"""
import collections
import importlib
import time

import grpc
import pymongo
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from services.common import limits
from services.common.config import settings
from services.common.registry import NAMES
from tools.client import bearer, citizen_id

pytestmark = pytest.mark.e2e

EXAMPLES = settings().fuzz_examples
SERVICES = NAMES
S = grpc.StatusCode
DOCUMENTED = {S.OK, S.INVALID_ARGUMENT, S.NOT_FOUND, S.FAILED_PRECONDITION, S.ALREADY_EXISTS, S.PERMISSION_DENIED,
              S.UNAUTHENTICATED, S.RESOURCE_EXHAUSTED, S.OUT_OF_RANGE}
# a stream may also end at its time limit (the server's, or the client's own deadline below)
DOCUMENTED_STREAMS = DOCUMENTED | {S.DEADLINE_EXCEEDED}
# calls that write nothing even when they succeed; after any other successful call the suite is
# given time to settle before the next comparison
READ_ONLY_PREFIXES = ("Get", "List", "Verify", "Check", "Watch")
# calls that change shared state when they succeed: they get no realistic values (only made-up
# codes the catalog does not have), so the fuzz never retires a package other tests use
NO_SEEDS = {"PublishPackage", "RetirePackage"}
# written only by the worker role's event handlers (never by an api call), also when earlier
# tests' events arrive late or are swept again
WORKER_ONLY = {"inbox"}
# the audit log records refused attempts too (who tried what, services/common/audit.py): a record of
# the refusal, not a change the refusal made
NOT_STATE = WORKER_ONLY | {"audit"}
ECHO_LIMIT = 64  # no refusal repeats more than this many consecutive characters of one input

SEEDS = {
    "case_no": ["440100XSECS202611260001", "440100XSECS209901019999", "nope"],
    "code": ["XSECS", "KBCYD"], "package_code": ["XSECS", "KBCYD"],
    "region_code": ["440100", "440300", "110000"],
    "id_number": [citizen_id("44010619900101123")], "holder_code": [citizen_id("44010619900101123")],
    "department_code": ["gaj", "wsjk"], "channel": ["online", "window"], "carrier": ["EMS", "SF"],
    "at": ["2026-11-20T10:00:00+08:00"], "rated_from": ["2026-11-01"], "rated_to": ["2026-11-30"],
    "phone": ["13800000000"], "name": ["李华"], "line": ["广州市天河区天河路 1 号"], "postcode": ["510000"],
    "reason": ["HEARING"], "tracking_number": ["EMS1234567890CN"], "pickup_code": ["123456"],
}


def _methods():
    out = []
    for service in SERVICES:
        module = importlib.import_module(f"onething.{service}.v1.{service}_pb2")
        for svc in module.DESCRIPTOR.services_by_name.values():
            for method in svc.methods:
                out.append((service, svc, method))
    return out


METHODS = _methods()
SEEN = collections.defaultdict(collections.Counter)  # method -> status code -> calls


# --- requests from descriptors ---------------------------------------------------------------

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-2 ** 31, 2 ** 31 - 1), FieldDescriptor.TYPE_SINT32: (-2 ** 31, 2 ** 31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-2 ** 31, 2 ** 31 - 1), FieldDescriptor.TYPE_INT64: (-2 ** 63, 2 ** 63 - 1),
    FieldDescriptor.TYPE_SINT64: (-2 ** 63, 2 ** 63 - 1), FieldDescriptor.TYPE_SFIXED64: (-2 ** 63, 2 ** 63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2 ** 32 - 1), FieldDescriptor.TYPE_FIXED32: (0, 2 ** 32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2 ** 64 - 1), FieldDescriptor.TYPE_FIXED64: (0, 2 ** 64 - 1),
}
_NON_BMP = st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF, exclude_categories=("Cs",))
_TEXT = st.characters(exclude_categories=("Cs",))


def _pattern(field, n, base):
    """n characters from `base` on that do not repeat within 997 and differ from field to field, so
    that an echo of one field's input is never mistaken for another's."""
    start = sum(field.full_name.encode()) * 31
    return "".join(chr(base + (start + i) % 997) for i in range(n))


def _string(field, seeded, clean):
    size = limits.limit_for(field).size or 256
    if clean:  # within every limit
        options = [st.text(_TEXT, max_size=min(size, 12)), st.text(_NON_BMP, min_size=1, max_size=min(size, 6))]
        if seeded and SEEDS.get(field.name):
            options = [st.sampled_from(SEEDS[field.name])] * 2 + options
        return st.one_of(*options)
    options = [st.text(_TEXT, max_size=12), st.text(_NON_BMP, min_size=1, max_size=6),
               st.integers(max(0, size - 1), size + 1).map(lambda n: _pattern(field, n, 0x4E00)),  # at the limit
               st.just(_pattern(field, size * 4 + 7, 0x4E00)),                               # far over it
               st.integers(size - 1, size + 1).map(lambda n: _pattern(field, max(0, n), 0x20000))]  # non-BMP
    if seeded and SEEDS.get(field.name):
        options.insert(0, st.sampled_from(SEEDS[field.name]))
    return st.one_of(*options)


def _scalar(field, seeded, depth, clean):
    t = field.type
    if t == FieldDescriptor.TYPE_STRING:
        return _string(field, seeded, clean)
    if t == FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=64), st.just(b"%PDF-1.4\n%%EOF\n"))
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(width=32 if t == FieldDescriptor.TYPE_FLOAT else 64)
    if t == FieldDescriptor.TYPE_ENUM:
        declared = [v.number for v in field.enum_type.values]
        if clean:
            return st.sampled_from(declared)
        return st.one_of(st.sampled_from(declared), st.integers(-2 ** 31, 2 ** 31 - 1))
    if t in _INT_RANGES:
        low, high = _INT_RANGES[t]
        return st.one_of(st.integers(-2, 200).filter(lambda n: low <= n <= high), st.integers(low, high))
    if t == FieldDescriptor.TYPE_MESSAGE:
        return message_of(field.message_type, seeded, depth + 1, clean)
    raise AssertionError(f"no strategy for {field.full_name}")


def _field_value(field, seeded, depth, clean):
    limit = limits.limit_for(field)
    if limits.is_map(field):
        key_field, value_field = (field.message_type.fields_by_name[n] for n in ("key", "value"))
        keys = _scalar(key_field, seeded, depth, clean)
        if key_field.type == FieldDescriptor.TYPE_STRING:
            keys = st.one_of(st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12), keys)
            keys = keys.filter(lambda k: k != "" and (not clean or len(k) <= (limit.key_size or 64)))
        entries = st.dictionaries(keys, _scalar(value_field, seeded, depth, clean), max_size=3)
        over = st.just({f"k{i}": _trivial(value_field) for i in range((limit.count or 100) + 1)})
        return st.one_of(entries, over) if depth == 0 and not clean else entries
    if field.is_repeated:
        items = st.lists(_scalar(field, seeded, depth, clean), max_size=3)
        over = st.just([_trivial(field)] * ((limit.count or 100) + 1))
        return st.one_of(items, over) if depth == 0 and not clean else items
    return _scalar(field, seeded, depth, clean)


def _trivial(field):
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return message_factory.GetMessageClass(field.message_type)()
    return {FieldDescriptor.TYPE_STRING: "x", FieldDescriptor.TYPE_BYTES: b"x",
            FieldDescriptor.TYPE_BOOL: True, FieldDescriptor.TYPE_ENUM: 0}.get(field.type, 1)


def message_of(descriptor, seeded=True, depth=0, clean=False):
    """A strategy of messages of `descriptor`: each field set or left out; `clean` ones keep every
    limit and enum range (they reach the handlers), the others need not."""
    cls = message_factory.GetMessageClass(descriptor)
    if depth > 2:
        return st.just(cls())
    parts = {f.name: st.one_of(st.none(), _field_value(f, seeded, depth, clean)) for f in descriptor.fields}

    def build(values):
        msg = cls()
        for field in descriptor.fields:
            value = values[field.name]
            if value is None:
                continue
            target = getattr(msg, field.name) if (field.is_repeated or field.type == FieldDescriptor.TYPE_MESSAGE) \
                else None
            if limits.is_map(field):
                value_field = field.message_type.fields_by_name["value"]
                for k, v in value.items():
                    if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                        target[k].CopyFrom(v)
                    else:
                        target[k] = v
            elif field.is_repeated:
                if field.type == FieldDescriptor.TYPE_MESSAGE:
                    for v in value:
                        target.add().CopyFrom(v)
                else:
                    target.extend(value)
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                target.CopyFrom(value)
            else:
                setattr(msg, field.name, value)
        return msg
    return st.fixed_dictionaries(parts).map(build)


def _ld(number, payload):
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _invalid_utf8_spots(descriptor):
    """Wire prefixes that put bytes into a string field: top level and one message down."""
    spots = []
    for f in descriptor.fields:
        if f.type == FieldDescriptor.TYPE_STRING and not limits.is_map(f):
            spots.append((f.number,))
        elif f.type == FieldDescriptor.TYPE_MESSAGE and not limits.is_map(f):
            spots += [(f.number, g.number) for g in f.message_type.fields if g.type == FieldDescriptor.TYPE_STRING
                      and not limits.is_map(g)]
    return spots


_BAD_UTF8 = [b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"ok\x80"]


def wire_of(descriptor, seeded=True):
    """Serialized requests: half of them clean (within every limit, reaching the handlers), the
    rest anything: over the limits, unknown enum numbers, a string field holding invalid UTF-8 or
    bytes that are not protobuf at all appended."""
    clean = message_of(descriptor, seeded, clean=True).map(lambda m: (m, m.SerializeToString()))
    spots = _invalid_utf8_spots(descriptor)
    tail = st.one_of(st.just(b""), st.just(b""),
                     st.tuples(st.sampled_from(spots), st.sampled_from(_BAD_UTF8)).map(
                         lambda s: _ld(s[0][0], _ld(s[0][1], s[1])) if len(s[0]) == 2 else _ld(s[0][0], s[1]))
                     if spots else st.just(b""),
                     st.binary(min_size=1, max_size=8))
    hostile = st.tuples(message_of(descriptor, seeded), tail).map(lambda t: (t[0], t[0].SerializeToString() + t[1]))
    return st.one_of(clean, hostile)


# --- the suite ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def suite(suite_running):
    s = settings()
    channels = {svc: grpc.insecure_channel(s.address(svc)) for svc in SERVICES}
    mongo = pymongo.MongoClient(s.mongo_uri)
    from services.common.blobs import Blobs
    blobs = Blobs()
    tokens = [None, bearer("officer-fuzz", "officer", "gaj", "440100"),
              bearer(citizen_id("44010619900101123"), "applicant")]
    state = {"channels": channels, "mongo": mongo, "blobs": blobs, "tokens": tokens, "settings": s}
    _settle(state, SERVICES)
    yield state
    mongo.close()
    for ch in channels.values():
        ch.close()


def _snapshot(state, service):
    db = state["mongo"][state["settings"].db_name(service)]
    counts = {name: db[name].count_documents({}) for name in sorted(db.list_collection_names())
              if name not in NOT_STATE}
    if service == "intake":
        bucket = state["blobs"].bucket("materials")
        client = state["blobs"].client
        counts["s3:materials"] = (sum(1 for _ in client.list_objects(bucket, recursive=True))
                                  if client.bucket_exists(bucket) else 0)
    return counts


def _settle(state, services, quiet_s=0.3, most_s=30):
    """Waits until the services' databases stop changing (the effects of an earlier call, or of
    earlier tests, have landed)."""
    deadline = time.monotonic() + most_s
    last = {s: _snapshot(state, s) for s in services}
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = {s: _snapshot(state, s) for s in services}
        if now == last:
            return now
        last = now
    return last


def _call(state, service, svc, method, payloads, metadata):
    channel = state["channels"][service]
    path = f"/{svc.full_name}/{method.name}"
    ident = dict(request_serializer=None, response_deserializer=None)
    try:
        if method.client_streaming and method.server_streaming:
            list(channel.stream_stream(path, **ident)(iter(payloads), timeout=5, metadata=metadata))
        elif method.client_streaming:
            channel.stream_unary(path, **ident)(iter(payloads), timeout=10, metadata=metadata)
        elif method.server_streaming:
            list(channel.unary_stream(path, **ident)(payloads[0], timeout=3, metadata=metadata))
        else:
            channel.unary_unary(path, **ident)(payloads[0], timeout=20, metadata=metadata)
    except grpc.RpcError as err:
        return err
    return None


def _long_inputs(message, out=None, prefix=""):
    """Every string in the message (nested, repeated, map keys and values) longer than ECHO_LIMIT."""
    out = [] if out is None else out
    for field, value in message.ListFields():
        values = value.items() if limits.is_map(field) else value if field.is_repeated else [value]
        for v in values:
            for part in (v if isinstance(v, tuple) else (v,)):
                if isinstance(part, str) and len(part) > ECHO_LIMIT:
                    out.append(part)
                elif hasattr(part, "ListFields"):
                    _long_inputs(part, out)
    return out


def _localized(err):
    status = rpc_status.from_call(err)
    assert status is not None, f"{err.code()} without a status details trailer: {err.details()}"
    for detail in status.details:
        if detail.Is(error_details_pb2.LocalizedMessage.DESCRIPTOR):
            msg = error_details_pb2.LocalizedMessage()
            detail.Unpack(msg)
            return msg
    raise AssertionError(f"no LocalizedMessage in the details of {err.code()}: {err.details()}")


@pytest.mark.parametrize("service, svc, method", METHODS, ids=[f"{s.name}.{m.name}" for _, s, m in METHODS])
def test_fuzz_every_rpc(suite, service, svc, method):
    seeded = method.name not in NO_SEEDS
    requests = st.lists(wire_of(method.input_type, seeded), min_size=1, max_size=3) if method.client_streaming \
        else wire_of(method.input_type, seeded).map(lambda r: [r])
    state = {"before": _settle(suite, [service])[service]}

    @hsettings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
               suppress_health_check=list(HealthCheck))
    @given(requests=requests, token=st.sampled_from(suite["tokens"]))
    def run(requests, token):
        before = state["before"]
        err = _call(suite, service, svc, method, [wire for _, wire in requests], token)
        code = S.OK if err is None else err.code()
        SEEN[f"{svc.name}.{method.name}"][code.name] += 1
        documented = DOCUMENTED_STREAMS if (method.client_streaming or method.server_streaming) else DOCUMENTED
        shown = [m for m, _ in requests][:1]
        assert code in documented, f"{method.name} answered {code}: {err.details() if err else ''} for {shown}"
        if err is None:
            if not method.name.startswith(READ_ONLY_PREFIXES):
                state["before"] = _settle(suite, [service])[service]
            return
        if code == S.DEADLINE_EXCEEDED and err.details() == "Deadline Exceeded":
            state["before"] = _settle(suite, [service])[service]  # the client's own deadline: nothing to read
            return
        localized = _localized(err)
        assert localized.locale == "zh-CN" and localized.message
        for text in (t for m, _ in requests for t in _long_inputs(m)):
            for i in range(0, len(text) - ECHO_LIMIT, ECHO_LIMIT // 2):
                assert text[i:i + ECHO_LIMIT] not in err.details(), f"{method.name} echoed input: {err.details()}"
        after = _snapshot(suite, service)
        assert after == before, f"{method.name} refused with {code} ({err.details()}) but wrote: {before} -> {after}"

    run()


def test_fuzz_reached_past_the_checks():
    """The generated requests are not all refused at the door: across the RPCs the handlers
    answered too (OK, NOT_FOUND, permission and state refusals), and every RPC was called."""
    if len(SEEN) < len(METHODS):
        pytest.skip("only part of the fuzz ran")
    for name, codes in sorted(SEEN.items()):
        print(f"{name:45s} " + ", ".join(f"{c} {n}" for c, n in codes.most_common()))
    total = sum(SEEN.values(), collections.Counter())
    assert {"OK", "INVALID_ARGUMENT", "NOT_FOUND", "UNAUTHENTICATED"} <= set(total), total
    reached = [name for name, codes in SEEN.items() if set(codes) - {"INVALID_ARGUMENT"}]
    assert len(reached) >= len(METHODS) * 3 // 4, f"mostly refused at the door: {dict(SEEN)}"
