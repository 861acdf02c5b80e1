"""How fast the timeline finds one case among many: generates N cases' spans (default 10,000, about
100 spans each, about 1 GB) in the span files' format, builds the index, then times look-ups of random
cases in this process (warm) and in new processes (`python -m tools.timeline`), with the files in the
page cache and with them evicted from it. Prints the figures; asserts nothing about them (it does
check that each case looked up has every span it was given).

    python -m tools.timeline_bench [--cases 10000] [--dir var/timeline_bench] [--lookups 50] [--keep]

The files are what the exporter writes (services/common/telemetry.py): `<service.name>-<pid>-<seq>.jsonl`
in one folder, one OTLP/JSON ExportTraceServiceRequest per line, one line per exported batch (up to
512 spans, or what ended within 5 s, as a BatchSpanProcessor sends them), a new file past 64 MiB. The
cases overlap in time, so each line holds spans of many cases. A case is three traces: its submission
(intake, joint_review, five desks, elicense, delivery; ~90 spans), the applicant's look-ups hours
later, and the rating a day or two later, whose publish links back to the submission.
The generated folder is removed at the end unless --keep (it lies under var/, which git ignores).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

from services.common.config import settings
from services.common.telemetry import CASE_ATTR

BATCH_SPANS = 512  # BatchSpanProcessor's max_export_batch_size
BATCH_NS = 5_000_000_000  # its schedule delay
FILE_BYTES = 64 * 1024 * 1024
MS = 1_000_000
KIND = {"internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}


# --- the format (also used by infra/tests/test_timeline.py) -------------------------------------

def any_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": str(value)}


def key_values(attributes: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": any_value(v)} for k, v in attributes.items()]


def span_json(trace_id: str, span_id: str, parent_id: str, name: str, kind: str, start_ns: int, end_ns: int,
              attributes: dict[str, Any] | None = None, links: Sequence[tuple[str, str]] = (),
              error: str | None = None) -> str:
    """One span as the OTLP/JSON encoding writes it (hex ids, int64 as strings, enums as numbers)."""
    span: dict[str, Any] = {"traceId": trace_id, "spanId": span_id}
    if parent_id:
        span["parentSpanId"] = parent_id
    span.update({"name": name, "kind": KIND[kind], "startTimeUnixNano": str(start_ns),
                 "endTimeUnixNano": str(end_ns), "attributes": key_values(attributes or {})})
    if links:
        span["links"] = [{"traceId": t, "spanId": s} for t, s in links]
    span["status"] = {"code": 2, "message": error} if error is not None else {"code": 0}
    return json.dumps(span, ensure_ascii=False, separators=(",", ":"))


def request_line(service: str, site: str, spans: Iterable[str], instance: str = "") -> str:
    """One exported batch: an ExportTraceServiceRequest of one process's spans, as one line."""
    resource = {"service.name": service, "service.instance.id": instance or f"{service}-1"}
    if site:
        resource["onething.site"] = site
    head = json.dumps({"resource": {"attributes": key_values(resource)}}, ensure_ascii=False,
                      separators=(",", ":"))[:-1]
    return ('{"resourceSpans":[' + head + ',"scopeSpans":[{"scope":{"name":"onething","version":"1"},"spans":['
            + ",".join(spans) + "]}]}]}")


# --- the generated cases -----------------------------------------------------------------------

APIS = ["catalog", "intake", "joint_review", "elicense", "delivery", "evaluation"]
DESKS = [(dept, region) for region in ("440100", "440300")
         for dept in ("wsjk", "jkzx", "gaj", "ybj", "rsj", "mz", "scjg", "swj", "zjj")]
ITEMS = [("100000000001", "wsjk", True), ("100000000002", "gaj", True), ("100000000003", "ybj", False),
         ("100000000004", "rsj", False), ("100000000005", "jkzx", False), ("100000000006", "ybj", False),
         ("100000000007", "mz", False)]


