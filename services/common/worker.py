"""nameko plumbing for the worker role: a tracing dependency that continues the trace carried in
the AMQP headers, and a dependency that builds the service's handlers once per process."""
import contextlib
import logging
import threading
import time
import traceback
from typing import Any

from nameko import events as nameko_events
from nameko import messaging as nameko_messaging
from nameko import rpc as nameko_rpc
from nameko.extensions import DependencyProvider

from services.common import telemetry, write_behind


class Tracing(DependencyProvider):
    """One consumer span per handled event, child of the publisher's span."""

    def setup(self):
        telemetry.setup(f"{self.container.service_name}-worker")

    def worker_setup(self, worker_ctx):
        data = worker_ctx.context_data or {}
        if "traceparent" not in data:  # timers and calls from outside a trace
            return
        entrypoint = worker_ctx.entrypoint
        exchange, routing_key, queue = _destination(entrypoint)
        routing_key = data.get("routing_key") if isinstance(data.get("routing_key"), str) else routing_key
        span, parent = telemetry.consumer_span(data, f"process {exchange}", exchange, routing_key, queue)
        span.set_attribute("code.function.name", f"{worker_ctx.service_name}.{entrypoint.method_name}")
        token = telemetry.attach(telemetry.trace.set_span_in_context(span, parent))
        worker_ctx.__dict__["_otel"] = (span, token)

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        if exc_info is not None:
            from services.common.outages import is_outage
            case_no = (worker_ctx.context_data or {}).get("case_no", "-")
            if is_outage(exc_info[1]):  # expected now and then: one line, no traceback
                logging.getLogger(worker_ctx.service_name).warning(
                    "%s hit an outage (case %s): %s: %s", worker_ctx.entrypoint.method_name, case_no,
                    type(exc_info[1]).__name__, exc_info[1])
            else:
                logging.getLogger(worker_ctx.service_name).error(
                    "%s failed (case %s)", worker_ctx.entrypoint.method_name, case_no, exc_info=exc_info)
        span, _ = worker_ctx.__dict__.get("_otel", (None, None))
        if span is not None and exc_info is not None:
            span.record_exception(exc_info[1])
            span.set_status(telemetry.trace.Status(telemetry.trace.StatusCode.ERROR, str(exc_info[1])))

    def worker_teardown(self, worker_ctx):
        span, token = worker_ctx.__dict__.pop("_otel", (None, None))
        if span is not None:
            span.end()
            telemetry.detach(token)


def _destination(entrypoint):
    """(exchange, routing key, queue) an entrypoint consumes: an event handler's source exchange
    and event type, or a queue consumer's binding."""
    queue = getattr(entrypoint, "queue", None)
    queue_name = getattr(queue, "name", "") or ""
    if getattr(entrypoint, "source_service", None):
        return f"{entrypoint.source_service}.events", entrypoint.event_type, queue_name
    exchange = getattr(getattr(queue, "exchange", None), "name", "") or ""
    return exchange, getattr(queue, "routing_key", "") or "", queue_name


class Component(DependencyProvider):
    """Builds the service's handlers with `factory()` when the container starts and hands the
    same object to every worker."""

    def __init__(self, factory):
        self.factory = factory
        self.instance = None

    def setup(self):
        self.instance = self.factory()

    def stop(self):
        # `release_resources`, not `close`: a domain may well have a use case called close (差评)
        release = getattr(self.instance, "release_resources", None)
        if release:
            release()
        write_behind.flush()  # outbox clean-ups still waiting

    def get_dependency(self, worker_ctx):
        return self.instance


