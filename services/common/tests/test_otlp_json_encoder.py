"""The span files' OTLP/JSON encoder (telemetry.otlp_json) writes exactly what protobuf's JSON
mapping of the OTLP exporter's own encode_spans gives (the encoder it replaces, kept here as the
reference): key for key, value for value, in the same order, for spans of the real SDK and for
spans built by hand with what the SDK would not let through."""
import base64
import json
import math
from contextlib import nullcontext

import pytest
from google.protobuf.json_format import MessageToDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from services.common import telemetry

SCHEMA = "https://opentelemetry.io/schemas/1.26.0"


def reference(spans):
    """The encoder before: protobuf's JSON mapping of encode_spans, ids rewritten as hex."""
    def hex_ids(obj):
        for key in ("traceId", "spanId", "parentSpanId"):
            if obj.get(key):
                obj[key] = base64.b64decode(obj[key]).hex()

    request = MessageToDict(encode_spans(spans), use_integers_for_enums=True)
    for resource_spans in request.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                hex_ids(span)
                for link in span.get("links", []):
                    hex_ids(link)
    return request


def assert_same(spans):
    new, old = telemetry.otlp_json(spans), reference(spans)
    assert new == old
    # the same line on disk: the same key order, the same types (a float stays a float)
    assert json.dumps(new, ensure_ascii=False) == json.dumps(old, ensure_ascii=False)
    return new


def _provider(resource=None, limits=None):
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=resource or Resource.create({}), span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


def _remote_parent(trace_state=(("vendor", "v1"), ("rojo", "00f067aa0ba902b7"))):
    ctx = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=True,
                      trace_flags=TraceFlags(TraceFlags.SAMPLED), trace_state=TraceState(list(trace_state)))
    return trace.set_span_in_context(NonRecordingSpan(ctx))


ALL_TYPES = {
    "s": "text", "i": 42, "f": 0.25, "b": True,
    "empty": "", "zero": 0, "zero.f": 0.0, "neg.zero.f": -0.0, "false": False, "neg": -7,
    "int64.max": 2**63 - 1, "int64.min": -(2**63), "big.f": 1e300, "tiny.f": 5e-324,
    "ls": ["a", "", "病例"], "li": [0, 1, -2, 2**62], "lf": [0.0, 1.5, -2.25], "lb": [True, False],
    "t.ls": ("x", "y"), "l.empty": [], "zh": "受理窗口：深圳市南山区",
}


def rich_spans():
    """Spans of the real SDK with every field encode_spans writes."""
    resource = Resource.create({"service.name": "intake-worker", "service.namespace": "onething",
                                "service.instance.id": "intake-worker-77", "onething.site": "440300",
                                "host.cpu": 8, "deployment.ratio": 0.5, "feature.on": True,
                                "langs": ["zh", "en"]}, schema_url=SCHEMA)
    provider, memory = _provider(resource)
    one = provider.get_tracer("onething", "1.4.0", schema_url=SCHEMA, attributes={"scope.kind": "app", "n": 1})
    two = provider.get_tracer("onething.mongo", "0.9")
    bare = provider.get_tracer("bare")
    with one.start_as_current_span("受理 case", kind=SpanKind.SERVER, attributes=ALL_TYPES) as root:
        root.add_event("no attributes")
        root.add_event("with attributes", {"k": "v", "n": 3, "zh": "补正通知", "l": [1, 2]})
        root.add_event("", timestamp=0)
        root.add_event("stamped", {"empty": "", "false": False}, timestamp=1764115200000000123)
        for kind in SpanKind:
            with two.start_as_current_span(f"child {kind.name}", kind=kind) as child:
                child.set_attribute("kind", kind.name)
        with bare.start_as_current_span("ok") as ok:
            ok.set_status(Status(StatusCode.OK))
        with one.start_as_current_span("error without description") as bad:
            bad.set_status(Status(StatusCode.ERROR))
        with one.start_as_current_span("error", record_exception=False) as bad:
            bad.set_status(Status(StatusCode.ERROR, "NotWritablePrimary: 主节点不可写"))
        try:
            with two.start_as_current_span("raises"):
                raise ValueError("身份证号 bad")
        except ValueError:
            pass
        root_context = root.get_span_context()
    remote = _remote_parent()
    linked = SpanContext(0x1234, 0x5678, is_remote=True, trace_state=TraceState([("a", "1")]))
    local_link = SpanContext(0xABC, 0xDEF, is_remote=False)
    with two.start_as_current_span("process intake.events", context=remote, kind=SpanKind.CONSUMER,
                                   links=[Link(linked, {"messaging.id": "m-1", "n": 0, "l": ["x"]}),
                                          Link(local_link), Link(root_context, {"zh": "关联"})]) as consumer:
        consumer.set_attribute("messaging.system", "rabbitmq")
    with one.start_as_current_span("default kind"):
        pass
    return list(memory.get_finished_spans())