class Trace:
    """Spans of one trace, as (end time, process, span JSON)."""

    def __init__(self, rng: random.Random, out: list[tuple[int, str, str]], case_no: str):
        self.rng, self.out, self.case_no = rng, out, case_no
        self.trace_id = rng.randbytes(16).hex()

    def span(self, process: str, name: str, kind: str, start: int, dur_ms: float, parent: str = "",
             attributes: dict[str, Any] | None = None, case: bool = True,
             links: Sequence[tuple[str, str]] = ()) -> str:
        span_id = self.rng.randbytes(8).hex()
        attrs = {CASE_ATTR: self.case_no} if case else {}
        attrs.update(attributes or {})
        attrs["thread.name"] = f"{process}-{self.rng.randrange(8)}"
        end = start + int(dur_ms * MS)
        self.out.append((end, process, span_json(self.trace_id, span_id, parent, name, kind, start, end,
                                                 attrs, links)))
        return span_id

    def store(self, process: str, service: str, parent: str, start: int, ops: Sequence[str]) -> int:
        """Database and object store calls under `parent`, one after the other; returns the end."""
        t = start
        for op in ops:
            dur = self.rng.uniform(0.4, 3.0)
            if op.startswith("s3 "):
                self.span(process, op, "client", t, dur, parent, {
                    "rpc.system": "s3", "server.address": "127.0.0.1", "server.port": 8333,
                    "aws.s3.bucket": "materials", "aws.s3.key": f"cases/{self.case_no}/m{self.rng.randrange(9)}",
                    "http.response.status_code": 200}, case=False)
            else:
                self.span(process, op, "client", t, dur, parent, {
                    "db.system": "mongodb", "db.name": f"onething_{service}", "db.operation": op.split()[1],
                    "db.mongodb.collection": op.split()[2], "server.address": "127.0.0.1", "server.port": 27017,
                    "db.statement": '{"filter":{"_id":"?"},"update":"?"}'}, case=False)
            t += int(dur * MS) + self.rng.randrange(50_000, 400_000)
        return t

    def publish(self, process: str, exchange: str, key: str, start: int, parent: str,
                links: Sequence[tuple[str, str]] = ()) -> str:
        return self.span(process, f"{exchange} publish", "producer", start, self.rng.uniform(0.3, 1.5), parent, {
            "messaging.system": "rabbitmq", "messaging.operation": "publish",
            "messaging.destination.name": exchange, "messaging.rabbitmq.destination.routing_key": key,
            "messaging.message.id": self.rng.randbytes(8).hex(), "server.address": "127.0.0.1",
            "server.port": 5672}, links=links)

    def consume(self, process: str, queue: str, key: str, start: int, dur_ms: float, parent: str,
                handler: str) -> str:
        return self.span(process, f"{queue} process", "consumer", start, dur_ms, parent, {
            "messaging.system": "rabbitmq", "messaging.operation": "process",
            "messaging.destination.name": queue, "messaging.rabbitmq.destination.routing_key": key,
            "messaging.message.id": self.rng.randbytes(8).hex(), "onething.handler": handler,
            "messaging.consumer.group.name": queue})

    def rpc(self, process: str, service: str, method: str, start: int, dur_ms: float, parent: str = "") -> str:
        return self.span(process, f"/onething.{service}.v1.{service.title().replace('_', '')}Service/{method}",
                         "server", start, dur_ms, parent, {
                             "rpc.system": "grpc", "rpc.service": f"onething.{service}.v1", "rpc.method": method,
                             "rpc.grpc.status_code": 0, "network.peer.address": "127.0.0.1",
                             "user_agent.original": "grpc-python/1.76.0 grpc-c/51.0.0 (linux; chttp2)"})


