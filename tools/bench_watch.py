"""N concurrent WatchCase streams on one intake api: what they cost the process and the other calls.

    .venv/bin/python -m tools.bench_watch --streams 1000

Starts intake's api in this process on a free port, on the real store (SecantusDB) in a database of
its own (`<prefix>intake_benchwatch_<run>`, dropped at the end; no events, no audit records written
to the suite's databases), with `--cases` cases of one applicant. Measures a unary call (GetCase)
with no stream open, opens N WatchCase streams (a grpc.aio client on one thread of its own: the
client adds no thread per stream), measures GetCase again with the N streams open, then concludes
every case and times until each stream has its change and has ended. Prints p50/p95 of GetCase,
the process's threads and RSS with 0 and N streams, the hub's looks and the fan-out time."""
import argparse
import asyncio
import dataclasses
import datetime
import statistics
import threading
import time
import uuid

import grpc

from onething.intake.v1 import intake_pb2 as pb
from onething.intake.v1 import intake_pb2_grpc as pb_grpc
from services.common import auth, mongo
from services.common.audit import MemoryAuditLog
from services.common.config import settings
from services.common.grpc_server import ApiServer
from services.common.streams import StreamLimits
from services.common.testing import FlakyBus
from services.intake import domain
from services.intake.api import IntakeApi
from services.intake.fakes import MemoryBlobs
from services.intake.wiring import build_intake
from tools.client import applicant_md, citizen_id

APPLICANT = citizen_id("44010619900101123")


def rss_mb():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def percentiles(samples):
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1000


def time_unary(stub, case_nos, md, calls):
    samples = []
    for i in range(calls):
        t0 = time.perf_counter()
        stub.GetCase(pb.GetCaseRequest(case_no=case_nos[i % len(case_nos)]), metadata=md, timeout=10)
        samples.append(time.perf_counter() - t0)
    return percentiles(samples)


def seed(store, cases, run):
    now = datetime.datetime.now(datetime.UTC)
    case_nos = []
    for i in range(cases):
        case_no = f"440100XSECS{now:%Y%m%d}W{run.upper()}{i:05d}"
        case = domain.Case(case_no=case_no, package_code="XSECS", package_version=1, region_code="440100",
                           applicant={"id_number": APPLICANT, "name": "李华"}, status=domain.SUBMITTED,
                           submitted_at=now, history=[domain.HistoryEntry(status=domain.SUBMITTED,
                                                                          at=now.isoformat(), note="submitted")])
        assert store.insert_case(case), case_no
        case_nos.append(case_no)
    return case_nos


