"""Links between sites' brokers (infra/links.py) on two extra local RabbitMQ nodes (infra/sites.py),
a province (440000) and a city (440100), linked both ways: what crosses, and that nothing is lost
when either side's broker is stopped gracefully or killed while messages are on their way.

What the outage tests assert, exactly:
- "nothing lost": the set of message ids that reach the receiving queue equals the set published;
- "nothing doubled" after a graceful stop (of either side) or a killed SENDING node: every id
  arrives exactly once (the sender's broker confirmed each publish, so it was on disk; the shovel
  acknowledges a message only once the receiver confirmed it);
- a killed RECEIVING node may have stored messages whose confirms the shovel never saw; those are
  sent again (at-least-once, consumers keep an inbox). The test counts them, prints the count and
  asserts it is at most links.PREFETCH (the unconfirmed window), never more.

The outage lasts settings().link_outage_seconds (ONETHING_LINK_OUTAGE_SECONDS: 3 by default, 30 in
the long run); the N messages are published spread over it. The nodes are this module's own (their
own names, ports 5781/5782, 25781/25782, 15781/15791, folders in a temporary directory) and are
stopped at the end whatever happens; the machine's default node is not touched.
"""
import json
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid

import amqp
import pytest

from infra import links, sites
from services.common.config import settings

RUN = uuid.uuid4().hex[:8]
VHOST = f"onething_links_{RUN}"
PROVINCE, CITY = "440000", "440100"
N = 500
UP = [("joint_review.events", f"task_assigned.*.{PROVINCE}"), ("desk.opinions", f"opinion.*.*.{PROVINCE}")]
DOWN = [("joint_review.events", f"task_assigned.*.{CITY}"), ("desk.opinions", f"opinion.*.*.{CITY}"),
        ("catalog.events", "package_published")]
TIMINGS = {}


# without the nodes ---------------------------------------------------------------------------------
def _reference_match(pattern, key):
    """AMQP topic matching, word by word: `*` one word, `#` zero or more."""
    def match(p, k):
        if not p:
            return not k
        if p[0] == "#":
            return any(match(p[1:], k[i:]) for i in range(len(k) + 1))
        return bool(k) and (p[0] in ("*", k[0])) and match(p[1:], k[1:])
    return match(pattern.split("."), key.split("."))


@pytest.mark.parametrize("pattern", ["task_assigned.*.440000", "opinion.*.*.440100", "package_published", "#",
                                     "*", "a.#", "#.b", "a.#.b", "#.a.#", "a.*.#", "#.#.b", "*.*", "a.b-c_d:e"])
def test_topic_regex_accepts_exactly_what_the_binding_routes(pattern):
    import re
    regex = re.compile(links.topic_regex(pattern))
    keys = ["", "a", "b", "a.b", "a.x.b", "a.x.y.b", "b.a", "x.a.y", "a.", ".b", "a..b", "x.a", "a.b.c",
            "package_published", "package_published.x", "task_assigned.gaj.440000", "task_assigned.gaj.440100",
            "task_assigned.440000", "task_assigned.gaj.x.440000", "opinion.gaj.C1.440100", "opinion.gaj.440100",
            "a.b-c_d:e", "a.b-c_d:f", "xtask_assigned.gaj.440000"]
    for key in keys:
        assert bool(regex.fullmatch(key)) == _reference_match(pattern, key), (pattern, key)


@pytest.mark.parametrize("pattern", ["", "a.b*", "a.#b", "a.b c", "a.b/c"])
def test_a_pattern_the_link_cannot_express_is_refused(pattern):
    with pytest.raises(ValueError, match="pattern"):
        links.topic_regex(pattern)


