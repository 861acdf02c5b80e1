"""One-way links between sites' brokers, as RabbitMQ definitions (the JSON `rabbitmqctl
import_definitions` takes).

A link from a sending site to a receiving site carries, for each exchange its routes name, what is
published there with a matching routing key:

- on the SENDING broker, a durable classic queue `link.<from>.<to>.<exchange>`, bound to that
  exchange with the routes' routing-key patterns, and a dynamic shovel of the same name that moves
  the queue's messages to the same exchange on the receiving broker. The shovel keeps the routing
  key (`dest-exchange` set, no `dest-exchange-key`), adds no headers of its own, copies the message's
  properties and headers (message_id, user_id, delivery mode; `traceparent`, `case_no`, `event_id`)
  and acknowledges a message on the sending side only when the receiving broker has confirmed it
  (`ack-mode: on-confirm`): until then the message stays in the sending site's queue, on disk.
  While the receiving broker is down or stopped, messages wait in that queue; the shovel tries
  again every `reconnect_delay` seconds.
- on the RECEIVING broker, the exchange (so the link never waits on the receiving site's services
  to declare it) and the link's user `link-<from>-<to>`, which may write to those exchanges only,
  with those routing keys only (topic permissions from the same patterns), and nothing else: no
  configure, no read.

Why one queue per exchange: a shovel publishes to one destination exchange; a queue bound to two
exchanges would need the shovel to republish "to the original exchange", and a message put straight
into the link queue through the default exchange would then be republished to the receiving side's
default exchange, refused (the link user may not write there) and retried forever, blocking the link.

Why the link user has the `impersonator` tag: RabbitMQ refuses a message whose `user_id` property is
not the publishing connection's user, unless that user is tagged `impersonator`. Messages that
cross a link carry the user_id the SENDING broker validated (a desk's opinion carries its desk's
user, which is what joint_review checks); the shovel republishes them as the link user, so without
the tag the receiving broker would refuse every such message (and the link would retry it forever).
The receiving site thereby trusts the sending broker's validation of user_id; that trust is why the
link user is limited to the link's exchanges and routing keys.

Why no queue length limit: a link queue holds what the receiving site has not taken yet, for as long
as it is away; a max-length would drop (or, with `reject-publish`, refuse) exactly what must not be
lost. What bounds it is the sending broker's disk alarm, which blocks publishers (their outboxes keep
the events) rather than dropping anything. Keeping the buffered messages on disk rather than in
memory is a policy matter (`queue-mode: lazy` for `^link\\.`), left to the site's topology.

At-least-once: a message the receiving broker stored but whose confirm the shovel never saw (the
receiving node killed at that moment, a connection cut) is sent again; consumers keep an inbox of
processed event ids. At most `PREFETCH` messages are unconfirmed at a time, which bounds how many one
interruption can double.
"""
import base64
import hashlib
import json
import os
import re
import secrets
import tempfile
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from infra import sites

# unconfirmed messages in flight on one link (the shovel's prefetch): its throughput against how
# many messages one interruption can send twice
PREFETCH = 250
RECONNECT_DELAY_SECONDS = 5
HEARTBEAT_SECONDS = 10
LINK_USER_TAGS = ["impersonator"]

_REGION = re.compile(r"^[0-9]{6}$")
_EXCHANGE = re.compile(r"^[A-Za-z0-9_.:-]+$")
_WORD = re.compile(r"^[A-Za-z0-9_:-]*$")


def link_user(sending, receiving):
    return f"link-{sending}-{receiving}"


def link_queue(sending, receiving, exchange):
    return f"link.{sending}.{receiving}.{exchange}"


