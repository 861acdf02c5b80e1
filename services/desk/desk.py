"""The reference desk of a department (protos/asyncapi/desk.yaml): one process per department and
region, talking to the platform only through the broker, as the department's own broker user.

It consumes its durable queue `desk.<department>.<region>` (which the site's topology declares and
binds; the desk declares nothing, it only checks that the queue is there), decides each task by its
rule (services/desk/rules.py) or leaves it to an officer, and publishes its opinion to the exchange
`desk.opinions` with the routing key `opinion.<department>.<region>.<site>`, persistent, mandatory,
with the AMQP user_id of its login (the broker refuses any other) and a message id that is the same
for the same task and round. A task is acknowledged only once the broker has confirmed its opinion
(publisher confirms), so a desk that dies in between decides it again and joint_review, which keeps
the ids it has recorded, records it once. Plain kombu: no nameko, no eventlet, no database, no S3.
"""
import datetime
import logging
import threading
import time
from typing import Any
from urllib.parse import unquote, urlparse

from amqp.exceptions import AMQPError
from google.protobuf import json_format
from kombu import Connection, Consumer, Producer, Queue
from kombu.exceptions import KombuError

from onething.joint_review.v1 import events_pb2
from services.common import logs, telemetry
from services.common.events import from_payload, to_payload
from services.common.registry import DESK_EXCHANGE, desk_broker_user, desk_queue, opinion_routing_key
from services.desk import metrics as desk_metrics
from services.desk import rules

log = logging.getLogger("services.desk")
SCHEMA_VERSION = "1"


class QueueMissing(Exception):
    """The desk's queue is not on the broker: the site's topology has not been applied."""


class Unroutable(Exception):
    """The broker took an opinion that no queue is bound for (joint_review's queue for that site)."""


def broker_login(amqp_uri):
    """The user name an AMQP URI logs in with (what the broker checks a message's user_id against)."""
    return unquote(urlparse(amqp_uri).username or "guest")


def login_problem(department, region, amqp_uri):
    """Why a desk with this login would not be heard ("" when none): joint_review records an opinion
    only from the broker user of the department and region that own the task."""
    login, own = broker_login(amqp_uri), desk_broker_user(department, region)
    if login != own:
        return (f"ONETHING_AMQP_URI logs in as {login!r}; the desk of {department} in {region} must log in as "
                f"{own!r}, the only user whose opinions joint_review records for that desk")
    return ""


