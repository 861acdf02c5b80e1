"""Builds delivery's handlers from its adapters, in one place, for both roles. Every adapter may be
given (tests give fakes: services.delivery.fakes.MemoryDeliveryStore, a RecordingBus, ...); what is
not given is built for real from the settings."""
import datetime

from services.common import mongo
from services.common.audit import MongoAuditLog
from services.common.blobs import Blobs
from services.common.bus import Bus
from services.common.config import settings
from services.delivery import domain
from services.delivery.handlers import Delivery
from services.delivery.store import DeliveryStore


def build_delivery(store=None, bus=None, blobs=None, clock=None, audit=None, pickup_code=None):
    """The store publishes its own events: `bus` goes to the real store when none is given (a
    given store comes with its own bus)."""
    if store is None or audit is None:
        mongo.connect("delivery")
    if store is None:
        store = DeliveryStore(bus if bus is not None else Bus("delivery"))
    s = settings()
    options = {"clock": clock} if clock is not None else {}
    return Delivery(store, blobs if blobs is not None else Blobs(),
                    pickup_code=pickup_code or domain.new_pickup_code,
                    audit=audit if audit is not None else MongoAuditLog("delivery"),
                    pickup_max_attempts=s.pickup_max_attempts,
                    pickup_lock=datetime.timedelta(minutes=s.pickup_lock_minutes), **options)
