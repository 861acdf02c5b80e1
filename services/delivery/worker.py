"""delivery worker role (`nameko run`): dispatches the results of approved cases."""
from nameko.rpc import RpcProxy
from nameko.timer import timer

from onething.joint_review.v1 import events_pb2 as review_events
from services.common import mongo
from services.common.events import from_payload
from services.common.worker import Component, Tracing, event_handler
from services.delivery.store import DeliveryDoc
from services.delivery.wiring import build_delivery


class DeliveryWorker:
    name = "delivery"
    tracing = Tracing()
    delivery = Component(build_delivery)
    elicense = RpcProxy("elicense")

    @event_handler("joint_review", "case_concluded")
    def on_case_concluded(self, payload):
        self.delivery.on_case_concluded(from_payload(review_events.CaseConcluded, payload), self.elicense.get_license)

    @timer(interval=5)
    def sweep_outbox(self):
        mongo.sweep_outbox(DeliveryDoc, self.delivery.bus)