def test_the_definitions_of_a_link():
    sender, receiver = links.link_definitions("v", CITY, PROVINCE, [*UP, ("joint_review.events", "x.#")],
                                              "amqp://127.0.0.1:5781", "s3cret")
    queue = "link.440100.440000.joint_review.events"
    assert [q["name"] for q in sender["queues"]] == [queue, "link.440100.440000.desk.opinions"]
    assert all(q["durable"] and not q["auto_delete"] and "x-max-length" not in q["arguments"]
               for q in sender["queues"])
    assert {(b["source"], b["destination"], b["routing_key"]) for b in sender["bindings"]} == {
        ("joint_review.events", queue, "task_assigned.*.440000"), ("joint_review.events", queue, "x.#"),
        ("desk.opinions", "link.440100.440000.desk.opinions", "opinion.*.*.440000")}
    shovel = {p["name"]: p["value"] for p in sender["parameters"]}[queue]
    assert shovel["src-queue"] == queue and shovel["src-uri"] == "amqp:///v"
    assert shovel["dest-exchange"] == "joint_review.events" and "dest-exchange-key" not in shovel
    assert shovel["ack-mode"] == "on-confirm" and shovel["dest-add-forward-headers"] is False
    assert shovel["dest-uri"] == "amqp://link-440100-440000:s3cret@127.0.0.1:5781/v?heartbeat=10"
    (user,) = receiver["users"]
    assert user["name"] == "link-440100-440000" and user["tags"] == ["impersonator"]
    assert "s3cret" not in json.dumps(receiver)
    (perm,) = receiver["permissions"]
    assert (perm["configure"], perm["read"]) == ("^$", "^$")
    assert perm["write"] == r"^(joint_review\.events|desk\.opinions)$"
    assert {x["name"] for x in receiver["exchanges"]} == {"joint_review.events", "desk.opinions"}


def test_a_vhost_with_a_slash_is_escaped_in_both_uris():
    sender, _ = links.link_definitions("/", CITY, PROVINCE, UP, "amqps://broker.example:5671?verify=verify_peer", "p@ss")
    shovel = sender["parameters"][0]["value"]
    assert shovel["src-uri"] == "amqp:///%2F"
    assert shovel["dest-uri"] == "amqps://link-440100-440000:p%40ss@broker.example:5671/%2F?verify=verify_peer&heartbeat=10"


@pytest.mark.parametrize("change, message", [
    ({"vhost": ""}, "vhost is empty"),
    ({"sending": "4401"}, "sending site '4401' is not a six-digit"),
    ({"receiving": None}, "receiving site None"),
    ({"receiving": CITY}, "not from 440100 to itself"),
    ({"routes": []}, "has no routes"),
    ({"routes": [("joint_review.events",)]}, "is not \\(exchange, routing-key pattern\\)"),
    ({"routes": [("amq.topic", "#")]}, "'amq.topic' is not an exchange a link may carry"),
    ({"routes": [("bad exchange", "#")]}, "is not an exchange a link may carry"),
    ({"routes": [("joint_review.events", "task_assigned.gaj*")]}, "is not a word"),
    ({"receiving_uri": "http://127.0.0.1:5781"}, "is not amqp://host:port"),
    ({"receiving_uri": "amqp://guest:guest@127.0.0.1:5781"}, "must not carry credentials"),
    ({"receiving_uri": "amqp://127.0.0.1:5781/onething"}, "names a vhost"),
    ({"link_password": ""}, "link_password is empty"),
    ({"reconnect_delay": 0}, "reconnect_delay 0 must be a positive"),
])
def test_link_definitions_refuse_what_cannot_make_a_link(change, message):
    args = {"vhost": "v", "sending": CITY, "receiving": PROVINCE, "routes": UP,
            "receiving_uri": "amqp://127.0.0.1:5781", "link_password": "pw", **change}
    with pytest.raises(ValueError, match=message):
        links.link_definitions(**args)


@pytest.mark.parametrize("kwargs, message", [
    ({"region": "44"}, "six-digit"),
    ({"amqp_port": 5672}, "default RabbitMQ node"),
    ({"dist_port": 25672}, "default RabbitMQ node"),
    ({"management_port": 15672}, "default RabbitMQ node"),
    ({"amqp_port": 80}, "outside 1024-65535"),
    ({"dist_port": 5781}, "one port twice"),
    ({"node": "nohost"}, "has no @host"),
])
def test_a_site_that_would_touch_the_default_node_or_clash_is_refused(kwargs, message, tmp_path):
    args = {"region": PROVINCE, "amqp_port": 5781, "dist_port": 25781, "base_dir": str(tmp_path), **kwargs}
    with pytest.raises(ValueError, match=message):
        sites.Site(**args)


