"""A second department desk, written from the desk protocol alone (protos/asyncapi/desk.yaml), the
way a department would write one in its own stack: plain AMQP 0-9-1 with pika, no code of the
platform's. It approves a task when every material the item needs is in the case and every licence
type it takes is held by a valid licence the task names, rejects it otherwise saying what is
missing, and leaves items with a site inspection to officers.

    python e2e/minimal_desk.py --uri amqp://desk-jkzx-440100:PASSWORD@127.0.0.1:5672/onething \\
        --department jkzx --region 440100
"""
import argparse
import json
import logging
import signal
import sys
import time
from urllib.parse import unquote, urlparse

import pika
from pika.exceptions import NackError, UnroutableError

log = logging.getLogger("minimal_desk")
SIGNATURE = "minimal desk"  # in every reason, so the platform's records show who decided


def decide(task):
    """(decision, reason) for a TaskAssigned, or None to leave the task to an officer."""
    if task.get("inspection"):
        return None
    held = {m.get("material_code") for m in task.get("materials", [])}
    missing = [c for c in task.get("material_codes", []) if c not in held]
    if missing:
        return "DECISION_REJECT", f"{SIGNATURE}: materials missing: {', '.join(missing)}"
    valid = {lic.get("type_code") for lic in task.get("licenses", []) if lic.get("valid")}
    lacking = [t for t in task.get("license_inputs", []) if t not in valid]
    if lacking:
        return "DECISION_REJECT", f"{SIGNATURE}: no valid licence of type {', '.join(lacking)}"
    return "DECISION_APPROVE", f"{SIGNATURE}: materials present"


class MinimalDesk:
    def __init__(self, uri, department, region):
        self.uri, self.department, self.region = uri, department, region
        self.user = unquote(urlparse(uri).username or "")  # user_id must be the login
        self.queue = f"desk.{department}.{region}"
        self.connection = self.channel = None

    def run(self):
        self.connection = connection = pika.BlockingConnection(pika.URLParameters(self.uri))
        self.channel = connection.channel()
        self.channel.queue_declare(queue=self.queue, passive=True)  # the desk may only look, not declare
        self.channel.confirm_delivery()
        self.channel.basic_qos(prefetch_count=1)
        self.channel.basic_consume(self.queue, self.on_task, auto_ack=False)
        log.info("consuming %s as %s", self.queue, self.user)
        try:
            self.channel.start_consuming()
        finally:
            if connection.is_open:
                connection.close()  # a task in hand goes back to the queue

    def stop(self, *_):
        """SIGTERM: stop consuming once the task in hand (if any) is done."""
        if self.channel is not None:
            self.connection.add_callback_threadsafe(self.channel.stop_consuming)

    def on_task(self, channel, method, properties, body):
        try:
            task = json.loads(body)
        except ValueError:
            log.warning("not JSON: left to officers")
            channel.basic_ack(method.delivery_tag)
            return
        decided = decide(task) if isinstance(task, dict) else None
        if decided is None or not task.get("site"):
            channel.basic_ack(method.delivery_tag)  # an officer decides
            return
        decision, reason = decided
        opinion = {"case_no": task["case_no"], "item_code": task["item_code"], "department_code": self.department,
                   "region_code": self.region, "round": task.get("round", 0), "decision": decision, "reason": reason}
        headers = {k: v for k, v in (properties.headers or {}).items() if k in ("traceparent", "tracestate")}
        headers.update(case_no=task["case_no"], producer=self.user)
        try:
            channel.basic_publish(
                exchange="desk.opinions",
                routing_key=f"opinion.{self.department}.{self.region}.{task['site']}",
                body=json.dumps(opinion, ensure_ascii=False).encode("utf-8"),
                properties=pika.BasicProperties(
                    content_type="application/json", delivery_mode=2, headers=headers, user_id=self.user,
                    message_id=f"opinion:{task['case_no']}:{task['item_code']}:{task.get('round', 0)}"),
                mandatory=True)
        except (UnroutableError, NackError) as exc:  # not taken: try again later
            log.warning("opinion on %s/%s not taken (%s); the task goes back", task["case_no"], task["item_code"],
                        type(exc).__name__)
            time.sleep(1.0)
            channel.basic_nack(method.delivery_tag, requeue=True)
            return
        channel.basic_ack(method.delivery_tag)  # only after the broker confirmed the opinion
        log.info("%s/%s: %s", task["case_no"], task["item_code"], decision)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uri", required=True, help="amqp://desk-<department>-<region>:<password>@host:port/vhost")
    parser.add_argument("--department", required=True)
    parser.add_argument("--region", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    desk = MinimalDesk(args.uri, args.department, args.region)
    signal.signal(signal.SIGTERM, desk.stop)
    desk.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
