"""The delivery guarantees, proven by causing the failures they guard against, on the real broker
and MongoDB-wire server: a poison message ends in the dead-letter queue and is replayed after the
fix; an outage is retried without being counted; a duplicate event id changes nothing; an event
left in an outbox by a writer that died is published by the sweep; an unroutable event stays
pending and is counted."""
import os
import subprocess
import sys
import time
import uuid

import pytest

from services.common import mongo
from services.common.bus import Bus, Unroutable
from services.common.config import ROOT
from services.common.tests import reliability_probe as probe_mod
from tools import dead_letters

pytestmark = pytest.mark.integration


def _wait(predicate, timeout=30, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def probe_service(test_env):
    env = {**os.environ, "ONETHING_MAX_HANDLER_ATTEMPTS": "3", "ONETHING_RETRY_BASE_SECONDS": "0.2",
           "ONETHING_RETRY_MAX_SECONDS": "0.5", "ONETHING_SWEEP_INTERVAL_SECONDS": "0.5",
           "ONETHING_SWEEP_GRACE_SECONDS": "1"}
    log = open(os.path.join(test_env["ONETHING_VAR_DIR"], "reliability_probe.log"), "ab")
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "nameko"), "run", "--config",
                             os.path.join(ROOT, "infra", "nameko.yaml"),
                             "services.common.tests.reliability_probe:ReliabilityProbe"],
                            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    mongo.connect(probe_mod.DB)
    from kombu import Connection
    deadline = time.time() + 60
    with Connection(os.environ["ONETHING_AMQP_URI"]) as conn:
        while time.time() < deadline:
            try:
                _, _, consumers = conn.default_channel.queue_declare(
                    queue="evt-probe_src-counted--reliability_probe.on_counted", passive=True)
                if consumers:
                    break
            except Exception:
                conn.close()
                conn.connect()
            time.sleep(0.3)
    yield proc
    proc.terminate()
    proc.wait(20)
    mongo.disconnect(probe_mod.DB)


def _handled(kind, n):
    return list(probe_mod.db().handled.find({"kind": kind, "n": n}))


def _send(event_type, payload, event_id=None):
    entry = {
        "id": event_id or uuid.uuid4().hex, "event_type": event_type, "at": time.time(), "payload": payload,
        "case_no": f"C-{payload['n']}"}
    Bus("probe_src").publish_entry(entry)
    return entry["id"]


def test_a_poison_message_ends_in_the_dead_letter_queue_and_is_replayed_after_the_fix(probe_service):
    n = uuid.uuid4().hex[:8]
    event_id = _send("poison", {"n": n})
    letter = _wait(lambda: next((d for d in dead_letters.list_letters() if d["message_id"] == event_id), None),
                   what="the dead letter")
    assert letter["queue"] == "evt-probe_src-poison--reliability_probe.on_poison"
    assert letter["attempts"] == 3 and letter["case_no"] == f"C-{n}"
    assert "cannot handle message" in letter["error"]
    shown = dead_letters.show(event_id)
    assert shown["payload"] == {"n": n} and "ValueError" in shown["headers"]["x-onething-traceback"]
    assert _handled("poison", n) == []
    # listing does not consume
    assert any(d["message_id"] == event_id for d in dead_letters.list_letters())

    probe_mod.db().switches.update_one({"_id": "fixed"}, {"$set": {"at": time.time()}}, upsert=True)
    try:
        assert dead_letters.replay({event_id}) == [event_id]
        _wait(lambda: _handled("poison", n), what="the replayed message handled")
        assert all(d["message_id"] != event_id for d in dead_letters.list_letters())
        assert dead_letters.show(event_id) is None
    finally:
        probe_mod.db().switches.delete_one({"_id": "fixed"})


def test_an_outage_is_retried_without_being_counted(probe_service):
    n = uuid.uuid4().hex[:8]
    event_id = _send("flaky", {"n": n, "outages": 5})  # more outages than the 3 attempts allowed
    _wait(lambda: _handled("flaky", n), timeout=40, what="the flaky message handled")
    assert probe_mod.db().tries.find_one({"_id": n})["count"] == 6
    assert all(d["message_id"] != event_id for d in dead_letters.list_letters())


def test_a_duplicate_event_id_changes_nothing(probe_service):
    n = uuid.uuid4().hex[:8]
    event_id = _send("counted", {"n": n})
    _wait(lambda: _handled("counted", n), what="the first delivery")
    _send("counted", {"n": n}, event_id=event_id)  # redelivered, or federated from another site
    other = _send("counted", {"n": n})             # a different event with the same content is new
    _wait(lambda: len(_handled("counted", n)) >= 2, what="the second event")
    time.sleep(1.0)
    assert len(_handled("counted", n)) == 2
    keys = {d["_id"] for d in probe_mod.db().inbox.find({"_id": {"$regex": "on_counted"}})}
    assert f"reliability_probe.on_counted:{event_id}" in keys and f"reliability_probe.on_counted:{other}" in keys


def test_the_sweep_publishes_what_a_dead_writer_left_in_its_outbox(probe_service):
    n = uuid.uuid4().hex[:8]
    entry = {
        "id": uuid.uuid4().hex, "event_type": "counted", "at": time.time(), "attempts": 0,
        "next_at": time.time() + 1, "payload": {"n": n}, "case_no": f"C-{n}"}
    # committed with its change, then the writer died before publishing: nobody flushes it
    probe_mod.ProbeDoc._get_collection().insert_one({"_id": n, "outbox": [entry]})
    _wait(lambda: _handled("counted", n), what="the swept event handled")
    _wait(lambda: probe_mod.ProbeDoc._get_collection().find_one({"_id": n})["outbox"] == [],
          what="the outbox emptied")