class _InboxView:
    def __init__(self, collection, worker_ctx):
        self._coll = collection
        data = worker_ctx.context_data or {}
        self.event_id = data.get("event_id") if isinstance(data.get("event_id"), str) else ""
        self.service, self.handler = worker_ctx.service_name, worker_ctx.entrypoint.method_name
        self.key = f"{self.service}.{self.handler}:{self.event_id}"

    def seen(self):
        """True when this handler has processed this event id before (counted as a duplicate): its
        record is in the inbox, or still waiting in this process's write-behind."""
        found = bool(self.event_id) and (write_behind.default().holds(self._coll, self.key) or
                                         self._coll.find_one({"_id": self.key}) is not None)
        if found:
            from services.common import ops
            ops.INBOX_DUPLICATES.labels(self.service, self.handler).inc()
        return found

    def record(self):
        """Remember the event as processed, in the next write-behind batch: a record lost before it
        is written (the process dies) lets a later duplicate run the handler again, as a death
        between handling and recording always did."""
        if not self.event_id:
            return
        import datetime
        write_behind.default().insert(self._coll, {"_id": self.key, "at": datetime.datetime.now(datetime.UTC)})


class Inbox(DependencyProvider):
    """The ids of the events this service's handlers have processed (collection `inbox` of the
    service's own database, one document per handler and event id), so a redelivered or
    federated duplicate changes nothing. Entries expire after `INBOX_DAYS`."""

    INBOX_DAYS = 30

    def __init__(self, database):
        self.database = database
        self.collection = None

    def setup(self):
        import mongoengine

        from services.common import mongo
        mongo.connect(self.database)
        self.collection = mongoengine.get_db(self.database)["inbox"]
        try:
            self.collection.create_index("at", expireAfterSeconds=self.INBOX_DAYS * 86400)
        except Exception:  # the store is away at start-up: the index is made on a later start
            logging.getLogger(__name__).warning("inbox index of %s not created", self.database, exc_info=True)

    def get_dependency(self, worker_ctx):
        return _InboxView(self.collection, worker_ctx)

    def stop(self):
        write_behind.flush()  # the records still waiting, before the process goes


DEAD_LETTER_EXCHANGE = "onething.dead_letters"
DEAD_LETTER_QUEUE = "onething.dead_letters"
_DROP_HEADERS = ("x-death", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason",
                 "x-last-death-exchange", "x-last-death-queue", "x-last-death-reason")


def dead_letter_entities():
    from kombu import Exchange, Queue
    exchange = Exchange(DEAD_LETTER_EXCHANGE, type="topic", durable=True, auto_delete=False)
    return exchange, Queue(DEAD_LETTER_QUEUE, exchange=exchange, routing_key="#", durable=True, auto_delete=False)


