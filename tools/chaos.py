"""Fault injection on the running suite: 新生儿出生 cases driven through every service while random
api, worker and desk processes are killed with SIGKILL (their supervisors start them again), and
the broker, the MongoDB server and the S3 server are each restarted. Afterwards it checks the
guarantees and prints the figures:

- every accepted case reaches a final state (lost = never final; stuck = final state not reached
  within the settle time with its events accounted for);
- no case is accepted twice (one case per idempotency key and applicant);
- no item has two licences;
- no event is left in an outbox, no message in the dead-letter queue.

    make up && python -m tools.chaos [--cases 1000] [--in-flight 8] [--kill-every 3] [--restarts broker,mongo,s3]

Exit status 0 only when lost, duplicated and stuck are all 0. `make chaos` runs the full run;
`make test` runs a small one (e2e/test_chaos.py)."""
import argparse
import datetime
import json
import random
import sys
import threading
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor

import grpc

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

from onething.common.v1 import common_pb2  # noqa: E402
from onething.intake.v1 import intake_pb2  # noqa: E402
from services.common.config import settings  # noqa: E402
from services.common.registry import NAMES  # noqa: E402
from tools.client import Suite, citizen_id, demo_pdf  # noqa: E402

FINAL = {intake_pb2.CASE_STATUS_DELIVERED, intake_pb2.CASE_STATUS_REJECTED, intake_pb2.CASE_STATUS_WITHDRAWN,
         intake_pb2.CASE_STATUS_RATED}
RETRY = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL,
         grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED, grpc.StatusCode.RESOURCE_EXHAUSTED}


def _retrying(call, what, give_up_after=300.0):
    """A client that keeps trying through outages, as a window's software would."""
    deadline = time.time() + give_up_after
    pause = 0.2
    while True:
        try:
            return call()
        except grpc.RpcError as exc:
            if exc.code() not in RETRY or time.time() > deadline:
                raise RuntimeError(f"{what}: {exc.code().name} {exc.details()}") from exc
        time.sleep(pause)
        pause = min(pause * 2, 3.0)


