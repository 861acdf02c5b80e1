"""Print one case's whole timeline: every trace in which a span carries its case number, across
services and sites, each trace a section, its spans nested under their parents.

    python -m tools.timeline CASE_NO [--spans DIR ...] [--sites] [--html OUT.html]

A case lasts days: its submission, the desks' decisions, later look-ups and the rating may be
separate traces (and the desks of another region record theirs at that region's site). The case is
all of them: every trace in which any span carries `onething.case_no`, with all the spans of those
traces. Each span shows its start offset from the case's first span, its duration, service@site,
ERROR when it failed, and its name; a link to another span of the case reads "← linked from
<service> <name>". `--sites` reads every site of `make run-sites` (var/sites/<region>/spans); each
span is tagged with its site (resource attribute `onething.site`, else the folder's region).
`--html` writes a self-contained HTML waterfall instead of printing the text view.

The span folders are indexed (tools/spanindex.py, `<folder>/.index.sqlite`): each run indexes only
what was appended since the last one and reads only the lines of the case's traces.
Exit status: 0 shown, 1 no spans for the case (or no span folder), 2 bad arguments.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import glob
import os
import sys
from collections.abc import Callable, Iterable, Sequence

from services.common.china import SHANGHAI
from services.common.config import settings
from services.intake.domain import CASE_NO_RE
from tools.spanindex import Span, SpanFileError, case_spans


@dataclasses.dataclass(frozen=True)
class Row:
    depth: int
    span: Span
    orphan: bool  # its parent was not recorded (a process killed before it exported, a folder not read)
    linked_from: tuple[Span, ...]


@dataclasses.dataclass(frozen=True)
class Section:
    """One trace of the case."""
    number: int
    trace_id: str
    title: str  # the root span's name
    start_ns: int
    end_ns: int
    services: tuple[str, ...]  # in order of first appearance
    sites: tuple[str, ...]
    rows: tuple[Row, ...]

    @property
    def errors(self) -> int:
        return sum(1 for r in self.rows if r.span.error)

    @property
    def orphans(self) -> int:
        return sum(1 for r in self.rows if r.orphan)


@dataclasses.dataclass(frozen=True)
class CaseTimeline:
    case_no: str
    sections: tuple[Section, ...]

    @property
    def start_ns(self) -> int:
        return min(s.start_ns for s in self.sections)

    @property
    def end_ns(self) -> int:
        return max(s.end_ns for s in self.sections)

    @property
    def span_count(self) -> int:
        return sum(len(s.rows) for s in self.sections)

    @property
    def services(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(svc for s in self.sections for svc in s.services))

    @property
    def sites(self) -> tuple[str, ...]:
        return tuple(sorted({site for s in self.sections for site in s.sites}))

    def section_of(self, trace_id: str) -> int:
        return next((s.number for s in self.sections if s.trace_id == trace_id), 0)


def check_case_no(case_no: str) -> str:
    if not CASE_NO_RE.fullmatch(case_no or ""):
        raise ValueError(f"{case_no[:80]!r} is not a case number (6 to 64 digits and capital letters, "
                         "e.g. 440100XSECS202611260001)")
    return case_no


# --- building the case -------------------------------------------------------------------------

def _order(span: Span) -> tuple[int, int, str]:
    return span.start_ns, -span.end_ns, span.span_id


def _nest(spans: Sequence[Span]) -> list[tuple[int, Span, bool]]:
    """(depth, span, orphan) in start order, children under their parents."""
    ids = {s.span_id for s in spans}
    children: dict[str, list[Span]] = {}
    tops: list[Span] = []
    for s in sorted(spans, key=_order):
        if s.parent_id and s.parent_id in ids and s.parent_id != s.span_id:
            children.setdefault(s.parent_id, []).append(s)
        else:
            tops.append(s)
    out: list[tuple[int, Span, bool]] = []
    seen: set[str] = set()

    def walk(top: Span) -> None:
        stack = [(0, top)]
        while stack:
            depth, span = stack.pop()
            if span.span_id in seen:
                continue
            seen.add(span.span_id)
            out.append((depth, span, bool(span.parent_id) and span.parent_id not in ids))
            stack.extend((depth + 1, c) for c in reversed(children.get(span.span_id, [])))

    for top in tops:
        walk(top)
    for span in sorted(spans, key=_order):  # parents that point in a circle: shown at the top level
        if span.span_id not in seen:
            walk(span)
    return out


def _linked(span: Span, every: dict[tuple[str, str], Span]) -> tuple[Span, ...]:
    """The spans of the case this span links to, but its parent: a consumer links to the producer it
    is also the child of (the creation-context link), which the nesting already shows."""
    return tuple(every[link] for link in dict.fromkeys(span.links)
                 if link in every and link != (span.trace_id, span.parent_id))


def build(case_no: str, spans: Iterable[Span]) -> CaseTimeline:
    """The case's sections (one per trace, ordered by their first span) from its spans."""
    by_trace: dict[str, dict[str, Span]] = {}
    for span in spans:
        by_trace.setdefault(span.trace_id, {}).setdefault(span.span_id, span)
    every = {(s.trace_id, s.span_id): s for trace in by_trace.values() for s in trace.values()}
    ordered = sorted(by_trace.items(), key=lambda kv: (min(s.start_ns for s in kv[1].values()), kv[0]))
    sections = []
    for number, (trace_id, members) in enumerate(ordered, 1):
        trace_spans = sorted(members.values(), key=_order)
        roots = [s for s in trace_spans if not s.parent_id]
        title = roots[0].name if roots else f"{trace_spans[0].name} (root span not recorded)"
        rows = tuple(Row(depth, span, orphan, _linked(span, every)) for depth, span, orphan in _nest(trace_spans))
        sections.append(Section(
            number=number, trace_id=trace_id, title=title,
            start_ns=trace_spans[0].start_ns, end_ns=max(s.end_ns for s in trace_spans),
            services=tuple(dict.fromkeys(s.service for s in trace_spans)),
            sites=tuple(sorted({s.site for s in trace_spans if s.site})), rows=rows))
    return CaseTimeline(case_no, tuple(sections))


