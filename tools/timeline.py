"""Print one case's cross-service timeline from the span files every process writes
(var/spans/*.jsonl): service, operation, start offset, duration, nesting.

    python -m tools.timeline CASE_NO [--spans DIR ...] [--sites]

`--sites` reads every site of `make run-sites` (var/sites/<region>/spans): a case's trace goes on
across the links between sites, and each span is shown with the site that recorded it.
"""
import argparse
import glob
import json
import os

from services.common.config import settings
from services.common.telemetry import CASE_ATTR


def load_spans(spans_dir=None):
    """The spans of one folder, or of several (a list): then each span says which folder's site
    (the folder above `spans`, a region code under var/sites) recorded it."""
    folders = spans_dir if isinstance(spans_dir, list | tuple) else [spans_dir or settings().spans_dir]
    spans = []
    for folder in folders:
        site = os.path.basename(os.path.dirname(os.path.abspath(folder))) if len(folders) > 1 else ""
        for path in glob.glob(os.path.join(folder, "*.jsonl")):
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    line = line.strip()
                    if line:
                        try:
                            span = json.loads(line)
                        except json.JSONDecodeError:
                            continue  # a line cut short by a killed process
                        if site:
                            span["site"] = site
                        spans.append(span)
    return spans


def site_folders():
    """The span folders of every site `make run-sites` started."""
    return sorted(glob.glob(os.path.join(settings().var_dir, "sites", "*", "spans")))


def case_spans(case_no, spans):
    """All spans of the traces in which any span is marked with the case number: the case's own
    trace (from SubmitCase on) and any later look-ups of it made outside that trace."""
    traces = {s["trace_id"] for s in spans if s.get("attributes", {}).get(CASE_ATTR) == case_no}
    return [s for s in spans if s["trace_id"] in traces], traces


def case_trace(case_no, spans):
    """The spans of the one trace that holds the case's SubmitCase call."""
    marked = [s for s in spans if s.get("attributes", {}).get(CASE_ATTR) == case_no]
    submit = [s for s in marked if s["name"].endswith("/SubmitCase")] or marked
    if not submit:
        return []
    trace_id = min(submit, key=lambda s: s["start_ns"])["trace_id"]
    return [s for s in spans if s["trace_id"] == trace_id]


def rows(spans):
    """(depth, span) in start order, children under their parents."""
    by_id = {s["span_id"]: s for s in spans}
    children: dict = {}
    roots = []
    for s in sorted(spans, key=lambda s: s["start_ns"]):
        if s.get("parent_id") in by_id:
            children.setdefault(s["parent_id"], []).append(s)
        else:
            roots.append(s)
    out = []

    def walk(span, depth):
        out.append((depth, span))
        for child in children.get(span["span_id"], []):
            walk(child, depth + 1)

    for root in roots:
        walk(root, 0)
    return out


def print_case(case_no, spans_dir=None, out=print):
    """The case's own trace, from SubmitCase to the rating; look-ups made later in other traces are
    counted, not shown."""
    every = load_spans(spans_dir)
    spans = case_trace(case_no, every)
    if not spans:
        out(f"no spans recorded for case {case_no}")
        return 1
    _, traces = case_spans(case_no, every)
    t0 = min(s["start_ns"] for s in spans)
    others = len(traces) - 1
    out(f"timeline of case {case_no}: {len(spans)} spans in trace {spans[0]['trace_id']}"
        + (f" (+{others} later look-up trace(s) not shown)" if others else ""))
    out(f"{'start ms':>9} {'dur ms':>8}  {'service':22s} operation")
    for depth, s in rows(spans):
        out(f"{(s['start_ns'] - t0) / 1e6:9.1f} {(s['end_ns'] - s['start_ns']) / 1e6:8.1f}  "
            f"{s['service'] + ('@' + s['site'] if s.get('site') else ''):22s} {'  ' * depth}{s['name']}")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case_no")
    parser.add_argument("--spans", action="append", help="folder of span files (default: var/spans); "
                                                         "give it again for more folders")
    parser.add_argument("--sites", action="store_true", help="every site of make run-sites (var/sites/*/spans)")
    args = parser.parse_args()
    folders = (args.spans or []) + (site_folders() if args.sites else [])
    raise SystemExit(print_case(args.case_no, folders if len(folders) > 1 else (folders[0] if folders else None)))


if __name__ == "__main__":
    main()