class Chaos:
    def __init__(self, cases, in_flight, kill_every, restarts, seed, settle, log=print):
        self.cases, self.in_flight, self.kill_every = cases, in_flight, kill_every
        self.restarts, self.settle, self.log = restarts, settle, log
        self.random = random.Random(seed)
        self.client = Suite()
        self.accepted = {}      # idempotency key -> case number
        self.refused = []       # (key, reason) of submissions the suite refused on purpose
        self.kills = []         # (time, process, pid)
        self.server_restarts = []
        self._lock = threading.Lock()
        self._stop = threading.Event()

    # the load -------------------------------------------------------------------------------
    def _one_case(self, n):
        c = self.client
        # a new applicant per case: a birth date of this run's own and a sequence number
        born = self.base_date + datetime.timedelta(days=n // 1000)
        applicant = common_pb2.Applicant(id_number=citizen_id(f"440106{born:%Y%m%d}{n % 1000:03d}"),
                                         name=f"混沌{n}", phone="13800000000")
        key = f"chaos-{self.run_id}-{n}"
        codes = _retrying(lambda: c.required_materials(), "materials")
        materials = [intake_pb2.MaterialSubmission(material_code=code, upload_id=_retrying(
            lambda code=code: c.upload(applicant.id_number, code, demo_pdf(code)), f"upload {code}").upload_id)
            for code in codes]
        case = _retrying(lambda: c.submit(applicant, materials, key=key), f"submit {key}")
        with self._lock:
            self.accepted[key] = (case.case_no, applicant.id_number)

    def _killer(self, names):
        from infra import suite
        while not self._stop.wait(self.kill_every):
            name = self.random.choice(names)
            pid = suite.kill_child(name)
            if pid:
                with self._lock:
                    self.kills.append((time.time(), name, pid))

    def _restart_servers(self, duration):
        from infra import local
        plan = list(self.restarts)
        if not plan:
            return
        gap = duration / (len(plan) + 1)
        for server in plan:
            if self._stop.wait(gap):
                return
            started = time.time()
            if server == "broker":
                local.restart_rabbitmq(pause=3.0)
            else:
                local.restart_server(server)
            with self._lock:
                self.server_restarts.append((server, round(time.time() - started, 1)))
            self.log(f"  restarted {server} ({time.time() - started:.1f} s)")

    def _victims(self):
        """The processes a 新生儿出生 case passes through: every api and worker, and the desks of
        the package's departments."""
        from infra import suite
        departments = {i.department_code for i in _retrying(lambda: self.client.package(), "package").items}
        names = []
        for name in suite.process_table():
            if name.startswith("desk-") and name.split("-")[1] not in departments:
                continue
            if suite.child_pid(name):
                names.append(name)
        return names

    def run(self):
        from infra import suite
        self.run_id = uuid.uuid4().hex[:6]
        self.base_date = datetime.date(1940, 1, 1) + datetime.timedelta(days=random.Random().randrange(25000))
        started = time.time()
        killer = threading.Thread(target=self._killer, args=(self._victims(),), daemon=True)
        killer.start()
        # the server restarts are spread over the time the cases are expected to take
        expected = max(30.0, self.cases / 3.0)
        servers = threading.Thread(target=self._restart_servers, args=(expected,), daemon=True)
        servers.start()
        errors = []
        with ThreadPoolExecutor(self.in_flight) as pool:
            for fut in [pool.submit(self._one_case, n) for n in range(self.cases)]:
                try:
                    fut.result()
                except Exception as exc:  # a submission the client gave up on
                    errors.append(str(exc))
        self.log(f"  {len(self.accepted)} cases accepted in {time.time() - started:.0f} s; "
                 "killing on until they are all finished")
        # processes keep dying while the accepted cases move, until each is final (or time is up)
        pending = {no for no, _ in self.accepted.values()}
        deadline = time.time() + self.settle
        while (pending or servers.is_alive()) and time.time() < deadline:
            pending = self._not_final(pending)
            time.sleep(2.0)
        servers.join()
        self._stop.set()
        killer.join()
        driven = time.time() - started
        self.log(f"  {len(self.kills)} kills and {len(self.server_restarts)} server restarts in {driven:.0f} s; "
                 "checking")
        suite.wait_serving(timeout=120)
        suite.wait_consuming(timeout=120)
        return self.check(driven, errors)

    # the guarantees ------------------------------------------------------------------------
    def _status(self, case_no):
        return _retrying(lambda: self.client.intake.GetCase(intake_pb2.GetCaseRequest(case_no=case_no), timeout=10),
                         f"GetCase {case_no}").status

    def _not_final(self, case_nos):
        """Of `case_nos`, those not yet in a final state: one query to intake's store (polling
        each case over gRPC would load the very api the run is measuring)."""
        import pymongo
        s = settings()
        final = [intake_pb2.CaseStatus.Name(v) for v in FINAL]
        try:
            with pymongo.MongoClient(s.mongo_uri, serverSelectionTimeoutMS=5000, directConnection=True, document_class=dict) as mc:
                done = {d["_id"] for d in mc[s.db_name("intake")].cases.find(
                    {"_id": {"$in": sorted(case_nos)}, "status": {"$in": final}}, {"_id": 1})}
        except pymongo.errors.PyMongoError:  # the store is being restarted: ask again later
            return set(case_nos)
        return set(case_nos) - done

    def check(self, driven, errors):
        import pymongo
        s = settings()
        deadline = time.time() + self.settle
        pending = self._not_final({no for no, _ in self.accepted.values()})
        while pending and time.time() < deadline:
            time.sleep(2.0)
            pending = self._not_final(pending)
        # what the applicant sees, over gRPC: every accepted case asked once
        statuses: dict = {}
        for no, _ in self.accepted.values():
            status = self._status(no)
            if status not in FINAL:
                pending.add(no)
            name = intake_pb2.CaseStatus.Name(status)
            statuses[name] = statuses.get(name, 0) + 1
        with pymongo.MongoClient(s.mongo_uri, serverSelectionTimeoutMS=10000, directConnection=True, document_class=dict) as mc:
            intake = mc[s.db_name("intake")]
            keys = [f"{applicant}:{key}" for key, (_, applicant) in self.accepted.items()]
            per_applicant: dict = {}
            for doc in intake.cases.find({"applicant.id_number": {"$in": [a for _, a in self.accepted.values()]}},
                                         {"_id": 1, "applicant.id_number": 1}):
                per_applicant.setdefault(doc["applicant"]["id_number"], []).append(doc["_id"])
            duplicated = sum(len(v) - 1 for v in per_applicant.values() if len(v) > 1)
            case_nos = [no for no, _ in self.accepted.values()]
            licences: dict = {}
            for doc in mc[s.db_name("elicense")].licenses.find({"fields.case_no": {"$in": case_nos}},
                                                                 {"fields.case_no": 1, "fields.item_code": 1}):
                k = (doc["fields"]["case_no"], doc["fields"]["item_code"])
                licences[k] = licences.get(k, 0) + 1
            double_licences = sum(1 for v in licences.values() if v > 1)
            outbox = {}
            for service in NAMES:
                db = mc[s.db_name(service)]
                for coll in db.list_collection_names():
                    n = db[coll].count_documents({"outbox.case_no": {"$in": case_nos}})
                    if n:
                        outbox[f"{service}.{coll}"] = n
        from tools import dead_letters
        # this run's own: another test's (or an operator's) dead letters in the same vhost are
        # reported apart, not counted against the run
        every_letter = dead_letters.list_letters()
        letters = [d for d in every_letter if d["case_no"] in set(case_nos)]
        lost = len(pending)
        report = {
            "cases_submitted": self.cases, "cases_accepted": len(self.accepted), "client_gave_up": len(errors),
            "in_flight": self.in_flight, "kills": len(self.kills),
            "killed": sorted({name for _, name, _ in self.kills}),
            "server_restarts": self.server_restarts, "seconds_driving": round(driven),
            "final_statuses": statuses, "lost_or_stuck": lost, "stuck_cases": sorted(pending)[:20],
            "duplicated_cases": duplicated, "items_with_two_licences": double_licences,
            "outbox_left": outbox, "dead_letters": len(letters), "idempotency_keys": len(keys),
            "dead_letter_details": [{k: d[k] for k in ("queue", "case_no", "error")} for d in letters[:5]],
            "other_dead_letters": [{k: d[k] for k in ("queue", "case_no", "error")}
                                   for d in every_letter if d not in letters][:5],
        }
        report["ok"] = (lost == 0 and duplicated == 0 and double_licences == 0 and not outbox and not letters
                        and not errors)
        if errors:
            report["client_errors"] = errors[:5]
        return report


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--kill-every", type=float, default=3.0, help="seconds between two SIGKILLs")
    parser.add_argument("--restarts", default="broker,mongo,s3", help="servers to restart once each ('' for none)")
    parser.add_argument("--settle", type=float, default=300.0, help="seconds to wait for the last cases")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    restarts = [r for r in args.restarts.split(",") if r]
    print(f"chaos: {args.cases} cases, {args.in_flight} in flight, a SIGKILL every {args.kill_every} s, "
          f"restarting {', '.join(restarts) or 'no server'}")
    report = Chaos(args.cases, args.in_flight, args.kill_every, restarts, args.seed, args.settle).run()
    print(json.dumps(report, ensure_ascii=False, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
