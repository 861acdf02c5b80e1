"""Nothing lost when a process dies between its commit and its publish: the event waits in the
aggregate's outbox and the sweep of the restarted (supervised) worker sends it. A region the site
does not serve is refused at the door instead of being parked forever."""
import os
import time

import grpc
import pytest

from onething.common.v1 import common_pb2
from onething.intake.v1 import intake_pb2
from services.common.config import settings
from tools.client import citizen_id, demo_form

pytestmark = pytest.mark.e2e
END = {intake_pb2.CASE_STATUS_DELIVERED, intake_pb2.CASE_STATUS_REJECTED}


def _applicant(n):
    return common_pb2.Applicant(id_number=citizen_id(f"440106197705{n:02d}321"), name=f"可靠{n}")


def _log(name):
    with open(os.path.join(settings().var_dir, "log", f"{name}.log"), encoding="utf-8", errors="replace") as fh:
        return fh.read()


def _restart(suite, name, extra_env=None):
    suite.stop(name)
    suite.start(name, extra_env=extra_env)
    if name.endswith("-api"):
        suite.wait_serving()
    else:
        suite.wait_consuming([name])


def test_a_region_the_site_does_not_serve_is_refused_and_nothing_is_written(client):
    applicant = _applicant(1)
    materials = client.upload_all(applicant.id_number, client.required_materials())
    for region in ("440300", "110000", "999999"):
        with pytest.raises(grpc.RpcError) as err:
            client.submit(applicant, materials, region=region, form=demo_form(None))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION, (region, err.value.details())
        assert "does not handle cases for region" in err.value.details()
    assert list(client.list_cases(applicant.id_number).cases) == []


def test_the_api_killed_between_commit_and_publish_loses_no_case(suite_running, client):
    suite = suite_running
    _restart(suite, "intake-api", {"ONETHING_FAULT": "before_publish:case_submitted"})
    applicant = _applicant(2)
    key = f"kill-{time.time()}"
    materials = client.upload_all(applicant.id_number, client.required_materials())
    try:
        with pytest.raises(grpc.RpcError) as err:  # the api commits the case, then dies
            client.submit(applicant, materials, key=key)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "fault injected at before_publish:case_submitted" in _log("intake-api")
    finally:
        _restart(suite, "intake-api")
    # the client retries with its key and gets the case the dead process created
    case = client.submit(applicant, materials, key=key)
    assert [c.case_no for c in client.list_cases(applicant.id_number).cases] == [case.case_no]
    # case_submitted was never published by its writer: the intake worker's sweep sends it
    done = client.wait_status(case.case_no, END, timeout=120)
    assert done.status == intake_pb2.CASE_STATUS_DELIVERED


def test_a_worker_killed_between_commit_and_publish_is_restarted_and_the_sweep_sends_its_events(
        suite_running, client):
    suite = suite_running
    name = "joint_review-worker"
    # the worker opens the session, then dies before it tells the first department (卫健)
    _restart(suite, name, {"ONETHING_FAULT": "before_publish:task_assigned.wsjk.440100"})
    first = suite.child_pid(name)
    try:
        case = client.newborn_case(applicant=_applicant(3))
        deadline = time.time() + 60
        while time.time() < deadline and "fault injected at before_publish:task_assigned.wsjk" not in _log(name):
            time.sleep(0.2)
        assert "fault injected" in _log(name)
        # its supervisor starts it again; the redelivered case_submitted finds the session open
        # and the outbox sweep publishes what the dead process left
        deadline = time.time() + 30
        while time.time() < deadline and suite.child_pid(name) in (None, first):
            time.sleep(0.2)
        assert suite.child_pid(name) not in (None, first)
        assert "exited with code 86; starting it again" in _log(name)
        done = client.wait_status(case.case_no, END, timeout=120)
        assert done.status == intake_pb2.CASE_STATUS_DELIVERED
    finally:
        _restart(suite, name)


def test_a_killed_worker_is_started_again_by_its_supervisor(suite_running, client):
    suite = suite_running
    name = "delivery-worker"
    before = suite.child_pid(name)
    assert before and suite.kill_child(name) == before
    deadline = time.time() + 30
    while time.time() < deadline and suite.child_pid(name) in (None, before):
        time.sleep(0.2)
    assert suite.child_pid(name) not in (None, before)
    suite.wait_consuming([name], timeout=60)
    case = client.newborn_case(applicant=_applicant(4))
    assert client.wait_status(case.case_no, END, timeout=120).status == intake_pb2.CASE_STATUS_DELIVERED


def test_while_mongodb_is_down_calls_are_unavailable_at_once_and_work_again_after(client):
    from infra import local
    case = client.newborn_case(applicant=_applicant(5))
    local.stop_server("mongo")
    try:
        started = time.time()
        with pytest.raises(grpc.RpcError) as err:
            client.intake.GetCase(intake_pb2.GetCaseRequest(case_no=case.case_no), timeout=20)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value.code()
        assert "try again" in err.value.details()
        assert time.time() - started < 10  # the store's timeout, not the caller's deadline
    finally:
        local.start_mongo()
    assert client.wait_status(case.case_no, END, timeout=120).status == intake_pb2.CASE_STATUS_DELIVERED