def test_a_site_does_not_start_on_a_port_something_else_holds(tmp_path):
    held = []
    try:
        while True:  # a port the system hands out, but not one a site may never take
            holder = socket.socket()
            held.append(holder)
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            port = holder.getsockname()[1]
            if not {port, port + 1} & sites.RESERVED_PORTS and port < 65535:
                break
        site = sites.Site(PROVINCE, port, port + 1, base_dir=str(tmp_path), node=f"onething-t{RUN}-busy@localhost")
        with pytest.raises(sites.SiteError, match=f"ports in use by something else: {{'amqp': {port}}}"):
            sites.start(site)
    finally:
        for holder in held:
            holder.close()
    assert not os.path.exists(site.pid_file)


def test_stopping_or_killing_a_site_that_is_not_running_does_nothing(tmp_path):
    site = sites.Site(PROVINCE, 5781, 25781, base_dir=str(tmp_path), node=f"onething-t{RUN}-idle@localhost")
    assert sites.stop(site) is None and sites.kill(site) is None
    assert sites.status(site)["state"] == "stopped"
    # a PID file naming a live process that is not this site's node (a PID reused after a crash)
    os.makedirs(os.path.dirname(site.pid_file))
    with open(site.pid_file, "w") as fh:
        fh.write(str(os.getpid()))
    assert sites.node_pid(site) is None
    assert sites.kill(site) is None and sites.stop(site) is None  # and this process lives on
    with pytest.raises(sites.SiteError, match="was never started here"):
        sites.load(PROVINCE, str(tmp_path))


# on two nodes --------------------------------------------------------------------------------------
def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout:.0f}s: {what}")


class Client:
    """A plain AMQP connection to a site's node in this run's vhost; publishes wait for the
    broker's confirm."""

    def __init__(self, site, user="guest", password="guest"):
        self.conn = amqp.Connection(f"127.0.0.1:{site.amqp_port}", userid=user, password=password,
                                    virtual_host=VHOST, confirm_publish=True, connect_timeout=5)
        self.conn.connect()
        self.ch = self.conn.channel()

    def publish(self, exchange, key, message_id, headers=None, user_id=None):
        props = {"message_id": message_id, "delivery_mode": 2, "content_type": "application/json",
                 "application_headers": headers or {}}
        if user_id:
            props["user_id"] = user_id
        self.ch.basic_publish(amqp.Message(json.dumps({"id": message_id}), **props), exchange=exchange,
                              routing_key=key)

    def arrivals(self, name, bindings):
        self.ch.queue_declare(name, durable=True, auto_delete=False)
        for exchange, key in bindings:
            self.ch.queue_bind(name, exchange, key)

    def depth(self, queue):
        return self.ch.queue_declare(queue, passive=True).message_count

    def take_all(self, queue):
        taken = []
        while (message := self.ch.basic_get(queue)) is not None:
            taken.append(message)
            self.ch.basic_ack(message.delivery_tag)
        return taken

    def close(self):
        try:
            self.conn.close()
        except Exception:  # the node went away under it
            pass


def link_queue_messages(site):
    """{link queue: messages ready + unacknowledged} on the site's node."""
    done = sites.ctl(site, "list_queues", "-p", VHOST, "name", "messages", "--formatter", "json")
    return {row["name"]: row["messages"] for row in json.loads(done.stdout or "[]") if row["name"].startswith("link.")}


def settled(site):
    return not any(link_queue_messages(site).values())


