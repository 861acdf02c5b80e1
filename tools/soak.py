"""The soak run: 新生儿出生 cases driven through the running suite for a long time (30 minutes by
default, or a number of cases), C in flight, with a sample every minute of what must stay flat:

- throughput: cases concluded in the minute, and their p50 / p95 from submit to `case_concluded`;
- memory: the resident set of every process of the suite (the supervised children in var/run);
- disk: the span folder, the log folder (rotated files included) and the MongoDB data folder.

    make soak                                      (restarts the suite with small rotation sizes)
    python -m tools.soak [--minutes M | --cases N] [--concurrency C] [--interval S]

At the end it prints the per-minute table and three verdicts, with the figures behind them:
throughput flat (the last third's mean within 10 % of the first third's after the first minute),
memory bounded (no process's RSS grew by more than --rss-growth-mib after the first sample), and
span and log files within their rotation (the span folder under ONETHING_SPANS_KEEP_BYTES plus one
file per process, each log under (ONETHING_LOG_FILES_KEPT + 1) × ONETHING_LOG_FILE_BYTES). The
samples are also written as JSON lines to var/soak/<time>.jsonl. Exit status 1 when a case failed or
a verdict is no; figures are reported, never asserted on time."""
import argparse
import datetime
import glob
import json
import os
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc

from services.common.config import settings
from tools.bench import ConcludedListener, applicant_for, machine, pct, preflight
from tools.client import Suite

MIB = 1024 * 1024


# what a sample reads ---------------------------------------------------------------------------
def processes(run_dir):
    """{name: pid} of the suite's supervised children (var/run/<name>.child.pid)."""
    found = {}
    for path in glob.glob(os.path.join(run_dir, "*.child.pid")):
        try:
            with open(path, encoding="utf-8") as fh:
                found[os.path.basename(path)[:-len(".child.pid")]] = int(fh.read().strip())
        except (OSError, ValueError):
            continue
    return found


