"""tools/stuck.py on the real local MongoDB and RabbitMQ: cases written through the services' own
stores (into databases of this test's own prefix), a desk queue nobody consumes and a dead letter
in a vhost of its own; the tool run as a function and as the command line, and what it found
checked. The dead letter is still in its queue afterwards (the tool only peeks). Everything the
test made is removed at the end."""
import datetime
import json
import os
import subprocess
import sys
import uuid
from typing import Any

import amqp
import pymongo
import pytest

from infra import local
from services.common import mongo
from services.common.bus import outbox_entry
from services.common.config import ROOT, settings
from services.delivery import domain as delivery_domain
from services.delivery.store import DeliveryStore
from services.elicense.domain import LicenseStatus
from services.elicense.store import LicenseStore
from services.intake import domain as intake_domain
from services.intake.store import IntakeStore
from services.joint_review import domain as review_domain
from services.joint_review.store import SessionStore
from tools import stuck

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
VHOST = f"t_stuck_{RUN}"
PREFIX = f"t_stuck_{RUN}_"
SERVICES = ("intake", "joint_review", "elicense", "delivery")
NOW = datetime.datetime.now(datetime.UTC)
PACKAGE: dict[str, Any] = {
    "code": "newborn", "name": "新生儿出生一件事", "lead_department": "wsjk",
    "departments": [{"code": "wsjk", "name": "卫健委"}, {"code": "gaj", "name": "公安局"}],
    "items": [
        {"code": "A01", "name": "出生医学证明", "department_code": "wsjk", "promised_limit_days": 3,
         "statutory_limit_days": 5, "result": {"type": "RESULT_TYPE_LICENSE", "license_type_code": "CSYXZM"}},
        {"code": "A02", "name": "出生登记", "department_code": "gaj", "prerequisites": ["A01"], "promised_limit_days": 3}]}


def ago(**delta):
    return NOW - datetime.timedelta(**delta)


def case(case_no, status, at):
    history = [intake_domain.HistoryEntry(intake_domain.SUBMITTED, at.isoformat(), "submitted")]
    if status != intake_domain.SUBMITTED:
        history.append(intake_domain.HistoryEntry(status, at.isoformat(), "moved"))
    return intake_domain.Case(case_no=case_no, package_code="newborn", package_version=1, region_code="440100",
                              applicant={"id_number": "x"}, status=status, submitted_at=at, history=history)


def opened(case_no, at):
    session = review_domain.new_session(case_no, "440100", PACKAGE, at.isoformat())
    review_domain.advance(session, at.isoformat())
    return session


def _broker(vhost=VHOST):
    uri = settings().amqp_uri
    from urllib.parse import urlparse
    u = urlparse(uri)
    conn = amqp.Connection(host=f"{u.hostname}:{u.port or 5672}", userid=u.username or "guest",
                           password=u.password or "guest", virtual_host=vhost, connect_timeout=5)
    conn.connect()
    return conn


def _depth(queue):
    with _broker() as conn:
        ch = conn.channel()
        return ch.queue_declare(queue, passive=True).message_count