class Desk:
    """The desk of `department` in `region`, deciding by `book` (a rules.RuleBook)."""

    def __init__(self, department, region, book, amqp_uri, delay=0.0, timeout=5.0):
        self.department, self.region, self.book = department, region, book
        self.amqp_uri, self.delay, self.timeout = amqp_uri, delay, timeout
        self.user = broker_login(amqp_uri)
        self.queue_name = desk_queue(department, region)
        self.stopping = threading.Event()
        self.consuming = threading.Event()  # set while the desk consumes its queue
        self._conn: Any = None
        self._producer: Any = None
        self._returned: list[str] = []

    # running -------------------------------------------------------------------------------------
    def run(self):
        """Consume until stop(); a lost broker or a refused publish is tried again after a growing
        pause (the task in hand goes back to the queue with the connection)."""
        pause = 1.0
        while not self.stopping.is_set():
            try:
                self._serve()
                pause = 1.0
            except QueueMissing as exc:
                log.error("%s; waiting %.0f s", exc, pause)
            except Exception as exc:  # the broker away, a connection closed, an opinion refused, a bug
                expected = isinstance(exc, (Unroutable, OSError, AMQPError, KombuError))
                log.log(logging.WARNING if expected else logging.ERROR, "desk %s: %s: %s; connecting again in %.0f s",
                        self.user, type(exc).__name__, exc, pause, exc_info=not expected)
            finally:
                self.consuming.clear()
            self.stopping.wait(pause)
            pause = min(pause * 2, 10.0)

    def stop(self):
        self.stopping.set()

    def _serve(self):
        with Connection(self.amqp_uri, connect_timeout=self.timeout, heartbeat=30,
                        transport_options={"confirm_publish": True}) as conn:
            conn.connect()
            self._conn = conn
            tasks = conn.channel()
            try:  # passive: the desk may not declare anything, but it may see that its queue exists
                tasks.queue_declare(queue=self.queue_name, passive=True)
            except conn.channel_errors as exc:
                raise QueueMissing(f"queue {self.queue_name} is not on the broker ({exc}); the site's "
                                   "topology declares it (python -m infra.topology apply)") from None
            opinions = conn.channel()
            opinions.events["basic_return"].add(self._on_return)
            self._producer = Producer(opinions, auto_declare=False)
            queue = Queue(self.queue_name, no_declare=True)
            with Consumer(tasks, queues=[queue], callbacks=[self._on_task], accept=["json"],
                          on_decode_error=self._on_undecodable, prefetch_count=1, auto_declare=False):
                self.consuming.set()
                log.info("desk %s consuming %s", self.user, self.queue_name)
                while not self.stopping.is_set():
                    try:
                        conn.drain_events(timeout=1.0)
                    except TimeoutError:  # socket.timeout: nothing came within the second
                        conn.heartbeat_check()

    # one task ----------------------------------------------------------------------------------
    def _on_undecodable(self, message, exc):
        log.warning("desk %s: a message on %s that is not JSON left to officers: %s", self.user, self.queue_name, exc)
        message.ack()

    def _on_task(self, body, message):
        headers = dict(message.headers or {})
        info = message.delivery_info or {}
        span, parent = telemetry.consumer_span(headers, f"process {info.get('exchange') or 'joint_review.events'}",
                                               info.get("exchange", ""), info.get("routing_key", ""),
                                               self.queue_name)
        span.set_attribute("code.function.name", f"desk-{self.department}-{self.region}.on_task_assigned")
        token = telemetry.attach(telemetry.trace.set_span_in_context(span, parent))
        started = time.monotonic()
        outcome = "failed"
        try:
            outcome = self._decide(body, message, span)
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(telemetry.trace.Status(telemetry.trace.StatusCode.ERROR, str(exc)))
            raise
        finally:
            desk_metrics.TASKS.labels(self.department, self.region, outcome).inc()
            desk_metrics.DECISION_SECONDS.labels(self.department, self.region).observe(time.monotonic() - started)
            span.end()
            telemetry.detach(token)

    def _decide(self, body, message, span):
        """Decide one task: "decided" (the opinion is confirmed by the broker), "left_for_officer",
        or "failed" (stopping before the rule's time was up; the task goes back to the queue)."""
        task, why = self.task_of(body)
        if task is not None:
            telemetry.mark_case(task["case_no"], span)
        if task is None:
            log.warning("desk %s: task left to officers: %s", self.user, why)
            message.ack()
            return "left_for_officer"
        rule = self.book.rule_for(self.department, self.region, task["item_code"])
        opinion = rules.decide(rule, task)
        span.set_attribute("onething.desk.rule", rule)
        if opinion is None:
            log.info("task %s/%s left to officers (%s)", task["case_no"], task["item_code"], rule)
            message.ack()
            return "left_for_officer"
        if self.delay and not self._wait(self.delay):
            return "failed"  # stopping: the task goes back to the queue with the connection
        self.publish(task, opinion)
        message.ack()  # only now: the broker has the opinion
        log.info("task %s/%s: %s (%s)", task["case_no"], task["item_code"], opinion.decision.name, opinion.reason)
        return "decided"

    def task_of(self, body):
        """(the TaskAssigned dict, "") for a task this desk can decide on, or (None, why not)."""
        if not isinstance(body, dict):
            return None, f"the body is a {type(body).__name__}, not a TaskAssigned"
        try:
            msg = from_payload(events_pb2.TaskAssigned, body)
        except json_format.ParseError as exc:
            return None, f"not a TaskAssigned: {exc}"
        task = json_format.MessageToDict(msg, preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True)
        if not task["case_no"] or not task["item_code"]:
            return None, "a task without case_no or item_code"
        if (task["department_code"], task["region_code"]) != (self.department, self.region):
            return None, (f"task {task['case_no']}/{task['item_code']} is for {task['department_code']} in "
                          f"{task['region_code']}, not this desk")
        if not (len(task["site"]) == 6 and task["site"].isdigit()):
            return None, f"task {task['case_no']}/{task['item_code']} names no site to answer to"
        return task, ""

    def _wait(self, seconds):
        """Wait `seconds` (the rule's own time), keeping the connection alive; False if stopping."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.stopping.wait(min(left, 1.0)):
                return False
            self._conn.heartbeat_check()
        return True

    # the opinion -----------------------------------------------------------------------------------
    def opinion_message(self, task, opinion):
        return from_payload(events_pb2.DeskOpinion, {
            "case_no": task["case_no"], "item_code": task["item_code"], "department_code": self.department,
            "region_code": self.region, "round": task["round"], "decision": opinion.decision.value,
            "reason": opinion.reason})

    def publish(self, task, opinion):
        """Publish the opinion and wait for the broker's confirm: Unroutable when no queue takes it;
        a refusal (a nack, a closed channel) raises too."""
        key = opinion_routing_key(self.department, self.region, task["site"])
        message_id = rules.opinion_id(task)
        with telemetry.producer_span(DESK_EXCHANGE, key, message_id, task["case_no"]):
            headers = telemetry.inject_headers({
                "case_no": task["case_no"], "producer": self.user, "schema_version": SCHEMA_VERSION,
                "occurred_at": datetime.datetime.now(datetime.UTC).isoformat()})
            self._returned.clear()
            self._producer.publish(to_payload(self.opinion_message(task, opinion)), exchange=DESK_EXCHANGE,
                                   routing_key=key, serializer="json", delivery_mode=2, mandatory=True,
                                   headers=headers, message_id=message_id, user_id=self.user,
                                   timeout=self.timeout)
            if self._returned:  # the broker returns an unroutable message before it confirms it
                raise Unroutable(f"no queue takes {DESK_EXCHANGE}/{key}: {self._returned[-1]}")

    def _on_return(self, exc, exchange, routing_key, message):
        self._returned.append(f"{exc}")


def main():
    """`python -m services.desk`: the desk of ONETHING_DESK_DEPARTMENT in ONETHING_DESK_REGION."""
    import signal

    import yaml

    from services.common.config import refuse_defaults_in_production, settings
    refuse_defaults_in_production("desk")
    s = settings()
    department, region = s.desk_department, s.desk_region
    if not department:
        raise SystemExit("ONETHING_DESK_DEPARTMENT is not set: which department's desk is this?")
    problem = login_problem(department, region, s.amqp_uri)
    if problem:
        raise SystemExit(problem)
    try:
        with open(s.desk_rules_file, encoding="utf-8") as fh:
            book = rules.rule_book(yaml.safe_load(fh), s.desk_rule, where=s.desk_rules_file)
    except (OSError, yaml.YAMLError, rules.RulesError) as exc:
        raise SystemExit(f"the desk's rules cannot be read: {exc}") from None
    logs.configure()
    telemetry.setup(f"desk-{department}-{region}")
    desk = Desk(department, region, book, s.amqp_uri, delay=s.desk_delay_seconds, timeout=s.amqp_timeout_seconds)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: desk.stop())
    desk.run()
