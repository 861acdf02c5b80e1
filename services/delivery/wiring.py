"""Builds delivery's handlers from its adapters, in one place, for both roles."""
import datetime

from services.common import mongo
from services.common.audit import MongoAuditLog
from services.common.blobs import Blobs
from services.common.bus import Bus
from services.common.config import settings
from services.delivery.handlers import Delivery
from services.delivery.store import DeliveryStore


def build_delivery(bus=None):
    mongo.connect("delivery")
    s = settings()
    return Delivery(DeliveryStore(), Blobs(), bus or Bus("delivery"), audit=MongoAuditLog("delivery"),
                    pickup_max_attempts=s.pickup_max_attempts,
                    pickup_lock=datetime.timedelta(minutes=s.pickup_lock_minutes))
