"""WatchCase through intake's api over real gRPC (an in-process server on a free port, the handlers
on the in-memory fakes, tokens from a throw-away identity provider): 200 watches open at once on one
server, unary calls still answered at once, the process's threads not growing with the watches, each
watch sent its case's changes and ended at the final status; the access rule and the audit of the
first read."""
import threading
import time

import grpc
import pytest

from onething.intake.v1 import intake_pb2 as pb
from onething.intake.v1 import intake_pb2_grpc as pb_grpc
from services.common.audit import MemoryAuditLog
from services.common.grpc_server import ApiServer
from services.common.streams import StreamLimits
from services.common.testing import FlakyBus
from services.intake import domain
from services.intake.api import IntakeApi
from services.intake.fakes import Clock, FakeCatalog, FakeIntakeStore, FakeLicences, MemoryBlobs
from services.intake.tests.test_intake_officer_api import APPLICANT, OTHER, PACKAGE, a_case
from services.intake.wiring import build_intake

STREAMS, CASES = 200, 40
LIMITS = StreamLimits(threads=8, watches_total=1000, watches_per_caller=STREAMS, max_s=60).checked()


@pytest.fixture
def served(local_idp):
    intake = build_intake(store=FakeIntakeStore(FlakyBus("intake")), blobs=MemoryBlobs(),
                          catalog=FakeCatalog(PACKAGE), licences=FakeLicences(), clock=Clock(),
                          audit=MemoryAuditLog("intake"))
    intake.watch_poll_s = 0.05
    name = pb.DESCRIPTOR.services_by_name["IntakeService"].full_name
    api = IntakeApi(intake)
    srv = ApiServer(0, [(pb_grpc.add_IntakeServiceServicer_to_server, api)], [name], host="127.0.0.1",
                    stream_limits=LIMITS).start()
    with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as channel:
        yield pb_grpc.IntakeServiceStub(channel), intake, local_idp, srv, api
    srv.stop(0)


def test_200_watches_on_one_server_hold_no_thread_each_and_unary_calls_still_answer(served):
    stub, intake, idp, srv, api = served
    md = idp.metadata(APPLICANT, "applicant")
    cases = [a_case(intake).case_no for _ in range(CASES)]
    stub.GetCase(pb.GetCaseRequest(case_no=cases[0]), metadata=md, timeout=5)  # the pool's first threads
    threads_before = threading.active_count()
    streams = []
    for i in range(STREAMS):
        stream = stub.WatchCase(pb.WatchCaseRequest(case_no=cases[i % CASES]), metadata=md, timeout=60)
        assert next(stream).status == pb.CASE_STATUS_SUBMITTED  # the case now
        streams.append(stream)
    assert _wait_for(lambda: srv.stream_guard.watches.in_use() == STREAMS and api.hub is not None
                     and len(api.hub) == STREAMS), (srv.stream_guard.watches.in_use(), len(api.hub or ()))
    # the pool has 8 threads and 200 watches are open: unary calls are answered, and soon
    for i in range(50):  # each within its deadline
        assert stub.GetCase(pb.GetCaseRequest(case_no=cases[i % CASES]), metadata=md, timeout=5).case_no
    assert threading.active_count() <= threads_before + 8, [t.name for t in threading.enumerate()]
    looks = api.hub.looks
    time.sleep(0.3)
    assert api.hub.looks - looks <= 0.3 / intake.watch_poll_s + 2  # one look per interval for all 200
    # every case concluded: each watch sends the change and ends (REJECTED is final)
    for case_no in cases:
        intake.case_concluded(domain.CaseConcluded(case_no=case_no, approved=False, reason="no"))
    for stream in streams:
        assert [c.status for c in stream] == [pb.CASE_STATUS_REJECTED]
    assert _wait_for(lambda: srv.stream_guard.watches.in_use() == 0 and len(api.hub) == 0)


def test_a_watch_follows_its_case_to_the_end_and_the_access_rule_holds(served):
    stub, intake, idp, srv, _api = served
    case_no = a_case(intake).case_no
    clerk = idp.metadata("clerk-1", "clerk", region="440100", on_behalf_of=APPLICANT)
    stream = stub.WatchCase(pb.WatchCaseRequest(case_no=case_no), metadata=clerk, timeout=30)
    assert next(stream).status == pb.CASE_STATUS_SUBMITTED
    intake.case_concluded(domain.CaseConcluded(case_no=case_no, approved=True, reason="ok"))
    assert next(stream).status == pb.CASE_STATUS_APPROVED
    intake.delivery_completed(domain.DeliveryCompleted(case_no=case_no))
    intake.evaluation_received(domain.EvaluationReceived(case_no=case_no))
    assert [c.status for c in stream] == [pb.CASE_STATUS_DELIVERED, pb.CASE_STATUS_RATED]
    # the clerk's first read is audited, once
    assert [(r["action"], r["actor"]["sub"], r["outcome"]) for r in intake.audit.records] == [
        ("case.read", "clerk-1", "ok")]
    # someone else's case is a case that does not exist, and takes no slot for long
    with pytest.raises(grpc.RpcError) as err:
        list(stub.WatchCase(pb.WatchCaseRequest(case_no=case_no), metadata=idp.metadata(OTHER, "applicant"),
                            timeout=5))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert _wait_for(lambda: srv.stream_guard.watches.in_use() == 0)


def test_a_watch_whose_client_goes_away_leaves_the_hub(served):
    stub, intake, idp, srv, api = served
    case_no = a_case(intake).case_no
    stream = stub.WatchCase(pb.WatchCaseRequest(case_no=case_no), metadata=idp.metadata(APPLICANT, "applicant"),
                            timeout=30)
    next(stream)
    assert _wait_for(lambda: api.hub is not None and len(api.hub) == 1)
    stream.cancel()
    assert _wait_for(lambda: len(api.hub) == 0 and srv.stream_guard.watches.in_use() == 0)


def _wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    return predicate()