def load_case(case_no: str, spans_dir: str | Sequence[str] | None = None) -> CaseTimeline:
    """The case from one span folder or several (default: this site's, var/spans)."""
    return build(check_case_no(case_no), case_spans(case_no, _folders(spans_dir)))


def case_trace(case_no: str, spans_dir: str | Sequence[str] | None = None) -> list[Span]:
    """The spans of the case's trace that holds its SubmitCase call (none when no such trace)."""
    for section in load_case(case_no, spans_dir).sections:
        if any(r.span.name.endswith("/SubmitCase") for r in section.rows):
            return [r.span for r in section.rows]
    return []


# --- the text view -----------------------------------------------------------------------------

def moment(ns: int) -> str:
    """A Unix-nanosecond time as China time, to the millisecond."""
    at = datetime.datetime.fromtimestamp(ns / 1e9, SHANGHAI)
    return at.strftime("%Y-%m-%d %H:%M:%S.") + f"{at.microsecond // 1000:03d} +08:00"


def offset(ns: int) -> str:
    """Time since the case's first span: +1.234 s, +1:02:03.456, +2d 01:02:03.456."""
    sign = "-" if ns < 0 else "+"
    ms_total = abs(ns) // 1_000_000
    if ms_total < 60_000:
        return f"{sign}{ms_total / 1000:.3f} s"
    seconds, ms = divmod(ms_total, 1000)
    minutes, sec = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    days, hour = divmod(hours, 24)
    if days:
        return f"{sign}{days}d {hour:02d}:{minute:02d}:{sec:02d}.{ms:03d}"
    return f"{sign}{hour}:{minute:02d}:{sec:02d}.{ms:03d}"


def duration(ns: int) -> str:
    if ns < 1_000_000:
        return f"{ns / 1e6:.3f} ms"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.1f} ms"
    seconds = ns / 1e9
    if seconds < 60:
        return f"{seconds:.3f} s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {sec:02d}s"
    hours, minute = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minute:02d}m"
    days, hour = divmod(hours, 24)
    return f"{days}d {hour:02d}h"


def count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def where(span: Span) -> str:
    return f"{span.service}@{span.site}" if span.site else span.service


def label(span: Span) -> str:
    """The span's name; for a message (`send <exchange>` / `process <exchange>`, as the semantic
    conventions name them) also its routing key and the handler that processed it."""
    text = span.name
    key = span.attributes.get("messaging.rabbitmq.destination.routing_key")
    if key:
        text += f" {key}"
    handler = span.attributes.get("code.function.name")
    if handler:
        text += f" → {handler}"
    return text


