"""The reference desk on the real broker, in a vhost of its own with the site's topology (its users,
permissions, queues): it answers its task as its own broker user, persistent, with the task's trace
and case number and a message id that is the same for the same task and round; it acknowledges the
task only once the broker confirmed the opinion, so an opinion no queue takes leaves the task where
it is; a task left to officers is acknowledged with nothing sent; a desk whose queue is not there
waits for it; `python -m services.desk` is that desk and stops on SIGTERM."""
import logging
import os
import signal
import subprocess
import sys
import threading
import uuid

import pytest
from kombu import Connection, Exchange

from onething.joint_review.v1 import events_pb2
from services.common import telemetry
from services.common.config import ROOT, settings
from services.common.events import to_payload
from services.common.registry import desk_broker_user
from services.common.testing import wait_for
from services.desk import desk, rules

pytestmark = pytest.mark.integration
REGION = "440100"
OPINIONS = "joint_review.desk_opinions"
LIC = "1.2.156.3005.2.CSYXZM.440100WSJK.202400000001.001.X"


@pytest.fixture(scope="module")
def vhost(test_env):
    """A vhost of this module's own, with the site's topology: no suite process ever consumes here."""
    from infra import local
    telemetry.setup("desk-tests")  # spans with a trace to carry (written under the run's var folder)
    name = f"{local.vhost_of(test_env['ONETHING_AMQP_URI'])}_desk"
    local.ensure_vhost(name)
    yield name
    local.delete_vhost(name)


def uri_in(vhost, desk_user=""):
    """The AMQP URI of `vhost` with a desk's own login (its password from the topology's secrets),
    or the local administrator's (guest) for none."""
    base = settings().amqp_uri.rsplit("/", 1)[0] + "/" + vhost
    if not desk_user:
        return base
    from infra.topology import process_uris
    _, department, region = desk_user.split("-", 2)
    return process_uris([(department, region)], base_uri=base)[desk_user]


@pytest.fixture
def guest(vhost):
    with Connection(uri_in(vhost)) as conn:
        for queue in ("desk.gaj.440100", "desk.wsjk.440100", OPINIONS):
            conn.default_channel.queue_purge(queue)
        yield conn


def messages_in(vhost, queue):
    """Ready and unacknowledged messages of `queue` (rabbitmqctl: the broker's own count)."""
    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "messages"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == queue and parts[1].isdigit():
            return int(parts[1])
    raise AssertionError(f"no queue {queue} in {vhost}")


def registration(**changes):
    """出生登记（落户）, gaj's task: every material there, the birth certificate valid."""
    fields = {"case_no": f"440100XSECS2024{uuid.uuid4().int % 10**8:08d}", "item_code": "110000000003",
              "item_name": "出生登记（落户）", "department_code": "gaj", "region_code": REGION, "site": REGION,
              "material_codes": ["M01", "M02"], "materials": [{"material_code": "M01"}, {"material_code": "M02"}],
              "license_inputs": ["CSYXZM"], "license_ids": [LIC],
              "licenses": [{"license_id": LIC, "type_code": "CSYXZM", "valid": True}]}
    fields.update(changes)
    return events_pb2.TaskAssigned(**fields)


def send_task(conn, task, headers=None):
    exchange = Exchange("joint_review.events", type="topic", durable=True)
    conn.Producer().publish(to_payload(task), exchange=exchange, routing_key=f"task_assigned.{task.department_code}."
                            f"{task.region_code}", serializer="json", delivery_mode=2, mandatory=True,
                            headers={"case_no": task.case_no, **(headers or {})}, declare=[])


def next_opinion(conn, timeout=30.0):
    """The next opinion in joint_review's queue, taken one at a time (basic.get): a consumer would
    be handed every opinion there at once and keep the ones it did not read, unacknowledged."""
    channel = conn.default_channel
    raw = wait_for(lambda: channel.basic_get(OPINIONS, no_ack=True), "an opinion", timeout)
    return channel.message_to_python(raw)


@pytest.fixture
def run_desk(vhost):
    started = []

    def start(department="gaj", rule=rules.MATERIALS_PRESENT, user=None, wait=True):
        uri = uri_in(vhost, user if user is not None else desk_broker_user(department, REGION))
        d = desk.Desk(department, REGION, rules.rule_book(None, rule), uri, timeout=5)
        thread = threading.Thread(target=d.run, daemon=True)
        thread.start()
        started.append((d, thread))
        if wait:
            assert d.consuming.wait(20), "the desk never started consuming"
        return d

    yield start
    for d, thread in started:
        d.stop()
        thread.join(20)
        assert not thread.is_alive()


