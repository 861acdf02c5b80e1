"""elicense worker role (`nameko run`): issues licences for approved items; keeps the key directory
(the signing keys other sites publish, `signing_key_published`) and publishes this site's own keys
once when it starts; answers other services' licence look-ups over the bus (nameko RPC); its outbox
sweeper publishes what a crash or a broker outage left pending. Events are decoded here, once, into
domain values (services.elicense.codec); the look-up answers the licence as elicense keeps it."""
import logging

from nameko.extensions import DependencyProvider

from onething.elicense.v1 import events_pb2 as licence_events
from onething.joint_review.v1 import events_pb2 as review_events
from services.common.config import refuse_defaults_in_production
from services.common.events import from_payload
from services.common.worker import Component, Inbox, OutboxSweeper, Tracing, component_of, event_handler, rpc
from services.elicense import codec
from services.elicense.wiring import build_elicense

refuse_defaults_in_production("worker")  # ONETHING_PROFILE=production: no default credentials or keys


def issues_a_licence(payload):
    """Whether an opinion_recorded makes elicense do anything (ElicenseHandlers.on_opinion): only an
    approved item whose result is a licence does."""
    return codec.opinion_of(from_payload(review_events.OpinionRecorded, payload)).issues_a_licence


class EventSite(DependencyProvider):
    """The site (its region code) that produced the event being handled: the `site` header of the
    event's envelope (services/common/bus.py); "" for an event without one."""

    def get_dependency(self, worker_ctx):
        site = (worker_ctx.context_data or {}).get("site")
        return site if isinstance(site, str) else ""


class KeyAnnouncement(DependencyProvider):
    """Once when the worker starts: publishes every signing key this site holds
    (Elicense.announce_keys, through the keys' outboxes), so that sites which joined later, or
    missed an announcement, learn them. `component` names the worker's Component holding the
    handlers. When the store is away at start-up it tries again (1, 2, 4 … 60 s) until it could."""

    def __init__(self, component, first_pause=1.0, longest_pause=60.0):
        self.component = component
        self.first_pause, self.longest_pause = first_pause, longest_pause
        self.done = False

    def start(self):
        self.container.spawn_managed_thread(self._run, identifier=f"{self.container.service_name}.key_announcement")

    def get_dependency(self, worker_ctx):
        return self

    def _handlers(self):
        return component_of(self.container, self.component)

    def announce_once(self):
        """Announce now: the number of events added to the keys' outboxes."""
        added = self._handlers().announce_keys()
        self.done = True
        return added

    def _run(self):
        self.wait_until_consuming()
        self.announce_until_done()

    def wait_until_consuming(self):
        """Wait until the worker's event handlers consume (their queues declared and bound), so that
        on a fresh broker the keys announced reach this worker's own handler too instead of being
        refused as unroutable and left for the sweep."""
        for entrypoint in self.container.entrypoints:
            consumer = getattr(entrypoint, "queue_consumer", None)
            if consumer is not None:
                consumer.start()  # nameko's QueueConsumer starts once; started, it waits until it consumes
                return

    def announce_until_done(self):
        import eventlet
        log = logging.getLogger(self.container.service_name)
        pause = self.first_pause
        while True:
            try:
                added = self.announce_once()
            except Exception as exc:  # the store away at start-up: try again
                log.warning("signing keys not announced yet (%s: %s); trying again in %gs", type(exc).__name__,
                            exc, pause)
                eventlet.sleep(pause)
                pause = min(pause * 2, self.longest_pause)
                continue
            log.info("announced this site's signing keys (%d event(s))", added)
            return


class ElicenseWorker:
    name = "elicense"
    tracing = Tracing()
    inbox = Inbox("elicense")
    site = EventSite()
    elicense = Component(build_elicense)
    sweeper = OutboxSweeper("elicense")  # sweeps elicense.store
    key_announcement = KeyAnnouncement("elicense")

    # most opinions issue nothing (a rejection, an item whose result is no licence): acknowledged
    # without a look at the inbox
    @event_handler("joint_review", "opinion_recorded", relevant=issues_a_licence)
    def on_opinion_recorded(self, payload):
        self.elicense.on_opinion(codec.opinion_of(from_payload(review_events.OpinionRecorded, payload)))

    @event_handler("joint_review", "session_withdrawn")
    def on_session_withdrawn(self, payload):
        self.elicense.on_session_withdrawn(codec.withdrawal_of(from_payload(review_events.SessionWithdrawn, payload)))

    # every site's keys (codec.key_routing_key): this site's own come back here too, and are ignored
    @event_handler("elicense", "signing_key_published.*", other_sites=True)
    def on_signing_key_published(self, payload):
        key = codec.published_key_of(from_payload(licence_events.SigningKeyPublished, payload))
        self.elicense.on_signing_key_published(key, sent_from=self.site)

    @rpc
    def get_license(self, license_id):
        return codec.licence_to_stored(self.elicense.find(license_id))