def generate_case(rng: random.Random, case_no: str, t0: int, out: list[tuple[int, str, str]]) -> int:
    """The spans of one case; returns how many."""
    before = len(out)
    a = Trace(rng, out, case_no)
    submit = a.rpc("intake-api", "intake", "SubmitCase", t0, 45)
    ask = a.span("intake-api", "/onething.catalog.v1.CatalogService/GetPackage", "client", t0 + MS, 4, submit,
                 {"rpc.system": "grpc", "rpc.service": "onething.catalog.v1", "rpc.method": "GetPackage",
                  "server.address": "127.0.0.1", "server.port": 50051})
    answer = a.rpc("catalog-api", "catalog", "GetPackage", t0 + MS + 300_000, 3, ask)
    a.store("catalog-api", "catalog", answer, t0 + 2 * MS, ["mongo find packages"])
    t = a.store("intake-api", "intake", submit, t0 + 6 * MS, ["s3 stat_object", "s3 copy_object",
                                                            "mongo insert cases", "mongo update outbox"])
    pub = a.publish("intake-api", "intake.events", "case_submitted", t, submit)
    t = t0 + 60 * MS
    opened = a.consume("joint_review-worker", "joint_review.on_case_submitted", "case_submitted", t, 30, pub,
                       "on_case_submitted")
    t = a.store("joint_review-worker", "joint_review", opened, t + MS, ["mongo find sessions", "mongo insert sessions",
                                                                       "mongo update sessions"])
    licence_items = []
    for code, dept, licence in ITEMS:
        region = "440100" if rng.random() < 0.8 else "440300"
        desk = f"desk-{dept}-{region}"
        assign = a.publish("joint_review-worker", "joint_review.events", f"task_assigned.{dept}.{region}", t, opened)
        td = t + rng.randrange(5, 200) * MS
        got = a.consume(desk, f"desk.{dept}.{region}", f"task_assigned.{dept}.{region}", td, 8, assign, "on_task")
        a.span(desk, f"decide {code}", "internal", td + MS, 4, got, {"onething.item_code": code,
                                                                     "onething.decision": "approved"})
        opinion = a.publish(desk, "desk.opinions", f"opinion.{dept}.{region}.{region}", td + 6 * MS, got)
        tr = td + rng.randrange(5, 50) * MS
        rec = a.consume("joint_review-worker", "joint_review.on_opinion", "opinion", tr, 12, opinion, "on_opinion")
        end = a.store("joint_review-worker", "joint_review", rec, tr + MS, ["mongo find sessions",
                                                                           "mongo update sessions"])
        recorded = a.publish("joint_review-worker", "joint_review.events", "opinion_recorded", end, rec)
        if licence:
            licence_items.append((recorded, end))
    last, closing = t + 400 * MS, opened
    for recorded, t_rec in licence_items:
        te = t_rec + rng.randrange(10, 80) * MS
        issue = a.consume("elicense-worker", "elicense.on_opinion_recorded", "opinion_recorded", te, 25, recorded,
                          "on_opinion_recorded")
        end = a.store("elicense-worker", "elicense", issue, te + MS, ["mongo find licences", "s3 put_object",
                                                                     "mongo insert licences"])
        issued = a.publish("elicense-worker", "elicense.events", "license_issued", end, issue)
        tj = end + rng.randrange(5, 40) * MS
        done = a.consume("joint_review-worker", "joint_review.on_license_issued", "license_issued", tj, 10, issued,
                         "on_license_issued")
        end = a.store("joint_review-worker", "joint_review", done, tj + MS, ["mongo update sessions"])
        if end > last:
            last, closing = end, done
    concluded = a.publish("joint_review-worker", "joint_review.events", "case_concluded", last, closing)
    tdl = last + rng.randrange(10, 60) * MS
    deliver = a.consume("delivery-worker", "delivery.on_case_concluded", "case_concluded", tdl, 30, concluded,
                        "on_case_concluded")
    end = a.store("delivery-worker", "delivery", deliver, tdl + MS, ["mongo insert deliveries", "s3 presigned_get",
                                                                    "mongo update deliveries"])
    dispatched = a.publish("delivery-worker", "delivery.events", "delivery_dispatched", end, deliver)
    ti = end + rng.randrange(10, 60) * MS
    marked = a.consume("intake-worker", "intake.on_delivery_dispatched", "delivery_dispatched", ti, 8, dispatched,
                       "on_delivery_dispatched")
    a.store("intake-worker", "intake", marked, ti + MS, ["mongo update cases"])

    b = Trace(rng, out, case_no)  # the applicant follows the case, hours later
    tb = t0 + rng.randrange(1, 6 * 3600) * 1_000_000_000
    for api, method, collection in (("intake", "GetCase", "cases"), ("joint_review", "GetSession", "sessions"),
                                    ("elicense", "ListLicenses", "licences"), ("delivery", "GetDelivery",
                                                                               "deliveries")):
        get = b.rpc(f"{api}-api", api, method, tb, 6)
        b.store(f"{api}-api", api, get, tb + MS, [f"mongo find {collection}"])
        tb += rng.randrange(5, 120) * 1_000_000_000

    c = Trace(rng, out, case_no)  # the rating, a day or two later; its publish links to the submission
    tc = t0 + rng.randrange(20 * 3600, 48 * 3600) * 1_000_000_000
    rate = c.rpc("evaluation-api", "evaluation", "SubmitEvaluation", tc, 20)
    end = c.store("evaluation-api", "evaluation", rate, tc + MS, ["mongo insert evaluations"])
    rated = c.publish("evaluation-api", "evaluation.events", "evaluation_received", end, rate,
                      links=[(a.trace_id, submit)])
    tr = end + rng.randrange(5, 50) * MS
    got = c.consume("intake-worker", "intake.on_evaluation_received", "evaluation_received", tr, 9, rated,
                    "on_evaluation_received")
    c.store("intake-worker", "intake", got, tr + MS, ["mongo update cases"])
    got = c.consume("evaluation-worker", "evaluation.on_evaluation_received", "evaluation_received", tr, 7, rated,
                    "on_evaluation_received")
    c.store("evaluation-worker", "evaluation", got, tr + MS, ["mongo update evaluations"])
    return len(out) - before