def test_every_field_of_real_spans():
    spans = rich_spans()
    out = assert_same(spans)
    (resource_spans,) = out["resourceSpans"]
    assert [s["scope"].get("name") for s in resource_spans["scopeSpans"]] == ["onething.mongo", "bare", "onething"]
    consumer = next(s for ss in resource_spans["scopeSpans"] for s in ss["spans"] if s["name"] == "process intake.events")
    assert consumer["flags"] == 0x300 and consumer["parentSpanId"] == "b7ad6b7169203331"
    assert consumer["traceState"] == "vendor=v1,rojo=00f067aa0ba902b7"
    assert [link["flags"] for link in consumer["links"]] == [0x300, 0x100, 0x100]


def test_masked_spans_as_the_file_exporter_gets_them():
    assert_same([telemetry.masked(s) for s in rich_spans()])


def test_dropped_attributes_events_and_links():
    limits = SpanLimits(max_span_attributes=2, max_events=1, max_links=1, max_event_attributes=1,
                        max_link_attributes=1, max_attribute_length=4)
    provider, memory = _provider(Resource.create({"service.name": "x"}), limits)
    tracer = provider.get_tracer("limits")
    ctx = SpanContext(0x1, 0x2, is_remote=False)
    with tracer.start_as_current_span("full", attributes={"a": 1, "b": "长长长长长长", "c": 3},
                                      links=[Link(ctx), Link(ctx, {"x": 1, "y": 2})]) as span:
        span.add_event("e1")
        span.add_event("e2", {"p": 1, "q": 2})  # the newest event is kept
    (span,) = memory.get_finished_spans()
    out = assert_same([span])
    (encoded,) = out["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert (encoded["droppedAttributesCount"], encoded["droppedEventsCount"], encoded["droppedLinksCount"]) == (1, 1, 1)
    assert encoded["events"][0]["droppedAttributesCount"] == 1 and encoded["links"][0]["droppedAttributesCount"] == 1


def test_resources_and_scopes_group_in_the_order_they_first_appear():
    first, memory_first = _provider(Resource.create({"service.name": "a"}))
    second, memory_second = _provider(Resource.create({"service.name": "b"}, schema_url=SCHEMA))
    twin, memory_twin = _provider(Resource.create({"service.name": "a"}))  # equal, not the same object
    spans = []
    for i in range(3):
        for provider, memory in ((first, memory_first), (second, memory_second), (twin, memory_twin)):
            for scope in ("s1", "s2"):
                with provider.get_tracer(scope, str(i % 2)).start_as_current_span(f"{scope}-{i}"):
                    pass
                spans.append(memory.get_finished_spans()[-1])
    out = assert_same(spans)
    assert len(out["resourceSpans"]) == 2
    assert assert_same(spans[::-1]) != out
    assert assert_same([]) == {}


def _hand_made(**fields):
    base = dict(name="hand", context=SpanContext(0xFEED, 0xBEEF, is_remote=False),
                resource=Resource({"r": "1"}), start_time=1, end_time=2,
                instrumentation_scope=InstrumentationScope("hand", "1"))
    base.update(fields)
    return ReadableSpan(**base)


@pytest.mark.parametrize("value", [
    None, b"", b"\x00\xffbytes", {"nested": {"k": [1, "2", None]}, "": 1, 3: "int key"}, {}, [], [[1, [2]], []],
    [1, "mixed", 2.5, True, None], float("nan"), float("inf"), -float("inf"), [float("nan")],
    2**63, -(2**63) - 1, [1, 2**64], object(), [object()], "\ud800 lone surrogate", ["ok", "\udcff"],
    bytearray(b"ab"), range(3), StatusCode.ERROR, TraceFlags(1), True, "受理",
], ids=repr)
def test_values_the_sdk_would_not_let_through_are_encoded_or_left_out_as_before(value):
    span = _hand_made(attributes={"before": 1, "value": value, "": "empty key", "after": 2},
                      events=[Event("e", {"value": value}, 5)],
                      links=[Link(SpanContext(3, 4, is_remote=True), {"value": value})])
    assert_same([span])


@pytest.mark.parametrize("fields", [
    {"instrumentation_scope": None}, {"status": None}, {"start_time": 0, "end_time": None},
    {"name": ""}, {"name": None}, {"parent": SpanContext(0, 0, is_remote=False)},
    {"parent": SpanContext(9, 10, is_remote=True)}, {"context": SpanContext(0, 0, is_remote=False)},
    {"context": SpanContext(2**128 - 1, 2**64 - 1, is_remote=False)},
    {"resource": Resource({})}, {"resource": Resource({}, schema_url=SCHEMA)},
    {"instrumentation_scope": InstrumentationScope("", None, "", {"a": [1.5]})},
    {"status": Status(StatusCode.OK, "ignored for OK")}, {"attributes": {}}, {"attributes": None},
    {"events": [Event("", None, 0), Event("e", {}, 2**64 - 1)]},
    {"links": [Link(SpanContext(1, 2, is_remote=False, trace_state=TraceState([("k", "v")])))]},
], ids=repr)
def test_fields_at_their_defaults_and_limits(fields):
    assert_same([_hand_made(**fields)])


def test_what_protobuf_refuses_outside_attributes_still_raises():
    for span in (_hand_made(name="\ud800"), _hand_made(start_time=-1),
                 _hand_made(context=SpanContext(2**128, 1, is_remote=False)), _hand_made(kind=None)):
        with pytest.raises(Exception) as old:
            reference([span])
        with pytest.raises(type(old.value)):
            telemetry.otlp_json([span])


# -- random batches ---------------------------------------------------------------------------------
_int64 = st.integers(-(2**63), 2**63 - 1)
_text = st.text(st.characters(codec="utf-8"), max_size=12)
_double = st.floats(allow_nan=True, allow_infinity=True)
_scalar = st.one_of(_text, st.booleans(), _int64, _double)
_value = st.one_of(_scalar, *(st.lists(s, max_size=4) for s in (_text, st.booleans(), _int64, _double)))
_attributes = st.dictionaries(st.text(min_size=1, max_size=8), _value, max_size=6)
_span = st.fixed_dictionaries({
    "name": _text, "kind": st.sampled_from(list(SpanKind)), "attributes": _attributes,
    "scope": st.sampled_from([("a", "1"), ("a", "2"), ("b", None)]), "resource": st.integers(0, 2),
    "child": st.booleans(), "remote": st.booleans(),
    "events": st.lists(st.tuples(_text, _attributes), max_size=3),
    "links": st.lists(st.tuples(st.integers(1, 2**128 - 1), st.integers(1, 2**64 - 1), st.booleans(), _attributes),
                      max_size=2),
    "status": st.sampled_from([None, (StatusCode.OK, None), (StatusCode.ERROR, None), (StatusCode.ERROR, "失败"),
                               (StatusCode.ERROR, "")]),
})


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_span, min_size=1, max_size=12), st.booleans())
def test_random_batches(specs, masked):
    providers = [_provider(Resource.create({"service.name": f"svc{i}", "n": i})) for i in range(3)]
    spans = []
    for spec in specs:
        provider, memory = providers[spec["resource"]]
        tracer = provider.get_tracer(*spec["scope"])
        parent = _remote_parent() if spec["remote"] else None
        links = [Link(SpanContext(t, s, is_remote=r), a) for t, s, r, a in spec["links"]]
        outer = tracer.start_as_current_span("outer", context=parent) if spec["child"] else nullcontext()
        with outer:
            with tracer.start_as_current_span(spec["name"], context=None if spec["child"] else parent,
                                              kind=spec["kind"], attributes=spec["attributes"], links=links) as span:
                for name, attributes in spec["events"]:
                    span.add_event(name, attributes)
                if spec["status"]:
                    span.set_status(Status(*spec["status"]))
        spans.extend(memory.get_finished_spans())
        memory.clear()
    if masked:
        spans = [telemetry.masked(s) for s in spans]
    out = assert_same(spans)
    doubles = [a["value"]["doubleValue"] for rs in out.get("resourceSpans", []) for ss in rs["scopeSpans"]
               for s in ss["spans"] for a in s.get("attributes", []) if "doubleValue" in a["value"]]
    assert all(isinstance(d, str) or math.isfinite(d) for d in doubles)  # NaN and inf are written as text