def test_the_desk_answers_as_its_own_user_with_the_tasks_trace_and_acknowledges_after_the_confirm(vhost, guest,
                                                                                                 run_desk):
    run_desk("gaj")
    task = registration()
    with telemetry.tracer().start_as_current_span("test") as span:
        send_task(guest, task, telemetry.inject_headers())
        trace_id = format(span.get_span_context().trace_id, "032x")
    message = next_opinion(guest)
    assert message.properties["user_id"] == "desk-gaj-440100"
    assert message.properties["message_id"] == f"opinion:{task.case_no}:110000000003:0"
    assert message.properties["delivery_mode"] == 2
    assert message.delivery_info["exchange"] == "desk.opinions"
    assert message.delivery_info["routing_key"] == "opinion.gaj.440100.440100"
    assert message.headers["case_no"] == task.case_no and message.headers["producer"] == "desk-gaj-440100"
    assert message.headers["traceparent"].split("-")[1] == trace_id  # the task's trace goes on
    assert message.payload == {"case_no": task.case_no, "item_code": "110000000003", "department_code": "gaj",
                               "region_code": REGION, "decision": "DECISION_APPROVE",
                               "reason": f"materials present; licences {LIC} checked"}
    wait_for(lambda: messages_in(vhost, "desk.gaj.440100") == 0, what="the task acknowledged")


def test_a_task_given_again_is_answered_with_the_same_message_id(guest, run_desk):
    run_desk("gaj")
    task = registration(materials=[{"material_code": "M01"}], round=2)
    send_task(guest, task)
    send_task(guest, task)
    first, second = next_opinion(guest), next_opinion(guest)
    assert first.properties["message_id"] == second.properties["message_id"] == \
        f"opinion:{task.case_no}:110000000003:2"
    assert first.payload["decision"] == "DECISION_REJECT" and first.payload["reason"] == "materials missing: M02"
    assert first.payload["round"] == 2


@pytest.mark.parametrize("rule, task", [
    (rules.MANUAL, registration()),                                         # an officer decides
    (rules.MATERIALS_PRESENT, registration(inspection=True)),              # after the site inspection
    (rules.MATERIALS_PRESENT, registration(department_code="wsjk")),       # not this desk's (a wrong binding)
])
def test_a_task_left_to_officers_is_acknowledged_and_answered_with_nothing(vhost, guest, run_desk, rule, task):
    run_desk("gaj", rule)
    exchange = Exchange("joint_review.events", type="topic", durable=True)
    # straight into the desk's queue, whatever its department says
    guest.Producer().publish(to_payload(task), exchange=exchange, routing_key="task_assigned.gaj.440100",
                             serializer="json", delivery_mode=2, declare=[])
    wait_for(lambda: messages_in(vhost, "desk.gaj.440100") == 0, what="the task taken and acknowledged")
    assert messages_in(vhost, OPINIONS) == 0


def test_an_opinion_no_queue_takes_leaves_the_task_in_the_queue(vhost, guest, run_desk, caplog):
    d = run_desk("gaj")
    task = registration(site="440300")  # a site whose joint_review has no queue on this broker
    with caplog.at_level(logging.WARNING, logger="services.desk"):
        send_task(guest, task)
        wait_for(lambda: "no queue takes desk.opinions/opinion.gaj.440100.440300" in caplog.text,
                 what="the desk told the opinion was returned")
        d.stop()
        wait_for(lambda: not d.consuming.is_set(), what="the desk stopping")
    assert messages_in(vhost, "desk.gaj.440100") == 1  # not acknowledged: it waits for the next try
    assert messages_in(vhost, OPINIONS) == 0


def test_a_desk_whose_queue_is_not_there_waits_for_it(vhost, run_desk, caplog):
    with caplog.at_level(logging.ERROR, logger="services.desk"):
        d = run_desk("nosuch", user="", wait=False)  # the administrator's login: the queue is what is missing
        wait_for(lambda: "queue desk.nosuch.440100 is not on the broker" in caplog.text, what="the desk saying so")
    assert not d.consuming.is_set()


def test_python_m_services_desk_is_the_desk_and_stops_on_sigterm(vhost, guest, test_env):
    env = {**os.environ, "ONETHING_DESK_DEPARTMENT": "gaj", "ONETHING_DESK_REGION": REGION,
           "ONETHING_DESK_RULE": rules.MATERIALS_PRESENT, "ONETHING_AMQP_URI": uri_in(vhost, "desk-gaj-440100")}
    log = open(os.path.join(test_env["ONETHING_VAR_DIR"], "desk-process.log"), "ab")
    proc = subprocess.Popen([sys.executable, "-m", "services.desk"], env=env, cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: guest.default_channel.queue_declare("desk.gaj.440100", passive=True).consumer_count == 1,
                 what="the desk process consuming")
        task = registration()
        send_task(guest, task)
        assert next_opinion(guest).properties["message_id"] == f"opinion:{task.case_no}:110000000003:0"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(20)
        log.close()


def test_a_desk_that_fails_on_a_task_says_so_in_full_and_keeps_the_task(vhost, guest, run_desk, caplog):
    class Broken:
        def rule_for(self, department, region, item_code):
            raise RuntimeError("the rules are broken")

    d = run_desk("gaj")
    d.book = Broken()
    with caplog.at_level(logging.WARNING, logger="services.desk"):
        send_task(guest, registration())
        record = wait_for(lambda: next((r for r in caplog.records if "the rules are broken" in r.getMessage()), None),
                          what="the failure logged")
        d.stop()
        wait_for(lambda: not d.consuming.is_set(), what="the desk stopping")
    assert record.levelno == logging.ERROR and record.exc_info is not None  # a bug, not an outage: its traceback
    assert messages_in(vhost, "desk.gaj.440100") == 1 and messages_in(vhost, OPINIONS) == 0
