"""Which login a dead letter's replay goes out as (tools.dead_letters._sender_uri): the sender's own
when the broker passwords file knows it, else none (the tool's own login, which then needs the
impersonator tag)."""
from infra import topology
from tools import dead_letters

BASE = "amqp://guest:guest@127.0.0.1:5672/onething"


def test_a_sender_the_passwords_file_knows_is_connected_as(monkeypatch):
    monkeypatch.setattr(topology, "passwords", lambda names, create=True: {n: "s3cret" for n in names})
    assert dead_letters._sender_uri("svc-joint_review", BASE) == "amqp://svc-joint_review:s3cret@127.0.0.1:5672/onething"


def test_a_sender_it_does_not_know_gives_no_uri(monkeypatch):
    def missing(names, create=True):
        assert create is False  # the tool never makes up a password for someone else's login
        raise SystemExit("no password for svc-joint_review")
    monkeypatch.setattr(topology, "passwords", missing)
    assert dead_letters._sender_uri("svc-joint_review", BASE) is None
    monkeypatch.setattr(topology, "passwords", lambda names, create=True: {n: "" for n in names})
    assert dead_letters._sender_uri("svc-joint_review", BASE) is None
