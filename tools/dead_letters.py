"""Dead letters: messages a handler failed on `max_handler_attempts` times (outages are retried
without counting), kept in the queue `onething.dead_letters` with their error, for an operator to
read, fix the cause, and replay.

    python -m tools.dead_letters list
    python -m tools.dead_letters show <message id>
    python -m tools.dead_letters replay <message id> | --all     # back into the queue that failed
    python -m tools.dead_letters drop <message id>               # explained and not wanted again

Listing does not consume: every message read is put back when the command ends. A replay keeps the
sender the broker validated (see `replay`)."""
import argparse
import json
import sys
from contextlib import contextmanager

import amqp

from services.common.config import settings
from services.common.worker import DEAD_LETTER_QUEUE, broker_login, dead_letter_entities

_FAILURE_HEADERS = ("x-onething-attempts", "x-onething-retries", "x-onething-error", "x-onething-traceback",
                    "x-onething-failed-at", "x-onething-original-queue", "x-onething-original-exchange",
                    "x-onething-original-routing-key")


def _connect(uri, timeout=5):
    from urllib.parse import unquote, urlparse
    u = urlparse(uri)
    vhost = unquote(u.path[1:]) if u.path and u.path != "/" else "/"
    conn = amqp.Connection(host=f"{u.hostname or '127.0.0.1'}:{u.port or 5672}", userid=unquote(u.username or "guest"),
                           password=unquote(u.password or "guest"), virtual_host=vhost, connect_timeout=timeout,
                           confirm_publish=True)
    conn.connect()
    return conn


@contextmanager
def _reading(uri=None, declare=True, limit=None, timeout=5):
    """A channel and every dead letter read from it (unacknowledged, at most `limit`); what is not
    acknowledged goes back to the queue when the channel closes. `declare=False` only reads: a
    vhost without the queue raises amqp's NotFound instead of getting one."""
    if declare:
        from kombu import Connection
        with Connection(uri or settings().amqp_uri) as kconn:  # make sure the queue exists
            _exchange, queue = dead_letter_entities()
            queue(kconn.default_channel).declare()
    conn = _connect(uri or settings().amqp_uri, timeout)
    channel = conn.channel()
    letters: list = []
    try:
        if not declare:
            channel.queue_declare(DEAD_LETTER_QUEUE, passive=True)
        while limit is None or len(letters) < limit:
            msg = channel.basic_get(queue=DEAD_LETTER_QUEUE, no_ack=False)
            if msg is None:
                break
            letters.append(msg)
        yield channel, letters
    finally:
        try:
            channel.close()
        finally:
            conn.close()


def _id(msg):
    return msg.properties.get("message_id") or ""


def describe(msg):
    h = msg.properties.get("application_headers") or {}
    return {"message_id": _id(msg), "queue": h.get("x-onething-original-queue", ""),
            "event": h.get("x-onething-original-routing-key", ""), "case_no": h.get("case_no", ""),
            "attempts": h.get("x-onething-attempts", 0), "failed_at": h.get("x-onething-failed-at", ""),
            "error": h.get("x-onething-error", "")}


def list_letters(uri=None):
    with _reading(uri) as (_, letters):
        return [describe(m) for m in letters]


def show(message_id, uri=None):
    with _reading(uri) as (_, letters):
        for m in letters:
            if _id(m) == message_id:
                h = dict(m.properties.get("application_headers") or {})
                body = m.body.decode("utf-8", "replace") if isinstance(m.body, bytes) else m.body
                try:
                    body = json.loads(body)
                except ValueError:
                    pass
                return {**describe(m), "headers": {k: str(v) for k, v in h.items()}, "payload": body}
    return None


class ReplayRefused(RuntimeError):
    """The broker would not take a replay: the letter's sender is a login this tool can neither
    connect as nor impersonate."""


def _sender_uri(user_id, uri):
    """A URI that connects as `user_id` (the deployment's broker passwords file knows it), or None."""
    from infra import topology
    try:
        password = topology.passwords([user_id], create=False).get(user_id)
    except (SystemExit, OSError, ValueError):
        return None
    return topology.uri_for(user_id, password, uri) if password else None