def processes() -> list[tuple[str, str]]:
    """(service.name, site) of the ~30 processes whose files the spans go to."""
    procs = [(f"{s}-api", "440100") for s in APIS] + [(f"{s}-worker", "440100") for s in APIS]
    return procs + [(f"desk-{dept}-{region}", region) for dept, region in DESKS]


class SpanWriter:
    """The files of one process: lines of batched spans, a new file past FILE_BYTES."""

    def __init__(self, folder: str, service: str, site: str, pid: int):
        self.folder, self.service, self.site, self.pid = folder, service, site, pid
        self.seq, self.size = 1, 0
        self.batch: list[str] = []
        self.batch_start = 0

    def path(self) -> str:
        return os.path.join(self.folder, f"{self.service}-{self.pid}-{self.seq:06d}.jsonl")

    def add(self, end_ns: int, span: str) -> int:
        written = 0
        if self.batch and end_ns - self.batch_start > BATCH_NS:
            written = self.flush()
        if not self.batch:
            self.batch_start = end_ns
        self.batch.append(span)
        if len(self.batch) >= BATCH_SPANS:
            written += self.flush()
        return written

    def flush(self) -> int:
        if not self.batch:
            return 0
        if self.size > FILE_BYTES:
            self.seq, self.size = self.seq + 1, 0
        data = (request_line(self.service, self.site, self.batch, f"{self.service}-{self.pid}") + "\n").encode()
        with open(self.path(), "ab") as fh:
            fh.write(data)
        self.size += len(data)
        self.batch = []
        return len(data)


def generate(folder: str, cases: int, seed: int = 7, first: int = 0, every_ms: int = 250,
             writers: dict[str, SpanWriter] | None = None) -> tuple[dict[str, int], int, dict[str, SpanWriter]]:
    """Write `cases` cases' spans into `folder`; returns ({case number: spans}, bytes, the writers)."""
    rng = random.Random(seed + first)
    os.makedirs(folder, exist_ok=True)
    if writers is None:
        writers = {service: SpanWriter(folder, service, site, 20000 + i) for i, (service, site)
                   in enumerate(processes())}
    t_base = 1_764_115_200_000_000_000 + first * every_ms * MS  # 2025-11-26 08:00 +08:00
    out: list[tuple[int, str, str]] = []
    counts = {}
    for i in range(first, first + cases):
        day, seq = divmod(i, 5000)
        case_no = f"440100XSECS{20251126 + day}{seq + 1:04d}"
        counts[case_no] = generate_case(rng, case_no, t_base + (i - first) * every_ms * MS, out)
    out.sort(key=lambda e: e[0])  # spans are exported as they end
    written = 0
    for end_ns, service, span in out:
        written += writers[service].add(end_ns, span)
    for writer in writers.values():
        written += writer.flush()
    return counts, written, writers


# --- the measurement ---------------------------------------------------------------------------