@pytest.fixture(scope="module")
def nodes():
    base = tempfile.mkdtemp(prefix=f"onething-sites-{RUN}-")
    province = sites.Site(PROVINCE, 5781, 25781, 15781, 15791, base_dir=os.path.join(base, PROVINCE),
                          node=f"onething-t{RUN}-{PROVINCE}@localhost")
    city = sites.Site(CITY, 5782, 25782, base_dir=os.path.join(base, CITY), node=f"onething-t{RUN}-{CITY}@localhost")
    failures = []

    def boot(site):
        try:
            TIMINGS[f"start {site.region}"] = sites.start(site)
        except Exception as exc:
            failures.append(exc)

    try:
        threads = [threading.Thread(target=boot, args=(s,)) for s in (province, city)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if failures:
            raise failures[0]
        for site in (province, city):
            sites.ctl(site, "add_vhost", VHOST)
            sites.ctl(site, "set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*")
            # a desk's user on each side, to publish opinions with its own validated user_id
            sites.ctl(site, "add_user", f"desk-gaj-{site.region}", "desk-pw")
            sites.ctl(site, "set_permissions", "-p", VHOST, f"desk-gaj-{site.region}", "^$", "^desk\\.opinions$", "^$")
        links.link(VHOST, city, province, UP, "up-pw", reconnect_delay=1)
        links.link(VHOST, province, city, DOWN, "down-pw", reconnect_delay=1)
        for site, count in ((city, 2), (province, 3)):
            wait_until(lambda s=site, c=count: list(links.shovels(s, VHOST).values()) == ["running"] * c, 30,
                       f"the links of {site.region} running")
        yield province, city
    finally:
        stopping = [threading.Thread(target=sites.stop, args=(s,)) for s in (province, city)]
        for t in stopping:
            t.start()
        for t in stopping:
            t.join()
        for s in (province, city):  # whatever `stop` could not end
            sites.kill(s)
        print("\nlink test timings (s):", json.dumps({k: round(v, 2) for k, v in TIMINGS.items()}))
        if os.environ.get("ONETHING_KEEP_TEST_VAR") != "1":
            shutil.rmtree(base, ignore_errors=True)


def _outward_address():
    """This host's address on its outward interface (no packet is sent), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("198.51.100.1", 9))  # TEST-NET-2: only picks the route
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


@pytest.mark.integration
def test_a_site_node_answers_on_its_own_ports_on_loopback_only(nodes):
    import base64
    import urllib.request
    province, _ = nodes
    request = urllib.request.Request(f"http://127.0.0.1:{province.management_port}/api/overview", headers={
        "Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert json.load(answer)["node"] == province.node
    with urllib.request.urlopen(f"http://127.0.0.1:{province.prometheus_port}/metrics", timeout=10) as answer:
        assert b"rabbitmq_" in answer.read()
    outward = _outward_address()
    if outward is None:
        pytest.skip("this host has no address besides loopback")
    for name, port in province.ports.items():
        with socket.socket() as sock:
            sock.settimeout(2)
            assert sock.connect_ex((outward, port)) != 0, f"{name} port {port} answers on {outward}"


HEADERS = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "case_no": "C1", "event_id": "e"}


@pytest.mark.integration
def test_only_matching_keys_cross_and_headers_and_properties_survive_the_hop(nodes):
    province, city = nodes
    at_province, at_city = Client(province), Client(city)
    try:
        at_province.arrivals("arrivals.routing", [(x, "#") for x in ("joint_review.events", "desk.opinions")])
        at_city.arrivals("arrivals.routing", [(x, "#") for x in ("joint_review.events", "desk.opinions",
                                                                 "catalog.events")])
        desk_at_city = Client(city, f"desk-gaj-{CITY}", "desk-pw")
        desk_at_province = Client(province, f"desk-gaj-{PROVINCE}", "desk-pw")
        # up, city -> province
        at_city.publish("joint_review.events", "task_assigned.gaj.440000", "up-task", {**HEADERS, "event_id": "up-task"})
        at_city.publish("joint_review.events", "task_assigned.gaj.440300", "up-other-city")
        at_city.publish("catalog.events", "package_published", "up-catalog")  # goes down only
        desk_at_city.publish("desk.opinions", "opinion.gaj.C1.440000", "up-opinion", HEADERS, user_id=f"desk-gaj-{CITY}")
        # down, province -> city
        at_province.publish("joint_review.events", "task_assigned.ybj.440100", "down-task", HEADERS)
        at_province.publish("joint_review.events", "task_assigned.ybj.440300", "down-other-city")
        at_province.publish("catalog.events", "package_published", "down-catalog", HEADERS)
        desk_at_province.publish("desk.opinions", "opinion.gaj.C2.440100", "down-opinion", HEADERS,
                                 user_id=f"desk-gaj-{PROVINCE}")
        desk_at_city.close()
        desk_at_province.close()

        wait_until(lambda: at_province.depth("arrivals.routing") >= 2 and at_city.depth("arrivals.routing") >= 3, 20,
                   "the matching messages crossing")
        wait_until(lambda: settled(city) and settled(province), 20, "both sides' link queues empty")
        # each side's own publishes reach its own queue too: what came over the link is "up-*" at
        # the province and "down-*" at the city
        up = {m.properties["message_id"]: m for m in at_province.take_all("arrivals.routing")
              if m.properties["message_id"].startswith("up-")}
        down = {m.properties["message_id"]: m for m in at_city.take_all("arrivals.routing")
                if m.properties["message_id"].startswith("down-")}
    finally:
        at_province.close()
        at_city.close()
    assert set(up) == {"up-task", "up-opinion"}
    assert set(down) == {"down-task", "down-catalog", "down-opinion"}

    task = up["up-task"]
    assert (task.delivery_info["exchange"], task.delivery_info["routing_key"]) == ("joint_review.events",
                                                                                   "task_assigned.gaj.440000")
    assert task.properties["application_headers"] == {**HEADERS, "event_id": "up-task"}  # nothing added
    assert task.properties["delivery_mode"] == 2 and task.properties["content_type"] == "application/json"
    assert json.loads(task.body) == {"id": "up-task"}
    opinion = up["up-opinion"]
    assert opinion.delivery_info["routing_key"] == "opinion.gaj.C1.440000"
    assert opinion.properties["user_id"] == f"desk-gaj-{CITY}"  # the sender's validation, kept
    assert opinion.properties["application_headers"] == HEADERS
    assert down["down-opinion"].properties["user_id"] == f"desk-gaj-{PROVINCE}"
    assert down["down-catalog"].delivery_info["exchange"] == "catalog.events"


def _refused(site, user, password, exchange, key, user_id=None):
    """The broker's reply code when `user` publishes there, or None when it was accepted."""
    client = Client(site, user, password)
    try:
        client.publish(exchange, key, f"probe-{uuid.uuid4().hex[:6]}", user_id=user_id)
        return None
    except amqp.exceptions.AMQPError as exc:
        return exc.reply_code
    finally:
        client.close()


@pytest.mark.integration
def test_the_link_user_may_write_only_its_exchanges_and_keys_and_why_it_impersonates(nodes):
    province, _ = nodes
    user = links.link_user(CITY, PROVINCE)
    probe = Client(province)
    try:
        probe.arrivals("arrivals.permissions", [("joint_review.events", "task_assigned.*.440000")])
        assert _refused(province, user, "up-pw", "joint_review.events", "task_assigned.gaj.440000",
                        user_id=f"desk-gaj-{CITY}") is None
        assert probe.depth("arrivals.permissions") == 1
        assert _refused(province, user, "up-pw", "joint_review.events", "task_assigned.gaj.440100") == 403  # key
        assert _refused(province, user, "up-pw", "catalog.events", "package_published") == 403  # exchange
        assert _refused(province, user, "up-pw", "", "arrivals.permissions") == 403  # the default exchange
        with pytest.raises(amqp.exceptions.AccessRefused):  # its password is the link's, nothing else
            Client(province, user, "wrong")
        # why the tag: a user without it may not publish another user's id (guest is an administrator)
        assert _refused(province, "guest", "guest", "joint_review.events", "task_assigned.gaj.440000",
                        user_id=f"desk-gaj-{CITY}") == 406
        probe.ch.queue_delete("arrivals.permissions")
        with pytest.raises(sites.SiteError, match=f"rabbitmqctl no_such_command on {province.node} failed"):
            sites.ctl(province, "no_such_command")
    finally:
        probe.close()


def _publish_spread(site, exchange, key, ids, seconds, published):
    """Publish `ids` one by one, spread evenly over `seconds`; `published` counts the confirmed ones."""
    client = Client(site)
    began = time.monotonic()
    try:
        for i, mid in enumerate(ids):
            lag = began + seconds * i / len(ids) - time.monotonic()
            if lag > 0:
                time.sleep(lag)  # pacing the publisher over the outage, not waiting for anything
            client.publish(exchange, key, mid, {**HEADERS, "event_id": mid})
            published.append(mid)
    finally:
        client.close()


def _collect(receiver, queue, ids, sender, timeout=120):
    """Wait until every id reached `queue` and the sender's link queues are empty, then take
    everything there: (ids received, how many of them were duplicates)."""
    client = None

    def arrived():
        nonlocal client
        try:
            client = client or Client(receiver)
            return client.depth(queue) >= len(ids)
        except (OSError, amqp.exceptions.AMQPError):
            client = None  # the receiver is still coming back
            return False

    try:
        wait_until(arrived, timeout, f"{len(ids)} messages in {queue}")
        wait_until(lambda: settled(sender), 30, f"the link queues of {sender.region} empty")
        got = [m.properties["message_id"] for m in client.take_all(queue)]
        client.ch.queue_delete(queue)
    finally:
        if client:
            client.close()
    return got, len(got) - len(set(got))


def _receiving_queue(site, name, department, region):
    client = Client(site)
    try:
        client.arrivals(name, [("joint_review.events", f"task_assigned.{department}.{region}")])
    finally:
        client.close()


@pytest.mark.integration
def test_a_city_broker_stopped_gracefully_gets_everything_once_when_it_returns(nodes):
    province, city = nodes
    outage = settings().link_outage_seconds
    _receiving_queue(city, "arrivals.graceful", "wsjk", CITY)
    ids = [f"graceful-{i}" for i in range(N)]
    began = time.monotonic()
    sites.stop_app(city)
    TIMINGS["stop_app city"] = time.monotonic() - began
    assert sites.status(city)["state"] == "app stopped"
    with pytest.raises(sites.SiteError, match="its application is stopped: use start_app"):
        sites.start(city)
    published = []
    _publish_spread(province, "joint_review.events", f"task_assigned.wsjk.{CITY}", ids, outage, published)
    assert link_queue_messages(province)[f"link.{PROVINCE}.{CITY}.joint_review.events"] == N  # waiting there
    TIMINGS["start_app city"] = sites.start_app(city)
    back = time.monotonic()
    got, duplicates = _collect(city, "arrivals.graceful", ids, province)
    TIMINGS["graceful: all arrived after start_app"] = time.monotonic() - back
    assert set(got) == set(ids)
    assert duplicates == 0 and len(got) == N


@pytest.mark.integration
def test_a_city_broker_killed_mid_stream_gets_everything_when_it_returns(nodes):
    province, city = nodes
    outage = settings().link_outage_seconds
    _receiving_queue(city, "arrivals.killed", "gaj", CITY)
    ids = [f"killed-{i}" for i in range(N)]
    published = []
    publisher = threading.Thread(target=_publish_spread, args=(province, "joint_review.events",
                                                               f"task_assigned.gaj.{CITY}", ids, outage, published))
    watcher = Client(city)
    publisher.start()
    try:  # kill the city while the link is delivering to it
        wait_until(lambda: watcher.depth("arrivals.killed") >= N // 5, 30, "a fifth of the messages at the city")
    finally:
        watcher.close()
    sites.kill(city)
    publisher.join()
    assert len(published) == N
    TIMINGS["start city after SIGKILL"] = sites.start(city)
    back = time.monotonic()
    got, duplicates = _collect(city, "arrivals.killed", ids, province)
    TIMINGS["killed: all arrived after start"] = time.monotonic() - back
    print(f"\nreceiving node killed mid-stream: {len(got)} deliveries of {N} messages, {duplicates} duplicates")
    TIMINGS["killed: duplicates (count)"] = duplicates
    assert set(got) == set(ids)
    assert duplicates <= links.PREFETCH


@pytest.mark.integration
@pytest.mark.parametrize("how", ["stopped", "killed"])
def test_a_province_broker_stopped_or_killed_with_messages_in_its_link_queue_loses_none(nodes, how):
    province, city = nodes
    _receiving_queue(city, f"arrivals.sender-{how}", "ybj", CITY)
    ids = [f"sender-{how}-{i}" for i in range(N)]
    sites.stop_app(city)  # so that everything waits in the province's link queue
    try:
        _publish_spread(province, "joint_review.events", f"task_assigned.ybj.{CITY}", ids, 0, [])
        queue = f"link.{PROVINCE}.{CITY}.joint_review.events"
        assert link_queue_messages(province)[queue] == N
        began = time.monotonic()
        if how == "stopped":
            sites.stop(province)
        else:
            sites.kill(province)
        TIMINGS[f"start province after it was {how}"] = sites.start(province)
        TIMINGS[f"province {how} and started again"] = time.monotonic() - began
        assert link_queue_messages(province)[queue] == N  # still there, on disk
    finally:
        sites.start_app(city)
    got, duplicates = _collect(city, f"arrivals.sender-{how}", ids, province)
    assert set(got) == set(ids)
    assert duplicates == 0 and len(got) == N