@pytest.fixture(scope="module")
def world():
    """The cases: SUB (submitted 2 h ago, its case_submitted still in intake's outbox), DESK (at
    卫健's desk for 20 days: overdue; desk queue with 2 messages and no consumer; a dead letter),
    LIC (approved item, its licence issued, joint review has not recorded it), CONC (concluded
    5 h ago, no delivery), DONE (delivered 3 days ago) and FRESH (submitted a minute ago)."""
    base = settings()
    env: dict[str, str] = {"ONETHING_AMQP_URI": base.amqp_uri.rsplit("/", 1)[0] + "/" + VHOST, "ONETHING_DB_PREFIX": PREFIX,
           "ONETHING_REGION": "440100", "ONETHING_SERVED_REGIONS": ""}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    local.rabbitmqctl("add_vhost", VHOST)
    local.rabbitmqctl("set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*")
    for service in SERVICES:
        mongo.disconnect(service)
        mongo.connect(service)
    try:
        intake, review = IntakeStore(bus=None), SessionStore(bus=None)
        submitted = outbox_entry("case_submitted", _case_submitted("SUB"), "SUB")
        submitted["at"] = ago(hours=2).timestamp()  # written then; never published (no bus)
        assert intake.insert_case(case("SUB", intake_domain.SUBMITTED, ago(hours=2)), [submitted])
        assert intake.insert_case(case("FRESH", intake_domain.SUBMITTED, ago(minutes=1)))

        assert intake.insert_case(case("DESK", intake_domain.IN_REVIEW, ago(days=20)))
        assert review.create(opened("DESK", ago(days=20)), {})

        assert intake.insert_case(case("LIC", intake_domain.IN_REVIEW, ago(hours=3)))
        session = opened("LIC", ago(hours=3))
        review_domain.record_opinion(session, "A01", "wsjk", review_domain.APPROVE, "", "desk", ago(hours=3).isoformat())
        assert review.create(session, {})
        assert LicenseStore(bus=None).insert({"license_id": "L-LIC", "case_no": "LIC", "item_code": "A01",
                                              "status": LicenseStatus.VALID, "issued_at": ago(hours=3).isoformat()})

        assert intake.insert_case(case("CONC", intake_domain.APPROVED, ago(hours=5)))
        assert review.create(_concluded("CONC", ago(hours=5)), {})

        assert intake.insert_case(case("DONE", intake_domain.DELIVERED, ago(days=3)))
        assert review.create(_concluded("DONE", ago(days=3)), {})
        at = ago(days=3).isoformat()
        assert DeliveryStore(bus=None).insert({
            "case_no": "DONE", "channel": delivery_domain.ELECTRONIC, "status": delivery_domain.COMPLETED,
            "results": [], "applicant_id": "x", "history": [{"status": delivery_domain.COMPLETED, "at": at,
                                                             "note": "", "by": ""}]})

        with _broker() as conn:
            ch = conn.channel()
            ch.queue_declare("desk.wsjk.440100", durable=True, auto_delete=False)
            for _ in range(2):
                ch.basic_publish(amqp.Message(b"{}", delivery_mode=2), exchange="", routing_key="desk.wsjk.440100")
            ch.queue_declare("onething.dead_letters", durable=True, auto_delete=False)
            ch.basic_publish(amqp.Message(b'{"case_no": "DESK"}', message_id="dl-1", delivery_mode=2,
                                          application_headers={
                                              "case_no": "DESK", "x-onething-attempts": 5,
                                              "x-onething-error": "KeyError: 'opinion'",
                                              "x-onething-original-queue": "joint_review.desk_opinions",
                                              "x-onething-original-routing-key": "opinion.wsjk.440100.440100"}),
                             exchange="", routing_key="onething.dead_letters")
        yield env
    finally:
        for service in SERVICES:
            mongo.disconnect(service)
        client: pymongo.MongoClient[dict] = pymongo.MongoClient(base.mongo_uri, directConnection=True,
                                                                serverSelectionTimeoutMS=5000)
        with client:
            for name in client.list_database_names():
                if name.startswith(PREFIX):
                    client.drop_database(name)
        local.delete_vhost(VHOST)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _case_submitted(case_no):
    from onething.intake.v1 import events_pb2
    return events_pb2.CaseSubmitted(case_no=case_no, region_code="440100")


def _concluded(case_no, at):
    package = {**PACKAGE, "items": [{**PACKAGE["items"][1], "prerequisites": []}]}
    session = review_domain.new_session(case_no, "440100", package, at.isoformat())
    review_domain.advance(session, at.isoformat())
    review_domain.record_opinion(session, "A02", "gaj", review_domain.APPROVE, "", "desk", at.isoformat())
    review_domain.advance(session, at.isoformat())
    return session