def replay(message_ids=None, uri=None):
    """Send dead letters back into the queue whose handler failed, with their failure count reset;
    returns the ids replayed. `message_ids=None` replays every one.

    A letter keeps the user_id the broker validated when it was dead-lettered, beside the headers
    that count only with it (x-onething-sender: the desk whose opinion it is): without it joint_review
    would refuse the opinion as from nobody. The broker takes a user_id only from that login, so the
    replay goes out on a connection as that login when the broker passwords file knows it, else on
    the tool's own (which then needs RabbitMQ's `impersonator` tag); a refusal raises ReplayRefused
    and leaves the letter where it was."""
    uri = uri or settings().amqp_uri
    own = broker_login(uri) or "guest"
    done, channels, opened = [], {}, []

    def channel_for(sender, reading):
        """The channel a letter from `sender` goes out on: one as that login, else the reading one."""
        if not sender or sender == own:
            return reading
        if sender not in channels:
            sender_uri = _sender_uri(sender, uri)
            if sender_uri:
                opened.append(_connect(sender_uri))
            channels[sender] = opened[-1].channel() if sender_uri else reading
        return channels[sender]

    try:
        with _reading(uri) as (channel, letters):
            for m in letters:
                if message_ids is not None and _id(m) not in message_ids:
                    continue
                h = dict(m.properties.get("application_headers") or {})
                queue = h.get("x-onething-original-queue")
                if not queue:
                    continue
                headers = {k: v for k, v in h.items() if k not in _FAILURE_HEADERS}
                headers["x-onething-replayed"] = int(h.get("x-onething-replayed", 0)) + 1
                props = {k: v for k, v in m.properties.items()
                         if k in ("content_type", "content_encoding", "message_id", "user_id")}
                out = amqp.Message(m.body, application_headers=headers, delivery_mode=2, **props)
                sender = props.get("user_id") or ""
                try:
                    channel_for(sender, channel).basic_publish(out, exchange="", routing_key=queue, mandatory=True)
                except amqp.exceptions.AMQPError as exc:
                    raise ReplayRefused(
                        f"the broker refused to replay {_id(m)} as its sender {sender!r}: {exc}. Run the tool "
                        f"with that login's password in the broker passwords file, or give "
                        f"{own!r} RabbitMQ's impersonator tag; the letter stays in "
                        f"{DEAD_LETTER_QUEUE}") from exc
                channel.basic_ack(m.delivery_tag)
                done.append(_id(m))
    finally:
        for conn in opened:
            try:
                conn.close()
            except Exception:  # already closed by the broker's refusal
                pass
    return done


def drop(message_id, uri=None):
    with _reading(uri) as (channel, letters):
        for m in letters:
            if _id(m) == message_id:
                channel.basic_ack(m.delivery_tag)
                return True
    return False


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.dead_letters", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list")
    p = sub.add_parser("show")
    p.add_argument("message_id")
    p = sub.add_parser("replay")
    p.add_argument("message_id", nargs="?")
    p.add_argument("--all", action="store_true")
    p = sub.add_parser("drop")
    p.add_argument("message_id")
    args = parser.parse_args(argv)
    if args.command == "list":
        letters = list_letters()
        for d in letters:
            print(f"{d['message_id']}  {d['failed_at']}  {d['queue']}  case {d['case_no'] or '-'}  "
                  f"attempts {d['attempts']}\n    {d['error']}")
        print(f"{len(letters)} dead letter(s)")
        return 0
    if args.command == "show":
        found = show(args.message_id)
        if found is None:
            print(f"no dead letter {args.message_id}", file=sys.stderr)
            return 1
        print(json.dumps(found, ensure_ascii=False, indent=2))
        return 0
    if args.command == "replay":
        if not args.all and not args.message_id:
            parser.error("replay needs a message id or --all")
        try:
            done = replay(None if args.all else {args.message_id})
        except ReplayRefused as exc:
            print(exc, file=sys.stderr)
            return 1
        print(f"replayed {len(done)}: {' '.join(done)}")
        return 0 if done else 1
    if args.command == "drop":
        ok = drop(args.message_id)
        print("dropped" if ok else f"no dead letter {args.message_id}")
        return 0 if ok else 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
