"""A nameko service for services/common/tests/test_ops_integration.py, run with `nameko run` (eventlet's
monkey patch, as every worker): its ops endpoint, a handler on the shared failure rules and inbox, and
a scrape-time collector that waits (green) while the test holds it, standing for a slow scrape."""
import time

import mongoengine
from nameko.extensions import DependencyProvider
from prometheus_client import REGISTRY

from services.common import ops
from services.common.worker import Inbox, event_handler

DB = "ops_probe"
SOURCE = "ops_src"


def db():
    return mongoengine.get_db(DB)


class HeldScrape:
    """Collects nothing, after waiting as long as the document `holds/scrape` exists."""

    def collect(self):
        while db().holds.find_one({"_id": "scrape"}) is not None:
            time.sleep(0.05)  # green under the patch: the hub runs the handlers meanwhile
        return []


class OpsEndpoint(DependencyProvider):
    """What the lead's Tracing does through telemetry.setup, started here directly: the endpoint of
    a worker of a service the registry does not know (so its dependencies are named)."""

    def setup(self):
        ops.start("ops_probe-worker", "ops_probe", "worker", dependencies=("mongo", "amqp"))
        REGISTRY.register(HeldScrape())


class OpsProbe:
    name = "ops_probe"
    endpoint = OpsEndpoint()
    inbox = Inbox(DB)

    @event_handler(SOURCE, "counted")
    def on_counted(self, payload):
        db().handled.insert_one({"n": payload["n"]})
