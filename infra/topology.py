"""The broker topology of one site, from the one definition in infra/topology.yaml: a vhost, one
user per service and per desk with the least permissions it needs, the exchanges, queues, bindings
and policies, as RabbitMQ definitions (the JSON `rabbitmqctl import_definitions` and the management
API's /api/definitions take). Importing is additive and repeatable.

    python -m infra.topology apply [--site 440100] [--vhost onething] [--management-url URL]
    python -m infra.topology show [--site 440100]      # the definitions, passwords hidden

Locally the definitions go through `rabbitmqctl import_definitions`; with --management-url (or
ONETHING_BROKER_MANAGEMENT_URL, http://user:password@host:15672) through the management API, which
is what the chart's hook job does. Which desks exist comes from ONETHING_DESKS, or by default from
the catalog's items (every department that implements one, in the site's region).
"""
import argparse
import base64
import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import urllib.request
from urllib.parse import quote, unquote, urlparse, urlunparse

import yaml

from services.common.config import ROOT, settings
from services.common.registry import NAMES, broker_user, desk_broker_user

DEFINITION = os.path.join(ROOT, "infra", "topology.yaml")


def load(path=DEFINITION):
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def sites(topo=None):
    return {s["region"]: s for s in (topo or load())["sites"]}


def default_desks(region):
    """Every department that implements an item of a seeded package, in `region`."""
    s = settings()
    if s.desks:
        return s.desks
    from services.catalog.store import read_data_dir
    _, packages = read_data_dir(s.catalog_data)
    found: list[str] = []
    for pkg in packages:
        for item in pkg["items"]:
            if item["department_code"] not in found:
                found.append(item["department_code"])
    return [(d, region) for d in found]


def link_routes(sending, receiving, topo=None):
    """[(exchange, routing key)] a link from `sending` to `receiving` carries: `up` from a city to its
    province, `down` from the province to a city."""
    topo = topo or load()
    known = sites(topo)
    for code in (sending, receiving):
        if code not in known:
            raise SystemExit(f"{code!r} is not a site of infra/topology.yaml: {', '.join(known)}")
    if known[sending].get("parent") == receiving:
        kind = "up"
    elif known[receiving].get("parent") == sending:
        kind = "down"
    else:
        raise SystemExit(f"sites {sending} and {receiving} are not linked: links go between a city and its province")
    routes = []
    for route in topo["links"][kind]:
        if "{other}" in route["key"]:
            targets = [c for c in known if c != sending]
        elif "{elsewhere}" in route["key"]:
            targets = [c for c in known if c != receiving]
        else:
            targets = [receiving]
        for target in targets:
            key = _fill(route["key"], to=receiving, other=target, elsewhere=target, **{"from": sending})
            if (route["exchange"], key) not in routes:
                routes.append((route["exchange"], key))
    return routes


def links_of(site, topo=None):
    """[(sending, receiving)] of every link that starts or ends at `site`."""
    known = sites(topo or load())
    parent = known[site].get("parent")
    pairs = [(site, parent), (parent, site)] if parent else []
    for code, other in known.items():
        if other.get("parent") == site:
            pairs += [(site, code), (code, site)]
    return pairs


# passwords ----------------------------------------------------------------------------------------
def users(desks):
    return [broker_user(n) for n in NAMES] + [desk_broker_user(d, r) for d, r in desks]


def passwords(names, path=None, create=True):
    """{user: password} from the passwords file; locally, users missing from it get a new random
    password, written back (mode 600). In production the file is a mounted secret and a missing
    user is an error."""
    s = settings()
    path = path or s.broker_passwords_file
    known = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            known = json.load(fh)
    missing = [n for n in names if n not in known]
    if missing and (s.production or not create):
        raise SystemExit(f"{path} has no password for {', '.join(missing)}")
    if missing:
        for name in missing:
            known[name] = secrets.token_urlsafe(18)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as fh:
            json.dump(known, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
    return {n: known[n] for n in names}


def password_hash(password, salt=None):
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password))."""
    salt = salt if salt is not None else secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode("utf-8")).digest()).decode("ascii")


def uri_for(user, password, base_uri=None):
    """`base_uri` (ONETHING_AMQP_URI: host, port, vhost) with the user's own login."""
    parts = urlparse(base_uri or settings().amqp_uri)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunparse(parts._replace(netloc=netloc))


