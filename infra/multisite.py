"""Three sites on this machine: the province (440000 广东省) and two cities (440100 广州, 440300 深圳),
each a whole suite with its own RabbitMQ node (infra/sites.py), database prefix, buckets, api ports
and var/ folder, linked only through their brokers (infra/topology.yaml `links`, infra/links.py).
The MongoDB and S3 servers are the local ones, shared, each site in databases and buckets of its own.

    python -m infra.multisite up | down | status | env <region>

`env <region>` prints the settings of one site (`eval $(python -m infra.multisite env 440300)` and
tools/client.py talks to that site).
"""
import json
import os
import subprocess
import sys
import time

from infra import links, sites, topology
from services.common.config import ROOT, process_environment, settings
from services.common.registry import NAMES

REGIONS = ("440000", "440100", "440300")
VHOST = "onething"
# the province runs desks for the items its departments implement; each city for all of its own
PROVINCE_DESKS = ("scjg", "gaj", "wsjk", "ybj")


def _index(region):
    try:
        return REGIONS.index(region)
    except ValueError:
        raise SystemExit(f"{region!r} is not a site here: {', '.join(REGIONS)}") from None


def _offset():
    return settings().sites_port_offset


def node(region) -> sites.Site:
    """The site's own RabbitMQ node: AMQP 5701/5702/5703, distribution 25701…, management 15701…,
    Prometheus 15711… (each plus ONETHING_SITES_PORT_OFFSET), its files under var/sites/<region>."""
    i, off = _index(region), _offset()
    return sites.Site(region, amqp_port=5701 + i + off, dist_port=25701 + i + off,
                      management_port=15701 + i + off, prometheus_port=15711 + i + off,
                      base_dir=os.path.join(settings().var_dir, "sites", region, "broker"),
                      node=f"onething-{region}" + (f"-{off}" if off else "") + "@localhost")


def api_ports(region):
    """{service: port}: 20151… for the province, 20251… and 20351… for the cities (plus the offset),
    below Linux's ephemeral range (32768–60999): a port there may be taken at any moment as the local
    end of one of the hundred processes' own connections, and an api then cannot bind it."""
    i = _index(region)
    return {name: 20151 + 100 * i + j + _offset() for j, name in enumerate(NAMES)}


def desks_of(region):
    if region == "440000":
        return [(d, region) for d in PROVINCE_DESKS]
    return topology.default_desks(region)


def site_env(region):
    """The settings a site's processes run with."""
    base = settings()
    env = {
        "ONETHING_REGION": region,
        "ONETHING_AMQP_URI": node(region).amqp_uri(VHOST),
        "ONETHING_DB_PREFIX": f"{base.db_prefix}s{region}_",
        "ONETHING_BUCKET_PREFIX": f"{base.bucket_prefix}s{region}-",
        "ONETHING_VAR_DIR": os.path.join(base.var_dir, "sites", region),
        "ONETHING_INFRA_DIR": base.infra_dir,
        "ONETHING_DESKS": ",".join(f"{d}:{r}" for d, r in desks_of(region)),
    }
    if region != "440000":  # a city takes the province's package versions (services/catalog)
        env["ONETHING_CATALOG_UPSTREAM"] = "440000"
    for service, port in api_ports(region).items():
        env[f"ONETHING_{service.upper()}_PORT"] = str(port)
    return env


def _with_site(region):
    return process_environment(site_env(region))


def configure_brokers():
    """Each site's topology on its node, with its ends of the links between the sites."""
    link_users = [links.link_user(s, r) for s, r in _pairs()]
    secret = topology.passwords(link_users)
    for region in REGIONS:
        uris = {other: node(other).amqp_uri("/", links.link_user(region, other),
                                            secret[links.link_user(region, other)]).rsplit("/", 1)[0]
                for sending, other in topology.links_of(region) if sending == region}
        defs = topology.definitions(region, vhost=VHOST, desks=desks_of(region), link_uris=uris)
        # the local administrator (tools, tests) may do anything in the site's vhost
        defs["permissions"].append({"user": "guest", "vhost": VHOST, "configure": ".*", "write": ".*", "read": ".*"})
        links.apply(node(region), defs)


def _pairs():
    found = []
    for region in REGIONS:
        for pair in topology.links_of(region):
            if pair not in found:
                found.append(pair)
    return found


def up():
    started = time.time()
    from infra import local
    local.up()  # the shared MongoDB and S3 servers (and the machine's own broker, untouched otherwise)
    for region in REGIONS:
        took = sites.start(node(region))
        print(f"site {region}: broker node {node(region).node} on port {node(region).amqp_port} ({took:.1f} s)")
    configure_brokers()
    for region in REGIONS:
        done = subprocess.run([sys.executable, "-m", "infra.suite", "up"], env=_with_site(region), cwd=ROOT)
        if done.returncode != 0:
            raise SystemExit(f"site {region} did not come up; see {site_env(region)['ONETHING_VAR_DIR']}/log")
        print(f"site {region}: apis on {', '.join(f'{n}:{p}' for n, p in api_ports(region).items())}")
    print(f"three sites up in {time.time() - started:.0f} s")


def down():
    for region in REGIONS:
        subprocess.run([sys.executable, "-m", "infra.suite", "down"], env=_with_site(region), cwd=ROOT)
    for region in REGIONS:
        try:
            sites.stop(node(region))
        except sites.SiteError as exc:
            print(f"site {region}: {exc}")


def status():
    for region in REGIONS:
        print(f"site {region}: {json.dumps(sites.status(node(region)), ensure_ascii=False)}")
        subprocess.run([sys.executable, "-m", "infra.suite", "status"], env=_with_site(region), cwd=ROOT)


def main(argv):
    command = argv[0] if argv else "status"
    if command == "env":
        for key, value in site_env(argv[1] if len(argv) > 1 else "440100").items():
            print(f"export {key}='{value}'")
        return
    {"up": up, "down": down, "status": status}[command]()


if __name__ == "__main__":
    main(sys.argv[1:])
