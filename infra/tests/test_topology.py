"""The broker topology (infra/topology.yaml through infra/topology.py): what it grants, checked on the
real broker by logging in as each user, and kept in step with the workers' code."""
import importlib
import json
import os

import pytest

from infra import topology
from services.common.registry import NAMES, SERVICES, broker_user, desk_broker_user

DESKS = [("gaj", "440100"), ("wsjk", "440100")]


def _worker_sources(service):
    """The exchanges a worker's entrypoints are bound to, read from its class."""
    from nameko.events import EventHandler
    from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR
    from nameko.messaging import Consumer
    module, attr = service.worker.split(":")
    cls = getattr(importlib.import_module(module), attr)
    found = set()
    for name in dir(cls):
        for ext in getattr(getattr(cls, name), ENTRYPOINT_EXTENSIONS_ATTR, ()):
            if isinstance(ext, EventHandler):
                found.add(f"{ext.source_service}.events")
            elif isinstance(ext, Consumer):
                found.add(ext.queue.exchange.name)
    return found


@pytest.mark.parametrize("service", SERVICES, ids=NAMES)
def test_the_definition_names_exactly_the_exchanges_each_worker_consumes(service):
    assert set(topology.load()["services"][service.name]["consumes"]) == _worker_sources(service)


def test_every_exchange_a_service_consumes_is_defined():
    topo = topology.load()
    defined = {e["name"] for e in topo["exchanges"]}
    for name in NAMES:
        assert set(topo["services"][name]["consumes"]) <= defined, name
        assert f"{name}.events" in defined


def test_the_password_hash_is_rabbitmqs_salted_sha256():
    import base64
    import hashlib
    raw = base64.b64decode(topology.password_hash("s3cret", salt=b"\x01\x02\x03\x04"))
    assert raw[:4] == b"\x01\x02\x03\x04"
    assert raw[4:] == hashlib.sha256(b"\x01\x02\x03\x04s3cret").digest()


def test_a_login_is_put_into_the_uri_escaped():
    uri = topology.uri_for("svc-intake", "a/b:c@d", "amqp://guest:guest@127.0.0.1:5672/onething_x")
    assert uri == "amqp://svc-intake:a%2Fb%3Ac%40d@127.0.0.1:5672/onething_x"


def test_passwords_are_made_once_and_kept(tmp_path):
    path = str(tmp_path / "secrets" / "pw.json")
    first = topology.passwords(["svc-a", "svc-b"], path=path)
    again = topology.passwords(["svc-a", "svc-b", "svc-c"], path=path)
    assert again["svc-a"] == first["svc-a"] and again["svc-b"] == first["svc-b"]
    assert len(again["svc-c"]) >= 20 and len(set(again.values())) == 3
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert json.load(open(path)) == again


def test_a_missing_password_is_an_error_where_none_may_be_made(tmp_path, monkeypatch):
    path = str(tmp_path / "pw.json")
    with pytest.raises(SystemExit, match="no password for svc-a"):
        topology.passwords(["svc-a"], path=path, create=False)
    assert not os.path.exists(path)


def test_an_unknown_site_is_refused():
    with pytest.raises(SystemExit, match="not a site"):
        topology.definitions("999999", desks=[], secrets_of={})


def test_a_desk_may_declare_nothing_and_publish_only_its_own_key():
    pw = {u: "x" for u in topology.users(DESKS)}
    defs = topology.definitions("440100", vhost="v", desks=DESKS, secrets_of=pw)
    perm = next(p for p in defs["permissions"] if p["user"] == desk_broker_user("gaj", "440100"))
    assert perm["configure"] == "^$" and perm["read"] == r"^desk\.gaj\.440100$"
    topic = next(t for t in defs["topic_permissions"] if t["user"] == desk_broker_user("gaj", "440100"))
    assert topic["write"] == r"^opinion\.gaj\.440100\.[0-9]{6}$"
    binding = next(b for b in defs["bindings"] if b["destination"] == "desk.gaj.440100")
    assert (binding["source"], binding["routing_key"]) == ("joint_review.events", "task_assigned.gaj.440100")


# on the real broker ------------------------------------------------------------------------------
@pytest.fixture
def site(test_env):
    """The topology loaded into a vhost of its own; yields {user: AMQP URI}."""
    from infra import local
    vhost = f"topology_{os.urandom(3).hex()}"
    local.rabbitmqctl("add_vhost", vhost, check=False)
    topology.apply(vhost=vhost, desks=DESKS)
    base = test_env["ONETHING_AMQP_URI"].rsplit("/", 1)[0] + "/" + vhost
    yield topology.process_uris(DESKS, base_uri=base)
    local.delete_vhost(vhost)


def _refused(uri, action):
    """Run `action(channel)` logged in with `uri`; the broker's refusal code, or None if allowed."""
    import amqp
    from kombu import Connection
    with Connection(uri) as conn:
        channel = conn.channel()
        try:
            action(channel)
            channel.basic_qos(0, 1, False)  # a round trip: an asynchronous refusal arrives by now
        except (amqp.exceptions.AccessRefused, amqp.exceptions.PreconditionFailed,
                amqp.exceptions.NotAllowed) as exc:
            return exc.code
    return None