def check(found):
    """What the tool must find in `world`, given as the JSON report."""
    by_case = {c["case_no"]: c for c in found["stuck"]}
    assert list(by_case) == ["DESK", "CONC", "LIC", "SUB"]  # oldest first; FRESH too young, DONE finished

    [desk] = by_case["DESK"]["waits"]
    assert (desk["step"], desk["department"], desk["region"], desk["item_code"]) == ("joint_review", "wsjk", "440100", "A01")
    assert desk["queue"]["name"] == "desk.wsjk.440100"
    assert (desk["queue"]["messages"], desk["queue"]["consumers"]) == (2, 0)
    assert desk["clock"]["overdue"] is True and desk["clock"]["overdue_days"] > 0
    assert {r["kind"] for r in desk["reasons"]} >= {"overdue", "no_consumer"}
    [letter] = by_case["DESK"]["reasons"]
    assert letter["kind"] == "dead_letter" and "dl-1" in letter["text"] and "KeyError: 'opinion'" in letter["text"]

    [sub] = by_case["SUB"]["waits"]
    assert sub["step"] == "intake"
    assert [r["kind"] for r in sub["reasons"]] == ["no_queue", "outbox"]
    assert "intake has not published case_submitted" in sub["reasons"][1]["text"]

    [lic] = by_case["LIC"]["waits"]
    assert lic["step"] == "elicense" and "licence L-LIC" in lic["what"]

    [conc] = by_case["CONC"]["waits"]
    assert conc["step"] == "delivery" and "delivery has not taken the case" in conc["what"]


def test_the_tool_finds_where_each_case_waits_and_why(world):
    report = stuck.find_stuck(stuck.this_site(link_sample_seconds=0), ["440100"], stuck.parse_duration("30m"))
    check(json.loads(json.dumps(stuck.as_json(report))))
    assert report.notes == []
    assert _depth("onething.dead_letters") == 1  # peeked at, not taken
    assert _depth("desk.wsjk.440100") == 2


def test_the_command_line_prints_the_same_as_json_and_as_text(world):
    env = {**os.environ, **world}
    done = subprocess.run([sys.executable, "-m", "tools.stuck", "--for", "30m", "--json", "--link-sample", "0"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    check(json.loads(done.stdout))

    done = subprocess.run([sys.executable, "-m", "tools.stuck"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1, done.stderr
    assert done.stdout.startswith("4 stuck case(s) without progress for 30m or more")
    assert "queue desk.wsjk.440100 (site 440100): 2 waiting, 0 consumer(s)" in done.stdout
    assert "OVERDUE by" in done.stdout

    done = subprocess.run([sys.executable, "-m", "tools.stuck", "--for", "30d"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout.split(" (")[0]) == (0, "no stuck cases")
    assert _depth("onething.dead_letters") == 1


def test_a_vhost_without_dead_letters_has_none_and_an_unknown_vhost_is_a_problem_not_a_crash(world):
    empty = f"t_stuck_{RUN}_empty"
    local.rabbitmqctl("add_vhost", empty)
    local.rabbitmqctl("set_permissions", "-p", empty, "guest", ".*", ".*", ".*")
    try:
        uri = settings().amqp_uri.rsplit("/", 1)[0] + "/" + empty
        broker = stuck.RabbitBroker(uri, ctl=stuck._local_ctl, link_sample_seconds=0)
        assert broker.dead_letters() == []
        assert broker.queues().queues == {}
    finally:
        local.delete_vhost(empty)
    gone = stuck.RabbitBroker(settings().amqp_uri.rsplit("/", 1)[0] + "/" + empty, ctl=stuck._local_ctl)
    stores = stuck.MongoStores(settings().mongo_uri, PREFIX)
    try:
        report = stuck.find_stuck({"440100": stuck.Site("440100", ("440100",), stores, gone)}, ["440100"], 30 * 60)
    finally:
        stores.close()
    assert any(n.startswith("site 440100: the dead letters could not be read (") for n in report.notes)
    assert any(n.startswith("site 440100: queue depth unknown (") for n in report.notes)
    desk = next(c for c in report.stuck if c.case_no == "DESK").waits[0]
    assert desk.queue == stuck.QueueState("desk.wsjk.440100") and desk.queue_note.startswith("queue depth unknown")