# definitions --------------------------------------------------------------------------------------
def _alternation(names):
    return "|".join(re.escape(n) for n in names)


def _fill(pattern, **names):
    """A permission pattern with its {names} put in; `{consumes}` may be empty."""
    out = pattern
    for key, value in names.items():
        out = out.replace("{" + key + "}", value)
    return out.replace("{{", "{").replace("}}", "}").replace("(|", "(").replace("||", "|")


def _user(name, password):
    return {"name": name, "password_hash": password_hash(password),
            "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": [], "limits": {}}


def link_uris_from(folder):
    """{other site: AMQP URI with the link user's login} from a folder of one file per linked site
    (ONETHING_BROKER_LINKS_DIR, the chart's mounted secret)."""
    found = {}
    if folder and os.path.isdir(folder):
        for name in sorted(os.listdir(folder)):
            if len(name) == 6 and name.isdigit():
                with open(os.path.join(folder, name), encoding="utf-8") as fh:
                    found[name] = fh.read().strip()
    return found


def _link_definitions(site, vhost, topo, link_uris, pw):
    """Both ends of every link of `site` that this broker holds: for a link it sends on, the queue,
    bindings and shovel to the other site's broker (its URI from `link_uris`); for a link it
    receives, the link user (its password from the passwords file) and the exchanges it writes."""
    from infra import links
    out = []
    for sending, receiving in links_of(site, topo):
        routes = link_routes(sending, receiving, topo)
        user = links.link_user(sending, receiving)
        if receiving == site:
            out.append(links.link_definitions(vhost, sending, receiving, routes, "amqp://127.0.0.1",
                                              pw[user])[1])
            continue
        uri = link_uris.get(receiving)
        if not uri:
            raise SystemExit(f"site {site} links to {receiving}, but no URI is given for it (ONETHING_BROKER_LINKS_DIR)")
        parts = urlparse(uri)
        if parts.username != user or not parts.password:
            raise SystemExit(f"the link {sending} → {receiving} logs in as {user}; its URI names {parts.username!r}")
        address = urlunparse(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else ""), path=""))
        out.append(links.link_definitions(vhost, sending, receiving, routes, address,
                                          unquote(parts.password))[0])
    return out


def definitions(site, vhost=None, desks=None, secrets_of=None, topo=None, link_uris=None):
    """The RabbitMQ definitions of one site's broker. With `link_uris` ({other site: URI}; default:
    ONETHING_BROKER_LINKS_DIR), also the links between this site and the others; without, the site
    stands alone (`make run`)."""
    topo = topo or load()
    if site not in sites(topo):
        raise SystemExit(f"{site!r} is not a site of infra/topology.yaml: {', '.join(sites(topo))}")
    vhost = vhost or topo["vhost"]
    desks = default_desks(site) if desks is None else desks
    link_uris = link_uris_from(settings().broker_links_dir) if link_uris is None else link_uris
    names = users(desks)
    if link_uris:
        from infra.links import link_user
        names += [link_user(a, b) for a, b in links_of(site, topo) if b == site]
    pw = secrets_of if secrets_of is not None else passwords(names)
    defs: dict = {"vhosts": [{"name": vhost}], "users": [], "permissions": [], "topic_permissions": [],
                  "exchanges": [], "queues": [], "bindings": [], "policies": [], "parameters": []}

    for ex in topo["exchanges"]:
        defs["exchanges"].append({"name": ex["name"], "vhost": vhost, "type": ex["type"], "durable": True,
                                  "auto_delete": False, "internal": False, "arguments": {}})

    def queue(name, bindings):
        defs["queues"].append({"name": name, "vhost": vhost, "durable": True, "auto_delete": False,
                               "arguments": {}})
        for b in bindings:
            defs["bindings"].append({"source": b["exchange"], "vhost": vhost, "destination": name,
                                     "destination_type": "queue", "routing_key": b["key"], "arguments": {}})

    level = sites(topo)[site]["level"]
    for q in topo["queues"]:
        if level not in q.get("levels", [level]):
            continue
        queue(q["name"], [{**b, "key": _fill(b["key"], site=site)} for b in q.get("bind", [])])
    for p in topo["policies"]:
        defs["policies"].append({"name": p["name"], "vhost": vhost, "pattern": p["pattern"],
                                 "apply-to": p["apply-to"], "definition": p["definition"],
                                 "priority": p.get("priority", 0)})

    perms = topo["service_permissions"]
    for name in NAMES:
        user = broker_user(name)
        defs["users"].append(_user(user, pw[user]))
        consumes = _alternation(topo["services"][name]["consumes"])
        defs["permissions"].append({"user": user, "vhost": vhost, **{
            k: _fill(perms[k], service=re.escape(name), consumes=consumes) for k in ("configure", "write", "read")}})

    desk = topo["desk"]
    for department, region in desks:
        user = desk_broker_user(department, region)
        names_in = {"department": department, "region": region}
        defs["users"].append(_user(user, pw[user]))
        queue(_fill(desk["queue"], **names_in), [{"exchange": desk["bind"]["exchange"],
                                                  "key": _fill(desk["bind"]["key"], **names_in)}])
        escaped = {"department": re.escape(department), "region": re.escape(region)}
        defs["permissions"].append({"user": user, "vhost": vhost, **{
            k: _fill(v, **escaped) for k, v in desk["permissions"].items()}})
        for tp in desk["topic_permissions"]:
            defs["topic_permissions"].append({"user": user, "vhost": vhost, "exchange": tp["exchange"],
                                              "write": _fill(tp["write"], **escaped),
                                              "read": _fill(tp["read"], **escaped)})
    if link_uris:
        for part in _link_definitions(site, vhost, topo, link_uris, pw):
            for key, entries in part.items():
                defs.setdefault(key, []).extend(e for e in entries if e not in defs.get(key, []))
    return defs