class Watchers:
    """N WatchCase streams of a grpc.aio client, on a loop of their own thread."""

    def __init__(self, port, case_nos, n, md):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bench-client", daemon=True)
        self.thread.start()
        self.port, self.case_nos, self.n, self.md = port, case_nos, n, md
        self.opened = self.ended = 0
        self.changes: list[float] = []
        self.errors: list[str] = []
        self.tasks: list = []

    def _run(self, coroutine, timeout=None):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    async def _open(self):
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.port}")
        stub = pb_grpc.IntakeServiceStub(self.channel)
        first = asyncio.Event()

        async def watch(case_no):
            try:
                call = stub.WatchCase(pb.WatchCaseRequest(case_no=case_no), metadata=self.md, timeout=3600)
                n = 0
                async for _ in call:
                    n += 1
                    if n == 1:
                        self.opened += 1
                        if self.opened == self.n:
                            first.set()
                    else:
                        self.changes.append(time.monotonic())
                self.ended += 1
            except grpc.aio.AioRpcError as exc:
                self.errors.append(f"{exc.code().name}: {exc.details()}")
                first.set()

        self.tasks = [asyncio.create_task(watch(self.case_nos[i % len(self.case_nos)])) for i in range(self.n)]
        await asyncio.wait_for(first.wait(), 300)

    def open(self):
        self._run(self._open())

    def wait_ended(self, timeout):
        async def ended():
            await asyncio.wait(self.tasks, timeout=timeout)
        self._run(ended())

    def close(self):
        async def close():
            for task in self.tasks:
                task.cancel()
            await self.channel.close()
        self._run(close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--cases", type=int, default=0, help="cases watched (default: one per stream)")
    parser.add_argument("--calls", type=int, default=300, help="GetCase calls timed each time")
    args = parser.parse_args(argv)
    cases = args.cases or args.streams
    run = uuid.uuid4().hex[:6]
    s = settings()
    db_name = f"{s.db_name('intake')}_benchwatch_{run}"
    mongo.connect("intake", db_name=db_name)
    auth.ensure_keys()
    from services.intake.store import IntakeStore
    store = IntakeStore(FlakyBus("intake"))
    intake = build_intake(store=store, blobs=MemoryBlobs(), audit=MemoryAuditLog("intake"), with_catalog=False)
    limits = dataclasses.replace(StreamLimits.from_settings(s), watches_total=max(args.streams, s.stream_watches_total),
                                 watches_per_caller=args.streams)
    api = IntakeApi(intake)
    name = pb.DESCRIPTOR.services_by_name["IntakeService"].full_name
    server = ApiServer(0, [(pb_grpc.add_IntakeServiceServicer_to_server, api)], [name], host="127.0.0.1",
                       stream_limits=limits, checker=None).start()
    watchers = None
    try:
        case_nos = seed(store, cases, run)
        md = applicant_md(APPLICANT)
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = pb_grpc.IntakeServiceStub(channel)
            time_unary(stub, case_nos, md, 20)  # warm
            # every pool thread started, so that the count with 0 streams is the pool's full size
            list(server.pool.map(time.sleep, [0.05] * limits.threads))
            p50_0, p95_0 = time_unary(stub, case_nos, md, args.calls)
            threads_0, rss_0 = threading.active_count(), rss_mb()
            t0 = time.monotonic()
            watchers = Watchers(server.port, case_nos, args.streams, md)
            watchers.open()
            hub = api.hub
            assert hub is not None
            opened_s = time.monotonic() - t0
            if watchers.errors:
                raise SystemExit(f"{len(watchers.errors)} streams refused, e.g. {watchers.errors[0]}")
            time.sleep(1.0)
            looks = hub.looks
            p50_n, p95_n = time_unary(stub, case_nos, md, args.calls)
            time.sleep(1.0)
            threads_n, rss_n = threading.active_count(), rss_mb()
            hub_open = len(hub)
            looks_per_s = (hub.looks - looks) / max(1e-9, time.monotonic() - t0 - opened_s - 1.0)
            # every case concluded; then until each stream has its change and has ended (final status)
            t1 = time.monotonic()
            for case_no in case_nos:
                intake.case_concluded(domain.CaseConcluded(case_no=case_no, approved=False, reason="bench"))
            saved = time.monotonic()
            watchers.wait_ended(120)
            last = max(watchers.changes) if watchers.changes else float("nan")
        print(f"streams {args.streams} on {cases} cases, one intake api (pool of {limits.threads} threads), "
              f"database {db_name}")
        print(f"GetCase p50/p95: {p50_0:.2f}/{p95_0:.2f} ms with 0 streams; {p50_n:.2f}/{p95_n:.2f} ms with "
              f"{watchers.opened} open ({args.calls} calls each)")
        print(f"threads: {threads_0} with 0 streams, {threads_n} with {watchers.opened}; "
              f"RSS {rss_0:.0f} MB -> {rss_n:.0f} MB (+{(rss_n - rss_0) * 1024 / max(1, args.streams):.1f} KB a stream, "
              "client included)")
        print(f"opened {watchers.opened} streams in {opened_s:.2f} s; hub: {hub_open} watches, "
              f"{looks_per_s:.1f} looks/s (a stamp query per 100 cases each) at interval {intake.watch_poll_s:g} s")
        print(f"fan-out: {len(case_nos)} cases concluded in {saved - t1:.2f} s; {len(watchers.changes)} changes "
              f"delivered, {watchers.ended} streams ended at the final status, the last change "
              f"{(last - saved) * 1000:.0f} ms after the last save")
    finally:
        if watchers is not None:
            watchers.close()
        server.stop(0)
        import mongoengine
        mongoengine.get_connection("intake").drop_database(db_name)
        mongo.disconnect("intake")


if __name__ == "__main__":
    main()