def test_an_unroutable_event_stays_pending_with_its_attempts_counted(test_env):
    n = uuid.uuid4().hex[:8]
    mongo.connect(probe_mod.DB)
    entry = {"id": uuid.uuid4().hex, "event_type": "nobody_listens", "at": time.time() - 60, "attempts": 0,
             "next_at": time.time() - 1, "payload": {"n": n}, "case_no": f"C-{n}"}
    coll = probe_mod.ProbeDoc._get_collection()
    coll.insert_one({"_id": n, "outbox": [entry]})
    with pytest.raises(Unroutable):
        Bus("probe_src").publish_entry(entry)
    assert mongo.flush_outbox(probe_mod.ProbeDoc, n, Bus("probe_src"), older_than=0) == 0
    (kept,) = coll.find_one({"_id": n})["outbox"]
    assert kept["attempts"] == 1 and kept["next_at"] > time.time() and "no queue is bound" in kept["last_error"]
    # the operator's view of what waits, with why
    from tools import outbox as outbox_tool
    (row,) = [r for r in outbox_tool.pending(("reliability",)) if r[2] == n]
    assert row[3]["event_type"] == "nobody_listens" and "no queue is bound" in row[3]["last_error"]
    # not due again until its backoff has passed: the sweep leaves it alone meanwhile
    assert mongo.sweep_outbox(probe_mod.ProbeDoc, Bus("probe_src")) == 0
    assert coll.find_one({"_id": n})["outbox"][0]["attempts"] == 1


def _dead_letter_as(user, queue, headers):
    """A dead letter as joint_review's worker sends one (FailureRules): published as `user`, with
    that login as user_id, naming `queue` as where it failed."""
    import amqp
    from kombu import Connection

    from infra import topology
    from services.common.worker import dead_letter_entities
    with Connection(os.environ["ONETHING_AMQP_URI"]) as kconn:
        exchange, dlq = dead_letter_entities()
        exchange(kconn.default_channel).declare()
        dlq(kconn.default_channel).declare()
        kconn.default_channel.queue_declare(queue=queue, durable=True, auto_delete=False)
    conn = dead_letters._connect(topology.uri_for(user, topology.passwords([user])[user],
                                                  os.environ["ONETHING_AMQP_URI"]))
    try:
        message_id = uuid.uuid4().hex
        conn.channel().basic_publish(amqp.Message(b'{"n": 1}', content_type="application/json", message_id=message_id,
                                                  user_id=user, delivery_mode=2, application_headers={
                                                      **headers, "x-onething-original-queue": queue,
                                                      "x-onething-attempts": 3, "x-onething-error": "boom"}),
                                     exchange=dead_letter_entities()[0].name, routing_key=queue)
    finally:
        conn.close()
    return message_id


def test_a_replayed_desk_opinion_keeps_the_sender_the_broker_checked(test_env):
    """joint_review's worker dead-letters a desk's opinion with its own login as user_id and the desk
    in x-onething-sender (believed only beside that login): the replay must keep both, or joint_review
    would refuse the opinion as from nobody."""
    from kombu import Connection
    user = "svc-joint_review"
    queue = "evt-probe-replay--joint_review.replay_probe"  # a queue that login may write to, of this test only
    message_id = _dead_letter_as(user, queue, {"x-onething-sender": "desk-wsjk-440100", "case_no": "C-1"})
    _wait(lambda: any(d["message_id"] == message_id for d in dead_letters.list_letters()), what="the dead letter")
    try:
        assert dead_letters.replay({message_id}) == [message_id]
        with Connection(os.environ["ONETHING_AMQP_URI"]) as conn:
            got = _wait(lambda: conn.default_channel.basic_get(queue, no_ack=True), what="the replayed message")
        assert got.properties["user_id"] == user
        assert got.properties["message_id"] == message_id
        headers = got.properties["application_headers"]
        assert headers["x-onething-sender"] == "desk-wsjk-440100" and headers["x-onething-replayed"] == 1
        assert "x-onething-attempts" not in headers and "x-onething-error" not in headers
    finally:
        with Connection(os.environ["ONETHING_AMQP_URI"]) as conn:
            conn.default_channel.queue_delete(queue)


def test_a_replay_the_broker_refuses_says_why_and_leaves_the_letter(test_env, monkeypatch, capsys):
    """Without the sender's password and without the impersonator tag the broker refuses the
    user_id: the tool says what would let it replay, and the letter stays a dead letter."""
    from kombu import Connection
    user = "svc-joint_review"
    queue = "evt-probe-replay--joint_review.refused_probe"
    message_id = _dead_letter_as(user, queue, {"x-onething-sender": "desk-wsjk-440100"})
    _wait(lambda: any(d["message_id"] == message_id for d in dead_letters.list_letters()), what="the dead letter")
    monkeypatch.setattr(dead_letters, "_sender_uri", lambda user_id, uri: None)
    try:
        assert dead_letters.main(["replay", message_id]) == 1
        err = capsys.readouterr().err
        assert "svc-joint_review" in err and "impersonator" in err and "stays in" in err
        assert any(d["message_id"] == message_id for d in dead_letters.list_letters())
        with Connection(os.environ["ONETHING_AMQP_URI"]) as conn:
            assert conn.default_channel.basic_get(queue, no_ack=True) is None
    finally:
        assert dead_letters.drop(message_id)
        with Connection(os.environ["ONETHING_AMQP_URI"]) as conn:
            conn.default_channel.queue_delete(queue)