def topic_regex(pattern):
    """The regular expression that accepts exactly the routing keys the topic pattern binds
    (`*` one word, `#` zero or more words), for the link user's topic permissions."""
    words = _check_pattern(pattern)
    collapsed: list[str] = []
    for word in words:  # `#.#` is `#`
        if not (word == "#" and collapsed and collapsed[-1] == "#"):
            collapsed.append(word)
    if collapsed == ["#"]:
        return "^.*$"
    out = "^"
    first = True
    for i, word in enumerate(collapsed):
        if word == "#" and i == 0:
            out += r"(?:[^.]*\.)*"  # zero or more leading words, each with its dot
            continue
        sep = "" if first else r"\."
        first = False
        if word == "#":
            out += r"(?:\.[^.]*)*"
        elif word == "*":
            out += sep + r"[^.]*"
        else:
            out += sep + re.escape(word)
    return out + "$"


def _check_pattern(pattern):
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"routing-key pattern {pattern!r} is empty")
    words = pattern.split(".")
    for word in words:
        if word not in ("*", "#") and not _WORD.match(word):
            raise ValueError(f"routing-key pattern {pattern!r}: {word!r} is not a word, `*` or `#` "
                             "(letters, digits, _ : -; wildcards only as whole words)")
    return words


def _check(vhost, sending, receiving, routes):
    if not vhost or not isinstance(vhost, str):
        raise ValueError("vhost is empty")
    for name, region in (("sending", sending), ("receiving", receiving)):
        if not (isinstance(region, str) and _REGION.match(region)):
            raise ValueError(f"{name} site {region!r} is not a six-digit GB/T 2260 region code")
    if sending == receiving:
        raise ValueError(f"a link goes from one site to another, not from {sending} to itself")
    if not routes:
        raise ValueError(f"the link {sending} -> {receiving} has no routes")
    by_exchange: dict[str, list[str]] = {}
    for route in routes:
        try:
            exchange, key = route
        except (TypeError, ValueError):
            raise ValueError(f"route {route!r} is not (exchange, routing-key pattern)") from None
        if not (isinstance(exchange, str) and _EXCHANGE.match(exchange)) or exchange.startswith("amq."):
            raise ValueError(f"route {route!r}: {exchange!r} is not an exchange a link may carry")
        _check_pattern(key)
        keys = by_exchange.setdefault(exchange, [])
        if key not in keys:
            keys.append(key)
    return by_exchange


def _shovel_uri(receiving_uri, vhost, user, password):
    parts = urlsplit(receiving_uri)
    if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
        raise ValueError(f"receiving_uri {receiving_uri!r} is not amqp://host:port or amqps://host:port")
    if parts.username or parts.password:
        raise ValueError("receiving_uri must not carry credentials: the link's user and password are added")
    if parts.path not in ("", "/"):
        raise ValueError(f"receiving_uri {receiving_uri!r} names a vhost; the link's vhost is added")
    if not password:
        raise ValueError("link_password is empty")
    query = dict(parse_qsl(parts.query))
    query.setdefault("heartbeat", str(HEARTBEAT_SECONDS))
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.netloc}"
    return urlunsplit((parts.scheme, netloc, "/" + quote(vhost, safe=""), urlencode(query), ""))