def _publish(exchange, key, **props):
    import amqp
    return lambda ch: ch.basic_publish(amqp.Message(b"{}", **props), exchange=exchange, routing_key=key)


@pytest.mark.integration
def test_each_service_logs_in_as_itself_and_publishes_only_its_own_events(site):
    intake = site[broker_user("intake")]
    assert _refused(intake, lambda ch: ch.exchange_declare("intake.events", "topic", durable=True, auto_delete=False)) is None
    assert _refused(intake, _publish("intake.events", "case_submitted")) is None
    assert _refused(intake, _publish("joint_review.events", "case_concluded")) == 403
    assert _refused(intake, _publish("desk.opinions", "opinion.gaj.440100.440100")) == 403


@pytest.mark.integration
def test_a_service_cannot_read_another_services_queue_or_delete_its_exchange(site):
    delivery = site[broker_user("delivery")]
    queue = "evt-joint_review-case_concluded--delivery.on_case_concluded"
    assert _refused(delivery, lambda ch: ch.queue_declare(queue, durable=True, auto_delete=False)) is None
    evaluation = site[broker_user("evaluation")]
    assert _refused(evaluation, lambda ch: ch.basic_consume(queue, callback=lambda m: None)) == 403
    assert _refused(evaluation, lambda ch: ch.exchange_delete("intake.events")) == 403


@pytest.mark.integration
def test_a_desk_reads_only_its_own_queue_and_declares_nothing(site):
    gaj = site[desk_broker_user("gaj", "440100")]
    assert _refused(gaj, lambda ch: ch.basic_consume("desk.gaj.440100", callback=lambda m: None)) is None
    assert _refused(gaj, lambda ch: ch.basic_consume("desk.wsjk.440100", callback=lambda m: None)) == 403
    assert _refused(gaj, lambda ch: ch.queue_declare("desk.gaj.extra", durable=True)) == 403
    assert _refused(gaj, lambda ch: ch.basic_consume("joint_review.desk_opinions", callback=lambda m: None)) == 403


@pytest.mark.integration
def test_a_desk_publishes_only_its_own_opinions_under_its_own_name(site):
    gaj, user = site[desk_broker_user("gaj", "440100")], desk_broker_user("gaj", "440100")
    assert _refused(gaj, _publish("desk.opinions", "opinion.gaj.440100.440100", user_id=user)) is None
    # another department's routing key: the topic permission refuses it
    assert _refused(gaj, _publish("desk.opinions", "opinion.wsjk.440100.440100", user_id=user)) == 403
    # another department's name on the message: the broker checks user_id against the login
    assert _refused(gaj, _publish("desk.opinions", "opinion.gaj.440100.440100",
                                  user_id=desk_broker_user("wsjk", "440100"))) == 406
    # anything but its opinions
    assert _refused(gaj, _publish("joint_review.events", "task_assigned.gaj.440100")) == 403


@pytest.mark.integration
def test_loading_the_topology_twice_changes_nothing(site, test_env):
    from kombu import Connection
    vhost = site[broker_user("intake")].rsplit("/", 1)[1]
    topology.apply(vhost=vhost, desks=DESKS)
    with Connection(site[broker_user("joint_review")]) as conn:
        _, count, _ = conn.channel().queue_declare("joint_review.desk_opinions", passive=True)
    assert count == 0


# links between sites -----------------------------------------------------------------------------
SAMPLE_KEYS = [(x, k.format(r=r)) for r in ("440000", "440100", "440300") for x, k in (
    ("joint_review.events", "task_assigned.scjg.{r}"), ("desk.opinions", "opinion.scjg.440300.{r}"),
    ("elicense.events", "signing_key_published.{r}"), ("evaluation.events", "evaluation_received"),
    ("catalog.events", "package_published"))]


def _carried(sending, receiving):
    import re as _re

    from infra.links import topic_regex
    routes = topology.link_routes(sending, receiving)
    return {(x, k) for x, k in SAMPLE_KEYS if any(x == rx and _re.fullmatch(topic_regex(rk), k) for rx, rk in routes)}


def test_nothing_a_link_carries_comes_back_the_way_it_went():
    """Shovels know no hop limit: a key that went up and came down to the same city would circle."""
    for city in ("440100", "440300"):
        assert not _carried(city, "440000") & _carried("440000", city), city


def test_work_for_another_city_goes_up_and_down_to_that_city_only():
    up = _carried("440100", "440000")
    assert ("joint_review.events", "task_assigned.scjg.440300") in up
    assert ("joint_review.events", "task_assigned.scjg.440100") not in up
    assert ("joint_review.events", "task_assigned.scjg.440300") in _carried("440000", "440300")
    assert ("joint_review.events", "task_assigned.scjg.440300") not in _carried("440000", "440100")


