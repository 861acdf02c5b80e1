"""Spans leave every process over OTLP/HTTP (protobuf) to a collector, here the small receiver of
e2e/otlp_receiver.py that the whole suite of this run exports to: apis, workers and desks, with the
case number, the semantic conventions' messaging attributes and consumers linked to their
producers. A collector that is down or stuck costs the spans, not the cases."""
import glob
import os
import re
import time

import pytest

from e2e.waits import wait_until
from onething.intake.v1 import intake_pb2
from services.common import telemetry
from services.common.config import settings

pytestmark = pytest.mark.e2e
ENDS = {intake_pb2.CASE_STATUS_DELIVERED, intake_pb2.CASE_STATUS_REJECTED}
CONSUMER, PRODUCER = 5, 4  # OTLP's SpanKind numbers


def _case(client):
    with telemetry.tracer().start_as_current_span("e2e otlp case") as root:
        case = client.newborn_case()
        telemetry.mark_case(case.case_no, root)
        started = time.monotonic()
        case = client.wait_status(case.case_no, ENDS, timeout=90)
    assert case.status == intake_pb2.CASE_STATUS_DELIVERED, intake_pb2.CaseStatus.Name(case.status)
    return case.case_no, time.monotonic() - started


def test_spans_of_apis_workers_and_desks_arrive_with_the_case_and_linked_parents(client, otlp_receiver):
    no, _ = _case(client)
    telemetry.flush()

    def whole():
        spans = otlp_receiver.of_case(no)
        services = {s.service for s in spans}
        wanted = {"intake-api", "intake-worker", "joint_review-worker", "elicense-worker", "delivery-worker"}
        ids = {s.span_id for s in spans}
        # every parent came too (a parent ends after its children, so it may come a batch later), but
        # for the apis' server spans, whose parent is this test's client
        complete = all(s.parent_id in ids for s in spans if s.parent_id and s.kind != 2)
        desk = any(re.fullmatch(r"desk-[a-z]+-\d{6}", s) for s in services)
        return spans if wanted <= services and desk and complete else None
    try:
        spans = wait_until(whole, timeout=30, what=f"spans of apis, workers and desks for {no} at the receiver")
    except TimeoutError:  # the assertions below say what is missing
        spans = otlp_receiver.of_case(no)

    by_id = {s.span_id: s for s in spans}
    consumers = [s for s in spans if s.kind == CONSUMER]
    assert len(consumers) >= 10
    for span in consumers:
        producer = by_id.get(span.parent_id)
        assert producer is not None and producer.kind == PRODUCER, (span.name, span.service)
        assert (producer.trace_id, producer.span_id) in span.links, (span.name, span.service)
        assert span.name == f"process {span.attributes['messaging.destination.name']}"
        assert span.attributes["messaging.system"] == "rabbitmq"
        assert span.attributes["messaging.message.id"] == producer.attributes["messaging.message.id"]
        assert span.attributes["messaging.rabbitmq.destination.routing_key"] == \
            producer.attributes["messaging.rabbitmq.destination.routing_key"]
    desks = [s for s in consumers if re.fullmatch(r"desk-[a-z]+-\d{6}", s.service)]
    assert desks and all(s.attributes.get(telemetry.CASE_ATTR) == no for s in desks)
    assert all(s.site == settings().region for s in spans if s.service.endswith(("-api", "-worker")))
    # every span of the case's trace reached the receiver whole: its parent is there too, but for
    # the apis' server spans, whose parent is this test's client
    orphans = [s for s in spans if s.parent_id and s.parent_id not in by_id and s.kind != 2]
    assert not orphans, [(s.service, s.name) for s in orphans[:5]]


def _span_files_hold(no):
    for path in glob.glob(os.path.join(settings().spans_dir, "*.jsonl")):
        with open(path, encoding="utf-8", errors="replace") as fh:
            if no in fh.read():
                return True
    return False


def _cases_for(client, seconds):
    """Cases one after another for at least `seconds` (longer than an export's timeout, so that
    exports fail rather than succeed on a retry) and at least three: [(case_no, seconds it took)]."""
    done, started = [], time.monotonic()
    while len(done) < 3 or time.monotonic() - started < seconds:
        done.append(_case(client))
    return done


def _export_log(name):
    with open(os.path.join(settings().var_dir, "log", f"{name}.log"), encoding="utf-8", errors="replace") as fh:
        return fh.read()


def test_a_collector_that_is_down_or_stuck_costs_the_spans_not_the_cases(client, otlp_receiver):
    timeout = float(os.environ["OTEL_EXPORTER_OTLP_TIMEOUT"])
    took = {"up": [t for _, t in _cases_for(client, 0)]}
    try:
        otlp_receiver.close()  # refused
        before = otlp_receiver.count()
        refused = _cases_for(client, timeout + 3)
        otlp_receiver.hang()  # accepted, never answered: every export waits out its timeout
        stuck = _cases_for(client, timeout + 3)
        assert otlp_receiver.count() == before  # nothing could arrive
        took.update(refused=[t for _, t in refused], stuck=[t for _, t in stuck])
        for no, _ in refused + stuck:  # the span files go on
            wait_until(lambda no=no: _span_files_hold(no), timeout=15, what=f"{no} in the span files")
        wait_until(lambda: "span export to OTLP" in _export_log("intake-api"), timeout=2 * timeout + 5,
                   what="intake-api saying its span export fails")
    finally:
        otlp_receiver.open()
    no, after = _case(client)
    took["back"] = [after]
    telemetry.flush()
    wait_until(lambda: otlp_receiver.of_case(no), timeout=3 * timeout + 10,
               what=f"spans of {no} once the receiver is back")
    print("submit → delivered, seconds:", {k: [round(t, 2) for t in v] for k, v in took.items()})
    # every case went through (their times are printed above, not asserted); a process says once
    # that its export fails and once that it works again
    wait_until(lambda: "works again" in _export_log("intake-api"), timeout=3 * timeout + 10,
               what="intake-api saying its span export works again")
    text = _export_log("intake-api")
    assert text.count("is failing") == 1 and text.count("works again") == 1