def password_hash(password, salt=None):
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password)), 4-byte salt;
    the definitions carry this, never the password itself."""
    salt = salt if salt is not None else secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode("utf-8")).digest()).decode("ascii")


def _exchange(vhost, name):
    # as services/common/bus.py declares them: topic, durable, not auto-deleted
    return {"name": name, "vhost": vhost, "type": "topic", "durable": True, "auto_delete": False,
            "internal": False, "arguments": {}}


def link_definitions(vhost, sending, receiving, routes, receiving_uri, link_password,
                     reconnect_delay=RECONNECT_DELAY_SECONDS):
    """(definitions for the sending broker, definitions for the receiving broker) of the one-way link
    `sending` -> `receiving` in `vhost` (the same vhost on both). `routes` is [(exchange, routing-key
    pattern), ...]; `receiving_uri` the receiving broker's address (amqp://host:port, optional query
    such as TLS settings, no credentials, no vhost); `link_password` the link user's password (kept
    in the sending broker's shovel parameter, as a hash on the receiving broker). ValueError names
    what is wrong with an argument."""
    by_exchange = _check(vhost, sending, receiving, routes)
    if not (isinstance(reconnect_delay, int | float) and reconnect_delay > 0):
        raise ValueError(f"reconnect_delay {reconnect_delay!r} must be a positive number of seconds")
    user = link_user(sending, receiving)
    dest_uri = _shovel_uri(receiving_uri, vhost, user, link_password)
    src_uri = "amqp:///" + quote(vhost, safe="")  # the sending node itself (a direct connection)

    sender = {"vhosts": [{"name": vhost}], "exchanges": [], "queues": [], "bindings": [], "parameters": []}
    for exchange, keys in by_exchange.items():
        queue = link_queue(sending, receiving, exchange)
        sender["exchanges"].append(_exchange(vhost, exchange))
        sender["queues"].append({"name": queue, "vhost": vhost, "durable": True, "auto_delete": False,
                                 "arguments": {"x-queue-type": "classic"}})
        sender["bindings"] += [{"source": exchange, "vhost": vhost, "destination": queue,
                                "destination_type": "queue", "routing_key": key, "arguments": {}} for key in keys]
        sender["parameters"].append({"vhost": vhost, "component": "shovel", "name": queue, "value": {
            "src-protocol": "amqp091", "src-uri": src_uri, "src-queue": queue,
            "src-prefetch-count": PREFETCH, "src-delete-after": "never",
            "dest-protocol": "amqp091", "dest-uri": dest_uri, "dest-exchange": exchange,
            "dest-add-forward-headers": False, "dest-add-timestamp-header": False,
            "ack-mode": "on-confirm", "reconnect-delay": reconnect_delay}})

    exchanges = list(by_exchange)
    receiver = {
        "vhosts": [{"name": vhost}],
        "exchanges": [_exchange(vhost, x) for x in exchanges],
        "users": [{"name": user, "password_hash": password_hash(link_password),
                   "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": list(LINK_USER_TAGS),
                   "limits": {}}],
        "permissions": [{"user": user, "vhost": vhost, "configure": "^$",
                         "write": "^(" + "|".join(re.escape(x) for x in exchanges) + ")$", "read": "^$"}],
        "topic_permissions": [{"user": user, "vhost": vhost, "exchange": x,
                               "write": "|".join(f"(?:{topic_regex(k)})" for k in by_exchange[x]),
                               "read": "^$"} for x in exchanges],
    }
    return sender, receiver


def apply(site, definitions, timeout=120.0):
    """Load `definitions` into the site's node (`rabbitmqctl -n <node> import_definitions`).
    Additive and repeatable. The file is written for the call only (mode 600: a sender's shovel
    URI holds the link password) and removed afterwards."""
    fd, path = tempfile.mkstemp(prefix="onething-link-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(definitions, fh)
        sites.ctl(site, "import_definitions", path, timeout=timeout)
    finally:
        os.unlink(path)


def shovels(site, vhost=None):
    """{shovel name: state} of the site's node ("running", "starting", "terminated"...)."""
    args = ["shovel_status", "--formatter", "json"]
    done = sites.ctl(site, *args)
    try:
        rows = json.loads(done.stdout or "[]")
    except json.JSONDecodeError:
        raise sites.SiteError(f"shovel_status on {site.node} answered {done.stdout[:200]!r}") from None
    return {row["name"]: row.get("state") for row in rows if vhost is None or row.get("vhost") == vhost}


def link(vhost, sending_site, receiving_site, routes, link_password, reconnect_delay=RECONNECT_DELAY_SECONDS):
    """Define the link on both nodes: the receiving side first (its user and exchanges), then the
    sending side (its queues and shovels, which connect at once)."""
    sender, receiver = link_definitions(vhost, sending_site.region, receiving_site.region, routes,
                                        receiving_site.address, link_password, reconnect_delay)
    apply(receiving_site, receiver)
    apply(sending_site, sender)
    return sender, receiver