def test_keys_reach_every_site_and_figures_reach_only_the_province():
    for city in ("440100", "440300"):
        other = "440300" if city == "440100" else "440100"
        down = _carried("440000", city)
        assert {("elicense.events", "signing_key_published.440000"),
                ("elicense.events", f"signing_key_published.{other}")} <= down
        assert ("evaluation.events", "evaluation_received") in _carried(city, "440000")
        assert ("evaluation.events", "evaluation_received") not in down


def test_sites_that_are_not_city_and_province_are_not_linked():
    with pytest.raises(SystemExit, match="not linked"):
        topology.link_routes("440100", "440300")


def test_a_sites_links_come_from_the_folder_of_link_uris(tmp_path):
    (tmp_path / "440000").write_text("amqp://link-440100-440000:p%40ss@province.example:5672\n")
    (tmp_path / "README").write_text("not a site")
    uris = topology.link_uris_from(str(tmp_path))
    assert uris == {"440000": "amqp://link-440100-440000:p%40ss@province.example:5672"}
    pw = {u: "x" for u in [*topology.users(DESKS), "link-440000-440100"]}
    defs = topology.definitions("440100", vhost="v", desks=DESKS, secrets_of=pw, link_uris=uris)
    shovels = {p["name"]: p["value"] for p in defs["parameters"]}
    assert set(shovels) == {f"link.440100.440000.{x}" for x in
                            ("joint_review.events", "desk.opinions", "evaluation.events", "elicense.events")}
    dest = shovels["link.440100.440000.desk.opinions"]["dest-uri"]
    assert dest.startswith("amqp://link-440100-440000:p%40ss@province.example:5672/v")
    link_user = next(u for u in defs["users"] if u["name"] == "link-440000-440100")
    assert link_user["tags"] == ["impersonator"]  # the province's down link arrives here


def test_a_link_uri_of_another_user_or_a_missing_one_is_refused():
    pw = {u: "x" for u in [*topology.users(DESKS), "link-440000-440100"]}
    with pytest.raises(SystemExit, match="logs in as link-440100-440000"):
        topology.definitions("440100", vhost="v", desks=DESKS, secrets_of=pw,
                             link_uris={"440000": "amqp://guest:guest@province.example:5672"})
    with pytest.raises(SystemExit, match="no URI is given"):
        topology.definitions("440000", vhost="v", desks=[], secrets_of={**pw, "link-440100-440000": "x",
                                                                        "link-440300-440000": "x"},
                             link_uris={"440100": "amqp://link-440000-440100:x@gz.example:5672"})


def test_a_site_alone_has_no_links():
    pw = {u: "x" for u in topology.users(DESKS)}
    defs = topology.definitions("440100", vhost="v", desks=DESKS, secrets_of=pw, link_uris={})
    assert defs["parameters"] == [] and not [u for u in defs["users"] if u["name"].startswith("link-")]


# queues no handler reads any more --------------------------------------------------------------
def _worker_queues():
    """The queue of every event handler of the workers, as nameko names it."""
    import importlib

    from nameko.events import EventHandler

    from services.common.registry import SERVICES
    names = set()
    for service in SERVICES:
        module, cls = service.worker.split(":")
        worker = getattr(importlib.import_module(module), cls)
        for attr in vars(worker).values():
            for ext in getattr(attr, "nameko_entrypoints", ()):
                if isinstance(ext, EventHandler):
                    names.add(f"evt-{ext.source_service}-{ext.event_type}--{worker.name}.{attr.__name__}")
    return names


def test_a_retired_queue_is_no_queue_a_worker_reads():
    import re as _re
    retired = [p["pattern"] for p in topology.load()["policies"] if "expires" in p["definition"]]
    assert retired, "no policy retires a queue"
    live = _worker_queues()
    assert "evt-joint_review-tasks_assigned--intake.on_tasks_assigned" in live
    assert not [q for q in live for pattern in retired if _re.search(pattern, q)]
    assert any(_re.search(p, "evt-joint_review-task_assigned.#--intake.on_task_assigned") for p in retired)


@pytest.mark.integration
def test_the_broker_deletes_intakes_old_copy_of_every_task_once_unused(site):
    """The queue an intake of before tasks_assigned declared gets the policy that has the broker
    delete it once unused; a queue of today's intake does not."""
    import subprocess

    from kombu import Connection
    vhost = site[broker_user("intake")].rsplit("/", 1)[1]
    old, new = ("evt-joint_review-task_assigned.#--intake.on_task_assigned",
                "evt-joint_review-tasks_assigned--intake.on_tasks_assigned")
    with Connection(site[broker_user("intake")]) as conn:
        channel = conn.channel()
        for name in (old, new):
            channel.queue_declare(name, durable=True, auto_delete=False)
    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "policy"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    policies = dict(line.split("\t", 1) if "\t" in line else (line, "") for line in out.splitlines())
    assert policies[old].strip() == "retired-queues" and policies[new].strip() == ""
