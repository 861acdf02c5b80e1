"""The audit log from the command line: verify the hash chains, list records.

    python -m tools.audit verify [--service S] [--anchor SERVICE:SEQ:HASH ...]
    python -m tools.audit list [--service S] [--case C] [--actor A] [--action X] [--limit N] [--unmasked] [--json]

`verify` walks the chain of each service (the collection `audit` of its database, see
services/common/audit.py) and names the first record that was edited, removed or reordered; it
prints each chain's head (seq and hash): note it somewhere else, and `--anchor` later proves that
no record up to it was cut off or rewritten. Exit status 0 when every chain is intact, 1 when one
is not, 2 when the database cannot be reached.

`list` shows records, oldest first, of every service (or one): `--case` a case number (the record's
target or the case it names), `--actor` a subject (staff ID, citizen ID). Subjects that are citizen
ID numbers or phones are masked unless `--unmasked`."""
import argparse
import json
import sys

from services.common.registry import NAMES

SERVICES = NAMES


def _client():
    import pymongo

    from services.common.config import settings
    s = settings()
    return pymongo.MongoClient(s.mongo_uri, serverSelectionTimeoutMS=s.mongo_timeout_ms,
                               connectTimeoutMS=s.mongo_timeout_ms, socketTimeoutMS=s.mongo_socket_timeout_ms)


def collection(client, service):
    from services.common.audit import COLLECTION
    from services.common.config import settings
    return client[settings().db_name(service)][COLLECTION]


def _anchors(values):
    out = {}
    for value in values or ():
        service, sep, rest = value.partition(":")
        seq, sep2, hash_ = rest.partition(":")
        if not sep or not sep2 or not seq.isdigit() or len(hash_) != 64:
            raise SystemExit(f"error: --anchor takes SERVICE:SEQ:HASH (the head `verify` printed), not {value!r}")
        out[service] = (int(seq), hash_)
    return out


def verify(args, client, out):
    from services.common.audit import verify_collection
    anchors = _anchors(args.anchor)
    broken = 0
    for service in args.service or SERVICES:
        finding, count, head = verify_collection(collection(client, service), anchor=anchors.get(service))
        if finding is None:
            print(f"{service:13s} intact: {count} records, head {head[0]} {head[1]}", file=out)
        else:
            broken += 1
            print(f"{service:13s} BROKEN at record {finding.seq} ({finding.kind}): {finding.message} "
                  f"[{count} records read]", file=out)
    return 1 if broken else 0


def _actor_text(actor, unmasked):
    from services.common.privacy import mask_text
    sub = actor.get("sub", "")
    text = f"{actor.get('role', '?')}:{sub if unmasked else mask_text(sub)}"
    where = "/".join(p for p in (actor.get("department", ""), actor.get("region", "")) if p)
    if where:
        text += f"@{where}"
    if actor.get("on_behalf_of"):
        behalf = actor["on_behalf_of"]
        text += f" for {behalf if unmasked else mask_text(behalf)}"
    if actor.get("auth", "token") != "token":
        text += f" ({actor.get('auth')})"
    return text


def list_records(args, client, out):
    query = {}
    if args.case:
        query["$or"] = [{"target": args.case}, {"details.case_no": args.case}]
    if args.actor:
        query["actor.sub"] = args.actor
    if args.action:
        query["action"] = args.action
    records = []
    for service in args.service or SERVICES:
        records += list(collection(client, service).find(query, {"_id": 0}))
    records.sort(key=lambda r: (r.get("at", ""), r.get("service", ""), r.get("seq", 0)))
    if args.limit:
        records = records[-args.limit:]
    for r in records:
        if args.json:
            print(json.dumps(r, ensure_ascii=False, sort_keys=True), file=out)
            continue
        details = " ".join(f"{k}={json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v}"
                           for k, v in sorted((r.get("details") or {}).items()))
        print(f"{r.get('at', '')[:23]}  {r.get('service', ''):12s} #{r.get('seq')}  "
              f"{_actor_text(r.get('actor') or {}, args.unmasked)}  {r.get('action')}  {r.get('target') or '-'}  "
              f"{r.get('outcome')}  {details}".rstrip(), file=out)
    if not args.json:
        print(f"{len(records)} record(s)", file=out)
    return 0


def main(argv=None, out=sys.stdout, err=sys.stderr, client=None):
    p = argparse.ArgumentParser(prog="python -m tools.audit", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="walk the hash chains; name the first record edited, removed or reordered")
    v.add_argument("--service", action="append", choices=SERVICES)
    v.add_argument("--anchor", action="append", metavar="SERVICE:SEQ:HASH",
                   help="a head printed earlier: the chain must still hold it")
    ls = sub.add_parser("list", help="show records, oldest first")
    ls.add_argument("--service", action="append", choices=SERVICES)
    ls.add_argument("--case", help="case number")
    ls.add_argument("--actor", help="the actor's subject (staff ID, citizen ID)")
    ls.add_argument("--action", help="e.g. opinion.record, licence.revoke, session.read")
    ls.add_argument("--limit", type=int, default=0, help="only the last N")
    ls.add_argument("--unmasked", action="store_true", help="show identity numbers in full")
    ls.add_argument("--json", action="store_true", help="one JSON record a line")
    args = p.parse_args(argv)
    import pymongo.errors
    own = client is None
    client = client or _client()
    try:
        return verify(args, client, out) if args.command == "verify" else list_records(args, client, out)
    except pymongo.errors.PyMongoError as exc:
        print(f"error: the audit database cannot be read ({type(exc).__name__}: {exc})", file=err)
        return 2
    finally:
        if own:
            client.close()


if __name__ == "__main__":
    sys.exit(main())