def evict(folder: str) -> None:
    """Drop this folder's files (span files and index) from the page cache: the next reads go to disk."""
    for entry in os.scandir(folder):
        if entry.is_file():
            fd = os.open(entry.path, os.O_RDONLY)
            try:
                os.fsync(fd)  # pages still dirty are not dropped
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def figures(name: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    return (f"{name}: n={len(ms)} p50 {statistics.median(ms):.0f} ms, p90 {ms[int(0.9 * (len(ms) - 1))]:.0f} ms, "
            f"max {ms[-1]:.0f} ms")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--dir", default=os.path.join(settings().var_dir, "timeline_bench"))
    parser.add_argument("--lookups", type=int, default=50, help="warm look-ups in this process")
    parser.add_argument("--processes", type=int, default=10, help="look-ups in new processes (each kind)")
    parser.add_argument("--every-ms", type=int, default=250,
                        help="a new case every this many ms (fewer: fuller batches, up to 512 spans a line)")
    parser.add_argument("--keep", action="store_true", help="keep the generated folder")
    args = parser.parse_args(argv)
    if args.cases < 1:
        parser.error("--cases must be at least 1")
    from tools import timeline
    from tools.spanindex import INDEX_NAME, SpanIndex

    folder = os.path.abspath(args.dir)
    if os.path.exists(folder):
        shutil.rmtree(folder)
    try:
        t = time.perf_counter()
        counts, written, writers = generate(folder, args.cases, every_ms=args.every_ms)
        files = [e for e in os.scandir(folder) if e.name.endswith(".jsonl")]
        print(f"generated {len(counts)} cases (one every {args.every_ms} ms), {sum(counts.values())} spans "
              f"({sum(counts.values()) / len(counts):.0f} per case), {written / 1e6:.0f} MB in {len(files)} files "
              f"in {time.perf_counter() - t:.1f} s")

        t = time.perf_counter()
        with SpanIndex(folder) as index:
            stats = index.update()
            build = time.perf_counter() - t
            sizes = index.counts()
        print(f"index built in {build:.1f} s ({stats.bytes_indexed / 1e6 / build:.0f} MB/s): {stats.lines} lines, "
              f"{sizes['trace_lines']} trace-line entries, {sizes['cases']} cases, "
              f"{os.path.getsize(os.path.join(folder, INDEX_NAME)) / 1e6:.0f} MB")

        rng = random.Random(11)
        sample = rng.sample(sorted(counts), min(len(counts), args.lookups))
        warm = []
        for case_no in sample:
            t = time.perf_counter()
            case = timeline.load_case(case_no, [folder])
            timeline.text_lines(case)
            warm.append(time.perf_counter() - t)
            if case.span_count != counts[case_no] or len(case.sections) != 3:
                print(f"WRONG: case {case_no} came back with {case.span_count} spans in {len(case.sections)} "
                      f"traces, {counts[case_no]} spans in 3 traces were written")
                return 1
        print(figures("warm look-up (this process: index check, read, nest, text)", warm))
        t = time.perf_counter()
        from tools.timeline_html import render
        render(timeline.load_case(sample[0], [folder]))
        print(f"one look-up with the HTML page: {(time.perf_counter() - t) * 1000:.0f} ms")

        def run(case_no: str) -> float:
            t = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "tools.timeline", case_no, "--spans", folder],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"python -m tools.timeline {case_no} failed: {done.stderr}")
            return time.perf_counter() - t

        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import tools.timeline"], check=True)
        print(f"a new python that only imports tools.timeline: {(time.perf_counter() - t) * 1000:.0f} ms")
        cold = [run(c) for c in rng.sample(sorted(counts), min(len(counts), args.processes))]
        print(figures("new process (python -m tools.timeline, files in the page cache)", cold))
        uncached = []
        for case_no in rng.sample(sorted(counts), min(len(counts), args.processes)):
            evict(folder)
            uncached.append(run(case_no))
        print(figures("new process, the folder's files evicted from the page cache first", uncached))

        t = time.perf_counter()
        with SpanIndex(folder) as index:
            index.update()
        print(f"index check with nothing new: {(time.perf_counter() - t) * 1000:.0f} ms")
        more, added, _ = generate(folder, 100, first=args.cases, every_ms=args.every_ms, writers=writers)
        t = time.perf_counter()
        with SpanIndex(folder) as index:
            stats = index.update()
        print(f"100 more cases appended ({added / 1e6:.1f} MB): indexed in {(time.perf_counter() - t) * 1000:.0f} ms "
              f"({stats.lines} lines)")
        new_case = sorted(more)[0]
        case = timeline.load_case(new_case, [folder])
        if case.span_count != more[new_case]:
            print(f"WRONG: appended case {new_case} has {case.span_count} spans, {more[new_case]} were written")
            return 1
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