def retry_queue(queue_name):
    """Where a failed message waits out its backoff: it expires back into `queue_name`."""
    from kombu import Queue
    return Queue(f"{queue_name}.retry", durable=True, auto_delete=False,
                 queue_arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": queue_name})


class FailureRules:
    """The failure rules every worker follows, for a nameko consumer entrypoint (an event handler or
    a plain queue consumer):
    - success, or a domain refusal the handler absorbed: acknowledged;
    - an outage (store, S3 or broker away, a call that timed out): retried after a growing pause,
      never counted against the message;
    - any other error: retried after a growing pause and counted; after `max_handler_attempts`
      the message goes to the dead-letter queue with its error, for `tools/dead_letters.py` to show
      and replay.
    The retry is a copy of the message in `<queue>.retry` that expires back into the queue, so the
    count travels with the message; the original is acknowledged only after the copy is confirmed.
    If even that fails (the broker is away), the message is requeued as it is.
    Each message a handler finishes is counted by outcome (onething_handler_messages_total: ok,
    outage, failed, dead_lettered) and timed from its arrival (onething_handler_seconds); a message
    sent to the dead-letter queue also counts in onething_dead_lettered_total."""

    # what the nameko entrypoint it is mixed into provides (annotations only: nothing is shadowed)
    queue: Any
    queue_consumer: Any
    container: Any
    method_name: Any

    ARRIVED = "_onething_arrived"  # where a message keeps the moment it reached the entrypoint

    def setup(self):
        super().setup()  # type: ignore[misc]
        # every outcome's series exists from the start at 0, so rate() sees a process's first failure
        from services.common import ops
        for outcome in ("ok", "outage", "failed", "dead_lettered"):
            ops.HANDLER_MESSAGES.labels(self.container.service_name, self.method_name, outcome)

    def handle_message(self, body, message):
        kept = getattr(message, "__dict__", None)  # kombu's messages have one
        if kept is not None:
            kept[self.ARRIVED] = time.monotonic()
        return super().handle_message(body, message)  # type: ignore[misc]

    def handle_message_processed(self, message, result=None, exc_info=None):
        finished = time.monotonic()
        outcome = "ok"
        try:
            if exc_info is None:
                self.queue_consumer.ack_message(message)
                return
            try:
                outcome = self._after_failure(message, exc_info)
            except Exception:
                from services.common.outages import is_outage
                outcome = "outage" if is_outage(exc_info[1]) else "failed"
                logging.getLogger(__name__).warning("could not schedule a retry of %s; requeued", self.queue.name,
                                                    exc_info=True)
                time.sleep(1.0)  # green under eventlet
                self.queue_consumer.requeue_message(message)
                return
            self.queue_consumer.ack_message(message)
        finally:
            self._measure(message, outcome, finished)

    def _measure(self, message, outcome, finished):
        from services.common import ops
        service, handler = self.container.service_name, self.method_name
        ops.HANDLER_MESSAGES.labels(service, handler, outcome).inc()
        arrived = getattr(message, "__dict__", {}).pop(self.ARRIVED, None)
        if arrived is not None:
            ops.HANDLER_SECONDS.labels(service, handler).observe(finished - arrived)

    def _after_failure(self, message, exc_info):
        """Schedule the retry or send the message to the dead-letter queue; returns the outcome
        (outage, failed or dead_lettered)."""
        from nameko.amqp.publish import Publisher

        from services.common.config import settings
        from services.common.outages import is_outage
        s = settings()
        exc = exc_info[1]
        headers = {k: v for k, v in (message.headers or {}).items() if k not in _DROP_HEADERS}
        outage = is_outage(exc)
        attempts = int(headers.get("x-onething-attempts", 0)) + (0 if outage else 1)
        retries = int(headers.get("x-onething-retries", 0)) + 1
        headers.update({"x-onething-attempts": attempts, "x-onething-retries": retries,
                        "x-onething-error": f"{type(exc).__name__}: {exc}"[:500]})
        publisher = Publisher(self.container.config["AMQP_URI"], use_confirms=True, mandatory=True,
                              delivery_mode=2)
        props = {"content_type": message.content_type, "content_encoding": message.content_encoding,
                 "message_id": message.properties.get("message_id") or headers.get("event_id")}
        sender = (message.properties or {}).get("user_id")
        own = broker_login(self.container.config["AMQP_URI"])
        if sender and own:
            # the copy is this worker's to send, so the broker takes only its own login as user_id:
            # the sender it vouched for travels in a header that counts only beside that login
            # (ReliableConsumer), and the copy's inbox key stays the original's
            if sender != own or "x-onething-sender" not in headers:
                headers["x-onething-sender"] = sender
            props["user_id"] = own
        log = logging.getLogger(self.container.service_name)
        if attempts >= s.max_handler_attempts:
            exchange, queue = dead_letter_entities()
            headers.update({
                "x-onething-original-queue": self.queue.name,
                "x-onething-original-exchange": message.delivery_info.get("exchange", ""),
                "x-onething-original-routing-key": message.delivery_info.get("routing_key", ""),
                "x-onething-failed-at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "x-onething-traceback": "".join(traceback.format_exception(*exc_info))[-2000:],
            })
            publisher.publish(message.body, exchange=exchange, routing_key=self.queue.name, headers=headers,
                              declare=[exchange, queue], **props)
            log.error("%s gave up after %d attempts: message to %s (case %s): %s", self.queue.name, attempts,
                      DEAD_LETTER_QUEUE, headers.get("case_no", "-"), headers["x-onething-error"])
            from services.common import ops
            ops.DEAD_LETTERED.labels(self.container.service_name, self.queue.name).inc()
            return "dead_lettered"
        delay = min(s.retry_base_seconds * 2 ** (retries - 1), s.retry_max_seconds)
        queue = retry_queue(self.queue.name)
        publisher.publish(message.body, exchange="", routing_key=queue.name, headers=headers,
                          declare=[queue], expiration=delay, **props)
        log.warning("%s will retry in %.1f s (%s, attempt %d of %d, case %s)", self.queue.name, delay,
                    "outage" if outage else "failure", attempts, s.max_handler_attempts,
                    headers.get("case_no", "-"))
        return "outage" if outage else "failed"


class ReliableEventHandler(FailureRules, nameko_events.EventHandler):
    """nameko's event handler with the failure rules (FailureRules). An event another site produced
    (its `site` header names another region: it came over a link between sites) reaches only the
    handlers that say they take one (`other_sites=True`: the key directory, the province's roll-up, a
    city's package versions); any other handler acknowledges it untouched, so a service that knows
    nothing of sites never acts on another site's case."""

    def __init__(self, *args, other_sites=False, **kwargs):
        self.other_sites = other_sites
        self.site = ""
        super().__init__(*args, **kwargs)

    def setup(self):
        from services.common.config import settings
        self.site = settings().region
        super().setup()

    def unpack_message_headers(self, message):
        data = super().unpack_message_headers(message)
        data["routing_key"] = (getattr(message, "delivery_info", None) or {}).get("routing_key", "")  # the span's
        return data

    def handle_message(self, body, message):
        site = (message.headers or {}).get("site")
        if not self.other_sites and isinstance(site, str) and site and site != self.site:
            logging.getLogger(self.container.service_name).debug(
                "%s event from site %s (case %s): not this site's", self.event_type, site,
                (message.headers or {}).get("case_no", "-"))
            self.queue_consumer.ack_message(message)
            return None
        return super().handle_message(body, message)


class ReliableConsumer(FailureRules, nameko_messaging.Consumer):
    """nameko's consumer of one named queue (a message another party publishes to an exchange of its
    own, not a nameko event) with the failure rules (FailureRules). The worker's context takes the
    message's AMQP properties the broker vouches for, never headers of the same name, which the
    sender writes as it likes: `user_id` (the broker refuses a message whose user_id is not the
    sender's login) and `event_id`, the inbox key `<user_id>/<message_id>`, so one sender's message
    ids never stand in for another's. A retry copy the worker made itself (FailureRules) carries the
    worker's own login as user_id and the original sender in `x-onething-sender`, which is believed
    only beside that login: a desk cannot send as the worker, so it cannot name another sender."""

    def setup(self):
        super().setup()
        self.own_login = broker_login(self.container.config["AMQP_URI"])

    def unpack_message_headers(self, message):
        data = {k: v for k, v in super().unpack_message_headers(message).items()
                if k not in ("user_id", "event_id", "x-onething-sender")}
        properties = message.properties or {}
        user_id, message_id = properties.get("user_id") or "", properties.get("message_id") or ""
        kept = (message.headers or {}).get("x-onething-sender")
        if user_id and user_id == getattr(self, "own_login", "") and isinstance(kept, str) and kept:
            # a retry copy this worker sent (FailureRules): the broker checked its user_id, the
            # worker's own login, and the header keeps the sender the broker checked the first time
            user_id = kept
        data["user_id"] = user_id
        data["event_id"] = f"{user_id}/{message_id}" if message_id else ""
        data["message_id"] = message_id  # as sent: the messaging span's message id
        data["routing_key"] = (getattr(message, "delivery_info", None) or {}).get("routing_key", "")
        return data


def broker_login(amqp_uri):
    """The login an AMQP URI connects with ("" when it names none)."""
    from urllib.parse import unquote, urlsplit
    try:
        return unquote(urlsplit(amqp_uri).username or "")
    except ValueError:
        return ""


class Sender(DependencyProvider):
    """The broker user who sent the message a ReliableConsumer is handling (its validated user_id);
    "" for any other entrypoint or a message without one."""

    def get_dependency(self, worker_ctx):
        if not isinstance(worker_ctx.entrypoint, ReliableConsumer):
            return ""
        user_id = (worker_ctx.context_data or {}).get("user_id")
        return user_id if isinstance(user_id, str) else ""


class CaseTurns:
    """One case at a time in a process: the handlers of messages about the same case take turns,
    while those of other cases go on. Without it the messages that arrive together for one case
    (the desks' opinions, the tasks of a session just opened) were handled side by side, each read
    the same version of the aggregate, all but one lost the version check on saving and read,
    decided and tried again: about a third of the suite's aggregate writes were such losers. Other
    processes (a second replica) still meet the version check, as before."""

    def __init__(self):
        self._turns: dict = {}  # key -> [lock, handlers holding or waiting for it]

    def _guard(self):
        # made at first use, not at import: nameko's green threads need the locks eventlet's
        # patching makes, and a worker module may be imported before the patching
        return self.__dict__.get("_guard_lock") or self.__dict__.setdefault("_guard_lock", threading.Lock())

    @contextlib.contextmanager
    def of(self, key):
        if not key:
            yield
            return
        with self._guard():
            turn = self._turns.setdefault(key, [threading.Lock(), 0])
            turn[1] += 1
        try:
            with turn[0]:
                yield
        finally:
            with self._guard():
                turn[1] -= 1
                if not turn[1]:
                    del self._turns[key]

    def waiting(self):
        """How many cases have a handler holding or waiting for their turn (for tests)."""
        with self._guard():
            return len(self._turns)


CASE_TURNS = CaseTurns()


def _handled(what, method, relevant=None):
    """`method` with the rules every handler follows: a domain error (the message asks for something
    that can no longer happen: a decided task, a concluded case, or is refused) is logged and the
    message acknowledged, since trying again would change nothing; where the service declares an
    `inbox`, a message id it has processed before is skipped; messages about the same case take
    turns (CaseTurns). `relevant(payload)` False: a message the handler does nothing with, which is
    acknowledged at once, without the inbox (a copy of it would do nothing either)."""
    import functools

    from services.common.errors import DomainError

    @functools.wraps(method)
    def run(self, payload):
        if relevant is not None and not relevant(payload):
            return None
        case_no = payload.get("case_no") if isinstance(payload, dict) else None
        service = getattr(type(self), "name", type(self).__name__)  # the handling service, not the source
        with CASE_TURNS.of((service, case_no) if isinstance(case_no, str) and case_no else None):
            inbox = getattr(self, "inbox", None)
            if isinstance(inbox, _InboxView) and inbox.seen():
                logging.getLogger(what[0]).info("%s %s already processed: skipped", what[1], inbox.event_id)
                return None
            result = None
            try:
                result = method(self, payload)
            except DomainError as exc:
                logging.getLogger(what[0]).warning("%s for case %s not applied: %s", what[1], case_no or "-", exc)
            if isinstance(inbox, _InboxView):
                inbox.record()
            return result
    return run


def event_handler(source_service, event_type, other_sites=False, relevant=None):
    """The event handler every worker uses (see FailureRules for what happens on failure, _handled
    for domain errors, the inbox and `relevant`, ReliableEventHandler for events of other sites)."""
    def decorate(method):
        run = _handled((source_service, f"{event_type} event"), method, relevant)
        return ReliableEventHandler.decorator(source_service, event_type, requeue_on_error=True,
                                              other_sites=other_sites)(run)

    return decorate


def consumer(queue):
    """A handler of the messages of `queue` (a kombu Queue with its exchange and binding), with the
    same rules as event_handler; the sender is the service's Sender dependency."""
    def decorate(method):
        run = _handled((queue.name, "message"), method)  # logged as the queue's
        return ReliableConsumer.decorator(queue, requeue_on_error=True)(run)

    return decorate


def with_timeout(call, seconds=None):
    """`call` bounded in time (green: the worker's other threads go on meanwhile); a call that
    takes longer raises CallTimedOut, which the failure rules treat as an outage."""
    import eventlet

    from services.common.config import settings
    limit = settings().rpc_timeout_seconds if seconds is None else seconds

    def bounded(*args, **kwargs):
        # eventlet's own Timeout is a BaseException that nameko would not catch: raise an
        # ordinary TimeoutError (an outage to the failure rules) instead
        with eventlet.Timeout(limit, CallTimedOut(f"no answer within {limit:g} s")):
            return call(*args, **kwargs)
    return bounded


class CallTimedOut(TimeoutError):
    """A bus call (nameko RPC) that did not answer in time."""


def _sweep_seconds():
    from services.common.config import settings
    return settings().sweep_interval_seconds


# how often each worker's outbox sweep runs (ONETHING_SWEEP_INTERVAL_SECONDS)
SWEEP_SECONDS = _sweep_seconds()


class OutboxSweeper(DependencyProvider):
    """The one outbox sweep of a worker: every ONETHING_SWEEP_INTERVAL_SECONDS it asks the service's
    store (`store_of(handlers)`, by default `handlers.store`) to publish what a process that died or
    a broker outage left pending (services.common.mongo.OutboxStore.sweep). `component` names the
    worker's Component attribute that holds the handlers.

    A sweep that fails is logged every time: one line for an outage (the broker or the store away,
    expected now and then), the traceback for anything else. A sweep that failed on every run
    unseen is how events were once lost."""

    def __init__(self, component, store_of=None, interval=None):
        self.component = component
        self.store_of = store_of or (lambda handlers: handlers.store)
        self.interval = interval
        self._thread = None
        self.runs = self.failures = 0

    def start(self):
        self._thread = self.container.spawn_managed_thread(
            self._loop, identifier=f"{self.container.service_name}.outbox_sweeper")

    def stop(self):
        if self._thread is not None:
            self._thread.kill()
            self._thread = None

    kill = stop

    def get_dependency(self, worker_ctx):
        return self

    def _handlers(self):
        return component_of(self.container, self.component)

    def sweep_once(self):
        """One sweep now: the number of events published."""
        return self.store_of(self._handlers()).sweep()

    def _loop(self):
        import eventlet

        from services.common.outages import is_outage
        log = logging.getLogger(self.container.service_name)
        interval = self.interval if self.interval is not None else SWEEP_SECONDS
        while True:
            eventlet.sleep(interval)
            self.runs += 1
            try:
                sent = self.sweep_once()
            except Exception as exc:
                self.failures += 1
                if is_outage(exc):
                    log.warning("outbox sweep: %s: %s (tried again in %gs)", type(exc).__name__, exc, interval)
                else:
                    log.error("outbox sweep failed", exc_info=True)
                continue
            if sent:
                log.info("outbox sweep published %d pending event(s)", sent)


def component_of(container, name):
    """The handlers a service's Component dependency called `name` built, for a dependency provider
    that works on them outside any worker (the sweeper, elicense's key announcement)."""
    for dependency in container.dependencies:
        if getattr(dependency, "attr_name", None) == name:
            # a Component holds `instance`; nameko's replace_dependencies puts a provider holding
            # `dependency` in its place
            found = getattr(dependency, "instance", None)
            return found if found is not None else getattr(dependency, "dependency", None)
    raise LookupError(f"{container.service_name} has no component called {name!r}")


class ReliableRpc(nameko_rpc.Rpc):
    """nameko's RPC entrypoint, except that a reply the broker cannot take (it went away while the
    method ran) does not kill the container: the request stays unacknowledged, the broker gives it
    back when the connection returns, and the caller, which timed out, asks again. The methods
    served this way are look-ups, so answering twice changes nothing."""

    def handle_result(self, message, worker_ctx, result, exc_info):
        try:
            return super().handle_result(message, worker_ctx, result, exc_info)
        except Exception as exc:
            logging.getLogger(self.container.service_name).warning(
                "reply to %s not sent (%s: %s); the request is given back", self.method_name,
                type(exc).__name__, exc)
            return result, exc_info


rpc = ReliableRpc.decorator
