"""The desk protocol is enough to write a desk: e2e/minimal_desk.py (pika, written from
protos/asyncapi/desk.yaml only) decides a department's tasks end to end in the running suite. And
the broker holds each desk to its own part of it: a desk's user may not send in another department's
name, on another department's routing key, read another department's queue or anything else, or
declare anything; joint_review records nothing a desk sends about another department's task."""
import json
import os
import subprocess
import sys
import uuid

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker

from services.common.config import ROOT, settings
from services.common.registry import desk_broker_user

MINIMAL_DESK = os.path.join(ROOT, "e2e", "minimal_desk.py")
REGION = "440100"


def wait_for(check, timeout=30.0, what="the condition"):
    from e2e.waits import wait_until
    return wait_until(check, timeout, what, ignore=None)


def start_minimal_desk(uri, department, log_path):
    log = open(log_path, "ab")
    proc = subprocess.Popen([sys.executable, MINIMAL_DESK, "--uri", uri, "--department", department,
                             "--region", REGION], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return proc


def stop_minimal_desk(proc):
    proc.terminate()
    try:
        return proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(20)


def consumers(uri, queue):
    connection = pika.BlockingConnection(pika.URLParameters(uri))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.consumer_count
    finally:
        connection.close()


# --- the broker holds each desk to its own part (integration: a vhost of this module's own) ------------


@pytest.fixture(scope="module")
def vhost(test_env):
    from infra import local
    name = f"{local.vhost_of(test_env['ONETHING_AMQP_URI'])}_mindesk"
    local.ensure_vhost(name)  # with the site's topology: users, permissions, queues
    yield name
    local.delete_vhost(name)


def uri_in(vhost, department=None):
    base = settings().amqp_uri.rsplit("/", 1)[0] + "/" + vhost
    if department is None:
        return base
    from infra.topology import process_uris
    return process_uris([(department, REGION)], base_uri=base)[desk_broker_user(department, REGION)]


@pytest.fixture
def gaj(vhost):
    """A connection as the 公安 desk's user; each check takes a channel of its own (a refusal closes it)."""
    connection = pika.BlockingConnection(pika.URLParameters(uri_in(vhost, "gaj")))
    yield connection
    if connection.is_open:
        connection.close()


def opinion_body(item_code="110000000003", department="gaj"):
    return json.dumps({"case_no": "440100XSECS209912310001", "item_code": item_code, "department_code": department,
                       "region_code": REGION, "decision": "DECISION_APPROVE", "reason": "test"}).encode()


def publish(connection, routing_key, user_id, exchange="desk.opinions", body=None):
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_publish(exchange, routing_key, body or opinion_body(), pika.BasicProperties(
        delivery_mode=2, user_id=user_id, message_id=uuid.uuid4().hex, content_type="application/json"),
        mandatory=True)
    return channel


def refused(action):
    with pytest.raises(ChannelClosedByBroker) as err:
        action()
    return err.value.reply_code, err.value.reply_text


@pytest.mark.integration
def test_a_desk_may_send_its_own_opinion_as_itself(vhost, gaj):
    channel = publish(gaj, f"opinion.gaj.{REGION}.{REGION}", "desk-gaj-440100")  # confirmed, or it raises
    assert channel.is_open
    admin = pika.BlockingConnection(pika.URLParameters(uri_in(vhost)))
    try:
        method, properties, body = admin.channel().basic_get("joint_review.desk_opinions", auto_ack=True)
        assert method is not None and properties.user_id == "desk-gaj-440100" and json.loads(body)["item_code"]
    finally:
        admin.close()


@pytest.mark.integration
def test_a_desk_may_not_send_in_another_departments_name(gaj):
    code, text = refused(lambda: publish(gaj, f"opinion.gaj.{REGION}.{REGION}", "desk-wsjk-440100"))
    assert code == 406 and "user_id property set to 'desk-wsjk-440100' but authenticated user was " \
                          "'desk-gaj-440100'" in text


@pytest.mark.integration
def test_a_desk_may_not_send_on_another_departments_routing_key(gaj):
    code, text = refused(lambda: publish(gaj, f"opinion.wsjk.{REGION}.{REGION}", "desk-gaj-440100",
                                         body=opinion_body("110000000001", "wsjk")))
    assert code == 403 and "ACCESS_REFUSED" in text and "opinion.wsjk.440100.440100" in text


@pytest.mark.integration
@pytest.mark.parametrize("queue", ["desk.wsjk.440100", "desk.gaj.440300", "joint_review.desk_opinions"])
def test_a_desk_may_not_read_any_queue_but_its_own(gaj, queue):
    code, text = refused(lambda: gaj.channel().basic_get(queue, auto_ack=False))
    assert code == 403 and "ACCESS_REFUSED" in text and queue in text
    assert gaj.channel().basic_get("desk.gaj.440100", auto_ack=False) == (None, None, None)  # its own: allowed


@pytest.mark.integration
def test_a_desk_may_not_send_tasks_or_events_or_declare_anything(gaj):
    code, text = refused(lambda: publish(gaj, f"task_assigned.gaj.{REGION}", "desk-gaj-440100",
                                         exchange="joint_review.events"))
    assert code == 403 and "joint_review.events" in text
    code, text = refused(lambda: gaj.channel().queue_declare("desk.gaj.440100.mine", durable=True))
    assert code == 403 and "ACCESS_REFUSED" in text
    code, text = refused(lambda: gaj.channel().exchange_declare("desk.opinions", "topic", durable=True))
    assert code == 403 and "ACCESS_REFUSED" in text


@pytest.mark.integration
def test_the_minimal_desk_answers_a_task_as_the_protocol_says(vhost, test_env):
    admin = pika.BlockingConnection(pika.URLParameters(uri_in(vhost)))
    proc = start_minimal_desk(uri_in(vhost, "jkzx"), "jkzx",
                              os.path.join(test_env["ONETHING_VAR_DIR"], "minimal-desk-integration.log"))
    try:
        wait_for(lambda: consumers(uri_in(vhost), "desk.jkzx.440100") == 1, what="the minimal desk consuming")
        task = {"case_no": "440100XSECS209912310002", "item_code": "110000000002", "department_code": "jkzx",
                "region_code": REGION, "site": REGION, "round": 1, "material_codes": ["M01"],
                "materials": [{"material_code": "M01"}]}
        channel = admin.channel()
        channel.basic_publish("joint_review.events", f"task_assigned.jkzx.{REGION}", json.dumps(task).encode(),
                              pika.BasicProperties(delivery_mode=2, content_type="application/json",
                                                   headers={"case_no": task["case_no"],
                                                            "traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"}))
        def opinion():
            method, properties, body = channel.basic_get("joint_review.desk_opinions", auto_ack=True)
            return method and (method, properties, json.loads(body))
        method, properties, body = wait_for(opinion, what="the minimal desk's opinion")
        assert (method.exchange, method.routing_key) == ("desk.opinions", f"opinion.jkzx.{REGION}.{REGION}")
        assert properties.user_id == "desk-jkzx-440100" and properties.delivery_mode == 2
        assert properties.message_id == "opinion:440100XSECS209912310002:110000000002:1"
        assert properties.headers["traceparent"].split("-")[1] == "ab" * 16
        assert properties.headers["case_no"] == task["case_no"]
        assert body == {"case_no": task["case_no"], "item_code": "110000000002", "department_code": "jkzx",
                        "region_code": REGION, "round": 1, "decision": "DECISION_APPROVE",
                        "reason": "minimal desk: materials present"}
    finally:
        assert stop_minimal_desk(proc) == 0
        admin.close()


# --- end to end: the minimal desk decides its department's tasks in the running suite ------------------


@pytest.mark.e2e
def test_the_minimal_desk_decides_its_departments_task_end_to_end(client, probe, suite_running, test_env):
    from e2e.waits import handled, item_of, wait_event
    from onething.common.v1 import common_pb2
    from onething.intake.v1 import intake_pb2
    from onething.joint_review.v1 import joint_review_pb2
    from tools.client import citizen_id

    reference = f"desk-jkzx-{REGION}"
    uris = suite_running.logins()
    suite_running.stop(reference)  # the department replaces the platform's desk with its own
    proc = None
    try:
        vaccination = item_of(client, "XSECS", REGION, department="jkzx")  # 预防接种档案建档, jkzx's item
        case = client.newborn_case(applicant=common_pb2.Applicant(id_number=citizen_id("44010619870707123"),
                                                                  name="赵敏"))
        no = case.case_no
        wait_event(probe, no, f"task_assigned.jkzx.{REGION}")

        # another department's desk sends a rejection of jkzx's task, on its own key, as itself: refused
        forged_id = uuid.uuid4().hex
        gaj = pika.BlockingConnection(pika.URLParameters(uris[desk_broker_user("gaj", REGION)]))
        try:
            channel = gaj.channel()
            channel.confirm_delivery()
            channel.basic_publish("desk.opinions", f"opinion.gaj.{REGION}.{REGION}", json.dumps({
                "case_no": no, "item_code": vaccination, "department_code": "jkzx", "region_code": REGION,
                "decision": "DECISION_REJECT", "reason": "forged"}).encode(), pika.BasicProperties(
                delivery_mode=2, user_id=desk_broker_user("gaj", REGION), message_id=forged_id,
                content_type="application/json"), mandatory=True)
        finally:
            gaj.close()
        wait_for(lambda: handled("joint_review.on_desk_opinion", f"desk-gaj-{REGION}/{forged_id}"), 30,
                 "joint_review taking the forged opinion")
        task = next(t for t in client.session(no).tasks if t.item_code == vaccination)
        assert task.state == joint_review_pb2.TASK_STATE_ASSIGNED and not task.reason

        proc = start_minimal_desk(uris[desk_broker_user("jkzx", REGION)], "jkzx",
                                  os.path.join(test_env["ONETHING_VAR_DIR"], "minimal-desk-e2e.log"))
        case = client.wait_status(no, {intake_pb2.CASE_STATUS_DELIVERED, intake_pb2.CASE_STATUS_REJECTED}, timeout=90)
        assert case.status == intake_pb2.CASE_STATUS_DELIVERED
        task = next(t for t in client.session(no).tasks if t.item_code == vaccination)
        assert task.state == joint_review_pb2.TASK_STATE_DONE
        assert task.reason == "minimal desk: materials present" and task.decided_by == f"desk:jkzx:{REGION}"
        wait_event(probe, no, "delivery_completed")
        decided = [b for k, b in probe.for_case(no) if k == "opinion_recorded" and b["item_code"] == vaccination]
        assert [(b["decided_by"], b["reason"]) for b in decided] == [(f"desk:jkzx:{REGION}",
                                                                      "minimal desk: materials present")]
    finally:
        if proc is not None:
            assert stop_minimal_desk(proc) == 0
        suite_running.start(reference)
        suite_running.wait_consuming([reference])