# applying -----------------------------------------------------------------------------------------
def apply_local(defs, node=None):
    """`rabbitmqctl import_definitions` on the local node (or `node`)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(defs, fh)
        path = fh.name
    try:
        os.chmod(path, 0o644)  # rabbitmqctl runs as the broker's user
        cmd = ["rabbitmqctl", "-q", *(["-n", node] if node else []), "import_definitions", path]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"import_definitions failed: {done.stderr.strip() or done.stdout.strip()}")
    finally:
        os.unlink(path)


def apply_http(defs, management_url, timeout=30):
    """POST /api/definitions of the management API at `management_url` (http://user:pw@host:15672)."""
    parts = urlparse(management_url)
    if not parts.username:
        raise SystemExit("the management URL needs the administrator's login: http://user:password@host:15672")
    bare = urlunparse(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")))
    request = urllib.request.Request(bare.rstrip("/") + "/api/definitions", data=json.dumps(defs).encode(),
                                     method="POST", headers={"content-type": "application/json"})
    token = base64.b64encode(f"{parts.username}:{parts.password or ''}".encode()).decode()
    request.add_header("authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if response.status not in (200, 201, 204):
            raise RuntimeError(f"the management API answered {response.status}")


def apply(site=None, vhost=None, desks=None, management_url=None, node=None):
    """Load one site's topology into its broker. Returns the users' AMQP URIs."""
    s = settings()
    site = site or s.region
    defs = definitions(site, vhost=vhost, desks=desks)
    url = management_url or s.broker_management_url
    if url:
        apply_http(defs, url)
    else:
        apply_local(defs, node=node)
    return defs


def process_uris(desks, base_uri=None):
    """{user: AMQP URI} for every service and desk, with their own logins (the suite launcher)."""
    names = users(desks)
    return {n: uri_for(n, p, base_uri) for n, p in passwords(names).items()}


def _hidden(defs):
    return {**defs, "users": [{**u, "password_hash": "…"} for u in defs["users"]]}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m infra.topology", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("apply", "show"))
    parser.add_argument("--site", default=None, help="region code of the site (default ONETHING_REGION)")
    parser.add_argument("--vhost", default=None, help="default: the vhost of infra/topology.yaml")
    parser.add_argument("--management-url", default=None, help="http://user:password@host:15672")
    args = parser.parse_args(argv)
    site = args.site or settings().region
    if args.command == "show":
        json.dump(_hidden(definitions(site, vhost=args.vhost)), sys.stdout, indent=1, ensure_ascii=False)
        print()
        return
    defs = apply(site, vhost=args.vhost, management_url=args.management_url)
    print(f"site {site}: {len(defs['users'])} users, {len(defs['exchanges'])} exchanges, "
          f"{len(defs['queues'])} queues, {len(defs['policies'])} policies loaded into vhost "
          f"{defs['vhosts'][0]['name']}")


if __name__ == "__main__":
    main()
