"""Department desks as deployables: a desk only ever sees and decides its own department's tasks;
killed in the middle of a task it finishes that task exactly once after a restart; two processes of
one desk share its queue without doubling anything."""
import subprocess

import pytest

from e2e.waits import item_of, wait_event, wait_until
from onething.common.v1 import common_pb2
from onething.intake.v1 import intake_pb2
from services.common.config import settings
from services.common.registry import desk_queue
from tools.client import citizen_id

pytestmark = pytest.mark.e2e
REGION = "440100"


def _vhost():
    return settings().amqp_uri.rsplit("/", 1)[1]


def _rabbit(*args):
    return subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60).stdout


def _unacked(queue):
    for line in _rabbit("list_queues", "-p", _vhost(), "name", "messages_unacknowledged").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == queue and parts[1].isdigit():
            return int(parts[1])
    return 0


def _desk_queue(department):
    return desk_queue(department, REGION)


def _applicant(n):
    return common_pb2.Applicant(id_number=citizen_id(f"440106198801{n:02d}123"), name=f"申请人{n}")


def test_each_desk_queue_is_bound_only_to_its_own_department(suite_running):
    bindings = _rabbit("list_bindings", "-p", _vhost(), "source_name", "destination_name", "routing_key")
    for department in ("wsjk", "jkzx", "gaj", "ybj", "rsj"):
        keys = {line.split("\t")[2] for line in bindings.splitlines()
                if line.count("\t") == 2 and line.split("\t")[1] == _desk_queue(department)
                and line.split("\t")[0] != ""}  # every queue is also bound to the default exchange
        assert keys == {f"task_assigned.{department}.{REGION}"}, (department, keys)


def test_every_task_is_decided_by_its_own_departments_desk(client, probe):
    case = client.newborn_case(applicant=_applicant(1))
    client.wait_status(case.case_no, {intake_pb2.CASE_STATUS_DELIVERED})
    wait_event(probe, case.case_no, "delivery_completed")  # after every opinion, on the probe too
    session = {t.item_code: t.department_code for t in client.session(case.case_no).tasks}
    opinions = [b for k, b in probe.for_case(case.case_no) if k == "opinion_recorded"]
    assert len(opinions) == len(session)
    for op in opinions:
        assert op["decided_by"] == f"desk:{session[op['item_code']]}:{REGION}"
        assert op["department_code"] == session[op["item_code"]]


def test_desk_killed_in_the_middle_of_a_task_finishes_it_once(client, probe, suite_running):
    desk = f"desk-gaj-{REGION}"
    suite_running.stop(desk)
    suite_running.start(desk, {"ONETHING_DESK_DELAY_SECONDS": "60"})  # a slow reviewer
    suite_running.wait_consuming([desk])
    try:
        case = client.newborn_case(applicant=_applicant(2))
        wait_until(lambda: _unacked(_desk_queue("gaj")), 40, "the gaj desk taking its task", interval=0.3)
        assert _unacked(_desk_queue("gaj")) == 1, "the desk never started on the task"
        suite_running.stop(desk, kill=True)   # SIGKILL while the task is in its hands
    finally:
        suite_running.start(desk)
    suite_running.wait_consuming([desk])
    client.wait_status(case.case_no, {intake_pb2.CASE_STATUS_DELIVERED}, timeout=60)
    wait_event(probe, case.case_no, "delivery_completed")  # after every opinion, on the probe too
    registration = item_of(client, "XSECS", REGION, department="gaj")  # 出生登记（落户）, the gaj desk's item
    decided = [b["item_code"] for k, b in probe.for_case(case.case_no) if k == "opinion_recorded"]
    assert decided.count(registration) == 1 and len(decided) == 7


def test_two_processes_of_one_desk_share_its_tasks_without_doubling(client, probe, suite_running):
    replica = suite_running.start_desk_replica("gaj", REGION, "b")
    try:
        from kombu import Connection

        def consumers():
            with Connection(settings().amqp_uri) as conn:
                _, _, count = conn.channel().queue_declare(queue=_desk_queue("gaj"), passive=True)
                return count
        assert wait_until(lambda: consumers() >= 2, 60, "two consumers on the gaj desk's queue", interval=0.3)
        cases = [client.newborn_case(applicant=_applicant(10 + i)) for i in range(4)]
        for case in cases:
            client.wait_status(case.case_no, {intake_pb2.CASE_STATUS_DELIVERED}, timeout=60)
            wait_event(probe, case.case_no, "delivery_completed")  # after every opinion, on the probe too
        for case in cases:
            decided = [b["item_code"] for k, b in probe.for_case(case.case_no) if k == "opinion_recorded"]
            assert sorted(decided) == sorted(set(decided)) and len(decided) == 7
    finally:
        suite_running.stop(replica)