def link_text(case: CaseTimeline, section: Section, linked: Span) -> str:
    other = case.section_of(linked.trace_id)
    return f"← linked from {linked.service} {label(linked)}" + (f" (trace {other})" if other != section.number else "")


def text_lines(case: CaseTimeline) -> list[str]:
    t0 = case.start_ns
    sites = f", sites {', '.join(case.sites)}" if case.sites else ""
    lines = [f"case {case.case_no}: {count(case.span_count, 'span')} in {count(len(case.sections), 'trace')}{sites}, "
             f"from {moment(t0)} over {duration(case.end_ns - t0)}"]
    width = min(40, max(len(where(r.span)) for s in case.sections for r in s.rows))
    for section in case.sections:
        notes = [count(len(section.rows), "span")]
        if section.errors:
            notes.append(f"{section.errors} ERROR")
        if section.orphans:
            notes.append(f"{count(section.orphans, 'span')} whose parent was not recorded (shown at the top level)")
        lines += ["",
                  f"── trace {section.number} of {len(case.sections)}: {section.title} ── "
                  f"{moment(section.start_ns)} ({offset(section.start_ns - t0)}), {', '.join(notes)}",
                  f"   trace {section.trace_id}; services: {', '.join(section.services)}",
                  f"{'offset':>16} {'duration':>10}  {'status':6s} {'service@site':{width}s} span"]
        for row in section.rows:
            span = row.span
            text = "  " * row.depth + ("… " if row.orphan else "") + label(span)
            if span.error and span.status_message:
                text += f"  ({span.status_message})"
            for linked in row.linked_from:
                text += "  " + link_text(case, section, linked)
            lines.append(f"{offset(span.start_ns - t0):>16} {duration(span.duration_ns):>10}  "
                         f"{'ERROR' if span.error else '':6s} {where(span):{width}s} {text}")
    return lines


# --- the command -------------------------------------------------------------------------------

def site_folders() -> list[str]:
    """The span folders of every site `make run-sites` started."""
    return sorted(glob.glob(os.path.join(settings().var_dir, "sites", "*", "spans")))


def _folders(spans_dir: str | Sequence[str] | None) -> list[str]:
    if spans_dir is None:
        return [settings().spans_dir]
    if isinstance(spans_dir, str):
        return [spans_dir]
    return list(spans_dir)


def print_case(case_no: str, spans_dir: str | Sequence[str] | None = None, out: Callable[[str], object] = print,
               html: str | None = None) -> int:
    """Show the case (text through `out`, or an HTML waterfall written to `html`); 0 when it has spans,
    1 when none was recorded. A malformed case number raises ValueError."""
    check_case_no(case_no)
    folders = _folders(spans_dir)
    if not folders:
        out("no span folders to read (make run-sites has not run: var/sites/*/spans is empty)")
        return 1
    try:
        spans = case_spans(case_no, folders)
    except SpanFileError as exc:
        out(str(exc))
        return 1
    if not spans:
        out(f"no spans recorded for case {case_no} in {', '.join(folders)}")
        return 1
    case = build(case_no, spans)
    if html:
        from tools.timeline_html import render
        with open(html, "w", encoding="utf-8") as fh:
            fh.write(render(case))
        out(text_lines(case)[0])
        out(f"HTML waterfall written to {html}")
    else:
        for line in text_lines(case):
            out(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.timeline", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("case_no", help="the case number, e.g. 440100XSECS202611260001")
    parser.add_argument("--spans", action="append", metavar="DIR",
                        help="folder of span files (default: var/spans); give it again for more folders")
    parser.add_argument("--sites", action="store_true", help="every site of make run-sites (var/sites/*/spans)")
    parser.add_argument("--html", metavar="OUT.html", help="write a self-contained HTML waterfall to this file")
    args = parser.parse_args(argv)
    if not CASE_NO_RE.fullmatch(args.case_no):
        parser.error(f"{args.case_no[:80]!r} is not a case number (6 to 64 digits and capital letters, "
                     "e.g. 440100XSECS202611260001)")
    folders = (args.spans or []) + (site_folders() if args.sites else [])
    if not args.spans and not args.sites:
        folders = [settings().spans_dir]
    try:
        return print_case(args.case_no, folders, out=print, html=args.html)
    except BrokenPipeError:  # the reader (head, less) stopped reading: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
