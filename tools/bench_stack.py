"""The fixed stack's own CPU per event, with none of the suite's code: what a publish with confirms
(nameko's Publisher, persistent and mandatory, as services/common/bus.py publishes), RabbitMQ, and a
nameko event handler that does nothing take of the machine's CPU to carry one event. With the
events a case publishes and handles (part 4 of `tools.bench`), it gives the CPU a case costs before
any of the suite's own work: the part no change to the suite's code can take away.

    make up-infra   (or: python -m infra.local up; only RabbitMQ is used)
    python -m tools.bench_stack [--events N] [--published P --handled H]

The handler runs in a child process (`nameko`'s ServiceContainer, eventlet as `nameko run` has it),
which reports its own CPU from its first message to its last; RabbitMQ's is read from its Erlang VM
(/proc), the publisher's from this process. Its queue and exchange are its own and are deleted at the
end. Not a test: it prints figures and asserts nothing about them.
"""
import argparse
import os
import subprocess
import sys
import time
import uuid
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

SOURCE = "stackfloor"
EVENT = "ping"


def _consume(count, amqp_uri, service_name, out_path):
    """The child: a nameko service with one event handler that counts; writes its CPU seconds
    between the first and the last of `count` messages to `out_path`."""
    import eventlet
    eventlet.monkey_patch()
    from nameko.containers import ServiceContainer
    from nameko.events import event_handler

    seen: list = []  # os.times() at the first message
    done = eventlet.Event()

    class Floor:
        name = service_name

        @event_handler(SOURCE, EVENT)
        def handle(self, payload):
            if not seen:
                seen.append(os.times())
            seen.append(None)
            if len(seen) == count + 1:
                done.send(os.times())

    container = ServiceContainer(Floor, config={"AMQP_URI": amqp_uri, "max_workers": 10})
    container.start()
    with open(out_path + ".ready", "w") as fh:
        fh.write("ready")
    last, first = done.wait(), seen[0]
    cpu = (last.user + last.system) - (first.user + first.system)
    with open(out_path, "w") as fh:
        fh.write(f"{cpu}")
    container.stop()


def _beam_cpu():
    from tools.bench_costs import _process_cpu_seconds, _suite_pids
    pid = _suite_pids().get("rabbitmq")
    return None if pid is None else _process_cpu_seconds(pid)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--published", type=float, default=32.0, help="events a case publishes (tools.bench part 4)")
    parser.add_argument("--handled", type=float, default=27.0, help="messages a case has handled (same)")
    parser.add_argument("--consume", help=argparse.SUPPRESS)  # the child's part
    args = parser.parse_args(argv)
    from services.common.config import settings
    uri = settings().amqp_uri
    if args.consume:
        service_name, out_path = args.consume.split(",", 1)
        _consume(args.events, uri, service_name, out_path)
        return 0

    from kombu import Connection, Exchange
    from nameko.amqp.publish import Publisher

    service_name = f"stackfloor_{uuid.uuid4().hex[:8]}"
    out_path = f"/tmp/{service_name}.cpu"
    child = subprocess.Popen([sys.executable, "-m", "tools.bench_stack", "--events", str(args.events),
                              "--consume", f"{service_name},{out_path}"])
    exchange = Exchange(f"{SOURCE}.events", type="topic", durable=True, auto_delete=False)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(out_path + ".ready"):
            if time.monotonic() > deadline or child.poll() is not None:
                raise SystemExit("the consumer did not start")
            time.sleep(0.05)
        publisher = Publisher(uri, serializer="json", use_confirms=True, delivery_mode=2, mandatory=True, retry=True,
                              retry_policy={"max_retries": 2})
        payload = {"case_no": "440100XSECS202611290001", "item_code": "110000000001", "note": "x" * 400}
        for _ in range(20):  # the publisher's connection, before the clock starts
            publisher.publish(payload, exchange=exchange, routing_key="warm-up", mandatory=False)
        beam0, own0, wall0 = _beam_cpu(), os.times(), time.monotonic()
        for i in range(args.events):
            publisher.publish(payload, exchange=exchange, routing_key=EVENT,
                              headers={"event_id": uuid.uuid4().hex, "case_no": payload["case_no"]},
                              message_id=str(i))
        own1 = os.times()
        child.wait(timeout=300)
        wall, beam1 = time.monotonic() - wall0, _beam_cpu()
        with open(out_path) as fh:
            consumer = float(fh.read()) / max(1, args.events - 1)
    finally:
        if child.poll() is None:
            child.kill()
        for path in (out_path, out_path + ".ready"):
            if os.path.exists(path):
                os.remove(path)
        with Connection(uri) as conn:
            channel = conn.channel()
            channel.queue_delete(f"evt-{SOURCE}-{EVENT}--{service_name}.handle")
            channel.exchange_delete(exchange.name)
    n = args.events
    publish = ((own1.user + own1.system) - (own0.user + own0.system)) / n
    broker = None if beam0 is None or beam1 is None else (beam1 - beam0) / n
    print(f"{n} events, each published with confirms and handled by a nameko handler that does nothing "
          f"({n / wall:.0f} events/s)")
    print(f"   CPU an event: publisher {publish * 1000:.2f} ms, RabbitMQ "
          f"{'?' if broker is None else f'{broker * 1000:.2f}'} ms, nameko handler {consumer * 1000:.2f} ms")
    if broker is not None:
        case = args.published * (publish + broker) + args.handled * consumer
        print(f"   a case ({args.published:g} published, {args.handled:g} handled): {case * 1000:.0f} ms of CPU "
              f"before any of the suite's own work; two cores carry at most {2 / case:.1f} such cases a second")
    return 0


if __name__ == "__main__":
    sys.exit(main())
