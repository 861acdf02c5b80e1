"""Builds delivery's handlers from its adapters, in one place, for both roles."""
from services.common import mongo
from services.common.blobs import Blobs
from services.common.bus import Bus
from services.delivery.handlers import Delivery
from services.delivery.store import DeliveryStore


def build_delivery(bus=None):
    mongo.connect("delivery")
    return Delivery(DeliveryStore(), Blobs(), bus or Bus("delivery"))
