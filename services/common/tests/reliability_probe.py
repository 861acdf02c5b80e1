"""A nameko service for the reliability tests, run with `nameko run` by them: handlers that fail
the way real ones do (a bug until someone fixes it, an outage that passes), on the shared
failure rules, inbox and outbox sweep."""
import mongoengine
from nameko.timer import timer
from pymongo import ReturnDocument

from services.common import mongo
from services.common.worker import SWEEP_SECONDS, Inbox, Tracing, event_handler

DB = "reliability"


def db():
    return mongoengine.get_db(DB)


class ProbeDoc(mongoengine.Document):
    """An aggregate with an outbox, written by the test process."""
    meta = {"db_alias": DB, "collection": "aggregates", "indexes": ["outbox.next_at"]}
    key = mongoengine.StringField(primary_key=True)
    outbox = mongoengine.ListField(mongoengine.DictField())


class _Bus:
    def __init__(self):
        from services.common.bus import Bus
        self.bus = Bus("probe_src")


class ReliabilityProbe:
    name = "reliability_probe"
    tracing = Tracing()
    inbox = Inbox(DB)

    @event_handler("probe_src", "poison")
    def on_poison(self, payload):
        if db().switches.find_one({"_id": "fixed"}) is None:
            raise ValueError(f"cannot handle message {payload['n']}")
        db().handled.insert_one({"kind": "poison", "n": payload["n"]})

    @event_handler("probe_src", "flaky")
    def on_flaky(self, payload):
        tries = db().tries.find_one_and_update({"_id": payload["n"]}, {"$inc": {"count": 1}}, upsert=True,
                                               return_document=ReturnDocument.AFTER)
        if tries and tries["count"] <= payload["outages"]:
            raise ConnectionError("the store is away (simulated)")
        db().handled.insert_one({"kind": "flaky", "n": payload["n"]})

    @event_handler("probe_src", "counted")
    def on_counted(self, payload):
        db().handled.insert_one({"kind": "counted", "n": payload["n"]})

    @timer(interval=SWEEP_SECONDS)
    def sweep_outbox(self):
        if not hasattr(self, "_bus"):
            ReliabilityProbe._bus = _Bus().bus
        mongo.sweep_outbox(ProbeDoc, self._bus)