def rss_bytes(pid):
    """Resident set of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def folder_bytes(path, pattern="*"):
    total = 0
    for name in glob.glob(os.path.join(path, "**", pattern), recursive=True):
        try:
            if os.path.isfile(name):
                total += os.path.getsize(name)
        except OSError:
            continue
    return total


def mongo_data_dir(default):
    """The folder the local MongoDB server (SecantusDB) keeps its data in, read from its command
    line (`--storage-path`; the server may have been started by another checkout's var/), else
    `default`."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                argv = fh.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        found = storage_path(argv)
        if found:
            return found
    return default


def storage_path(argv):
    """The `--storage-path` of a SecantusDB server's command line, or None for any other."""
    if any("secantusd" in os.path.basename(a) for a in argv[:3]) and "--storage-path" in argv:
        i = argv.index("--storage-path")
        if i + 1 < len(argv):
            return argv[i + 1]
    return None


def largest_log(log_dir):
    """(name, bytes) of the process whose log files (rotated ones included) take the most."""
    sizes: dict[str, int] = {}
    for path in glob.glob(os.path.join(log_dir, "*.log*")):
        base = os.path.basename(path).split(".log")[0]
        try:
            sizes[base] = sizes.get(base, 0) + os.path.getsize(path)
        except OSError:
            continue
    return max(sizes.items(), key=lambda kv: kv[1]) if sizes else ("-", 0)


# verdicts --------------------------------------------------------------------------------------
def flatness(rates):
    """(first third's mean, last third's mean, change as a fraction) of per-interval throughput,
    the first interval (warm-up) left out; None with fewer than three intervals after it."""
    rest = rates[1:]
    if len(rest) < 3:
        return None
    third = max(1, len(rest) // 3)
    first, last = sum(rest[:third]) / third, sum(rest[-third:]) / third
    return first, last, (last - first) / first if first else 0.0


def memory_growth(samples):
    """{process: RSS growth in bytes from its first sample to its last} (processes seen twice)."""
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for sample in samples:
        for name, rss in sample["rss"].items():
            if rss is None:
                continue
            first.setdefault(name, rss)
            last[name] = rss
    return {name: last[name] - first[name] for name in last if name in first}


# the run ---------------------------------------------------------------------------------------
class Soak:
    def __init__(self, concurrency, timeout, deadline=None, cases=None):
        self.concurrency, self.timeout, self.deadline, self.cases = concurrency, timeout, deadline, cases
        self.listener = ConcludedListener(settings().amqp_uri)
        self.lock = threading.Lock()
        self.next_index = 0
        self.done: list[tuple[float, float]] = []   # (submitted, concluded) perf_counter times
        self.failed: list[str] = []
        self.stop = threading.Event()
        self.t_start = time.perf_counter()
        self.mongo_dir = mongo_data_dir(os.path.join(settings().var_dir, "data", "mongo"))
        self.base_day = datetime.date(1970, 1, 1) + datetime.timedelta(days=random.randrange(0, 365 * 30))

    def _take(self):
        with self.lock:
            if self.stop.is_set() or (self.cases is not None and self.next_index >= self.cases) or (
                    self.deadline is not None and time.perf_counter() >= self.deadline):
                return None
            self.next_index += 1
            return self.next_index - 1

    def driver(self, needed):
        suite = Suite()
        while (i := self._take()) is not None:
            applicant = applicant_for(i, self.base_day)
            try:
                materials = suite.upload_all(applicant.id_number, needed)
                t0 = time.perf_counter()
                case = suite.submit(applicant, materials)
            except grpc.RpcError as exc:
                self._fail(f"case {i}: {exc.code().name}: {exc.details()}")
                continue
            done = self.listener.wait(case.case_no, t0 + self.timeout)
            if done is None:
                self._fail(f"{case.case_no}: no case_concluded within {self.timeout:g} s")
                continue
            with self.lock:
                self.done.append((t0, done))

    def _fail(self, what):
        with self.lock:
            self.failed.append(what)
            if len(self.failed) >= 20:  # something is broken: stop rather than pile up
                self.stop.set()
        print(f"   FAILED {what}", file=sys.stderr, flush=True)

    def concluded_between(self, start, end):
        with self.lock:
            return [(c - s) * 1000 for s, c in self.done if start <= c < end]


def sample(soak, start, end, run_dir, s):
    lat = soak.concluded_between(start, end)
    procs = processes(run_dir)
    log_name, log_bytes = largest_log(os.path.join(s.var_dir, "log"))
    return {"at": time.time(), "minute_end_s": round(end - soak.t_start, 1), "seconds": end - start,
            "concluded": len(lat),
            "rate": len(lat) / (end - start), "p50_ms": pct(lat, 50) if lat else None,
            "p95_ms": pct(lat, 95) if lat else None,
            "rss": {name: rss_bytes(pid) for name, pid in sorted(procs.items())},
            "spans_bytes": folder_bytes(s.spans_dir), "logs_bytes": folder_bytes(os.path.join(s.var_dir, "log")),
            "largest_log": [log_name, log_bytes], "mongo_bytes": folder_bytes(soak.mongo_dir)}


def print_row(row):
    rss = [v for v in row["rss"].values() if v]
    p50 = f"{row['p50_ms']:.0f}" if row["p50_ms"] is not None else "-"
    p95 = f"{row['p95_ms']:.0f}" if row["p95_ms"] is not None else "-"
    print(f"| {row['minute_end_s']:7.0f} | {row['concluded']:5d} | {row['rate']:6.2f} | {p50:>6} | {p95:>6} | "
          f"{(max(rss) if rss else 0) / MIB:7.0f} | {sum(rss) / MIB:8.0f} | {row['spans_bytes'] / MIB:7.0f} | "
          f"{row['logs_bytes'] / MIB:6.1f} | {row['mongo_bytes'] / MIB:7.0f} |", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long to drive cases (default 30)")
    parser.add_argument("--cases", type=int, default=None, help="stop after this many cases instead")
    parser.add_argument("--concurrency", type=int, default=8, help="cases in flight (default 8)")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between samples (default 60)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a case may take (default 120)")
    parser.add_argument("--rss-growth-mib", type=float, default=64.0,
                        help="the most a process's memory may grow after the first sample (default 64 MiB)")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.concurrency < 1 or args.interval <= 0 or args.timeout <= 0 or (
            args.cases is not None and args.cases < 1):
        parser.error("--minutes, --interval and --timeout must be positive, --concurrency and --cases at least 1")

    s = settings()
    m = machine()
    print(f"machine: {m['cpu']}, {m['cores']} cores, {m['mem']}, Python {m['python']}")
    print(f"limits: spans {s.spans_file_bytes / MIB:.0f} MiB a file, {s.spans_keep_bytes / MIB:.0f} MiB kept; "
          f"logs {s.log_file_bytes / MIB:.0f} MiB a file, {s.log_files_kept} rotated kept")
    preflight()
    run_dir = os.path.join(s.var_dir, "run")
    os.makedirs(os.path.join(s.var_dir, "soak"), exist_ok=True)
    out_path = os.path.join(s.var_dir, "soak", time.strftime("%Y%m%dT%H%M%S") + ".jsonl")
    soak = Soak(args.concurrency, args.timeout, cases=args.cases,
                deadline=None if args.cases else time.perf_counter() + args.minutes * 60)
    soak.listener.start()
    needed = Suite().required_materials()
    samples = []
    print(f"\nsoak: 新生儿出生, {args.concurrency} in flight, "
          + (f"{args.cases} cases" if args.cases else f"{args.minutes:g} minutes") + f"; samples in {out_path}\n")
    print("| end (s) | cases | per s | p50 ms | p95 ms | max RSS MiB | all RSS MiB | spans MiB | logs MiB | mongo MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    pool = ThreadPoolExecutor(max_workers=args.concurrency, thread_name_prefix="soak")
    futures = [pool.submit(soak.driver, needed) for _ in range(args.concurrency)]
    last = soak.t_start
    try:
        with open(out_path, "w", encoding="utf-8") as out:
            while True:
                finished = all(f.done() for f in futures)
                now = time.perf_counter()
                if now - last >= args.interval or finished:
                    if now - last >= 1.0:
                        row = sample(soak, last, now, run_dir, s)
                        samples.append(row)
                        out.write(json.dumps(row) + "\n")
                        out.flush()
                        print_row(row)
                    last = now
                if finished:
                    break
                time.sleep(0.5)
    except KeyboardInterrupt:
        soak.stop.set()
        print("\n(stopped early)")
    finally:
        pool.shutdown(wait=True)
        soak.listener.stop()
    for f in futures:
        if f.exception() is not None:
            soak.failed.append(f"driver: {type(f.exception()).__name__}: {f.exception()}")
    return verdict(samples, soak, s, args)


def verdict(samples, soak, s, args):
    total = len(soak.done)
    lat = [(c - t) * 1000 for t, c in soak.done]
    wall = time.perf_counter() - soak.t_start
    print(f"\n{total} cases concluded in {wall / 60:.1f} min ({total / wall:.2f} per s)"
          + (f", p50 {pct(lat, 50):.0f} ms, p95 {pct(lat, 95):.0f} ms" if lat else "")
          + f"; {len(soak.failed)} failed")
    ok = not soak.failed
    full = [r["rate"] for r in samples if r["seconds"] >= 0.9 * args.interval]  # not the last, partial one
    flat = flatness(full)
    if flat is None:
        print("throughput flat: not judged (fewer than four full intervals)")
    else:
        first, last, change = flat
        good = change >= -0.10
        ok &= good
        print(f"throughput flat: {'yes' if good else 'NO'} (first third {first:.2f}/s, last third {last:.2f}/s, "
              f"{100 * change:+.1f} %)")
    growth = memory_growth(samples)
    if len(samples) >= 2 and growth:
        worst = max(growth.items(), key=lambda kv: kv[1])
        good = worst[1] <= args.rss_growth_mib * MIB
        ok &= good
        print(f"memory bounded: {'yes' if good else 'NO'} (largest growth {worst[1] / MIB:+.1f} MiB, {worst[0]}; "
              f"bound {args.rss_growth_mib:g} MiB; {len(growth)} processes)")
    if samples:
        end = samples[-1]
        spans_bound = s.spans_keep_bytes + s.spans_file_bytes * max(1, len(end["rss"]))
        log_bound = (s.log_files_kept + 1) * s.log_file_bytes + 65536
        good = end["spans_bytes"] <= spans_bound and end["largest_log"][1] <= log_bound
        ok &= good
        print(f"files within rotation: {'yes' if good else 'NO'} (spans {end['spans_bytes'] / MIB:.0f} MiB of at most "
              f"{spans_bound / MIB:.0f}; largest log {end['largest_log'][0]} {end['largest_log'][1] / MIB:.1f} MiB of at "
              f"most {log_bound / MIB:.1f})")
    for what in soak.failed[:10]:
        print(f"   {what}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
