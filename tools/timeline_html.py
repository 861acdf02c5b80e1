"""The HTML waterfall of one case (python -m tools.timeline CASE_NO --html out.html): one
self-contained page, no script and nothing fetched from elsewhere. An overview with each trace on
the case's time scale, then a section per trace: one row per span, nested under its parent, its bar
placed on that trace's time scale, a colour per service, failed spans in red; hovering a row shows
the span's attributes. Span names and attributes are data: everything written is escaped."""
from __future__ import annotations

from html import escape

from tools.spanindex import KIND_NAMES, Span
from tools.timeline import CaseTimeline, Row, Section, count, duration, label, link_text, moment, offset, where

_STYLE = """
body{font:13px/1.35 system-ui,"Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:1.2em;color:#222;background:#fff}
h1{font-size:1.3em;margin:0 0 .3em}h2{font-size:1.05em;margin:1.4em 0 .2em}
.meta{color:#555;margin:.1em 0 .5em}.mono{font-family:ui-monospace,Menlo,Consolas,monospace}
.legend span{display:inline-block;margin:0 .8em .3em 0}.legend i,.key{display:inline-block;width:.9em;height:.9em;
vertical-align:-.1em;margin-right:.3em;border-radius:2px}
.row{display:grid;grid-template-columns:minmax(18em,38%) 1fr 6.5em;align-items:center;border-bottom:1px solid #f0f0f0}
.row:hover{background:#f5f8ff}.axis{color:#777;font-size:.85em;border-bottom:1px solid #ccc}
.label{white-space:nowrap;overflow:hidden;text-overflow:ellipsis;padding:1px 0}
.svc{color:#777;font-size:.85em;margin-left:.5em}.lane{position:relative;height:1.1em;margin:0 .5em}
.bar{position:absolute;top:.15em;height:.8em;min-width:2px;border-radius:2px}
.dur{text-align:right;color:#444;font-variant-numeric:tabular-nums}
.axis .lane{height:auto}.axis .end{position:absolute;right:0}
.err .bar{background:#d62728!important;box-shadow:0 0 0 1px #7f0000}.err .name{color:#b00000;font-weight:600}
.link{color:#555;font-size:.85em;margin-left:.5em}.orphan{color:#999}
"""


def _hue(index: int) -> int:
    """Distinct hues for the services, away from the red that marks errors."""
    return 30 + int(index * 137.508) % 300


def _place(start: int, end: int, lo: int, hi: int) -> str:
    scale = max(1, hi - lo)
    left = min(100.0, max(0.0, (start - lo) * 100 / scale))
    width = min(100.0 - left, max(0.0, (end - start) * 100 / scale))
    return f"left:{left:.3f}%;width:{width:.3f}%"


def _title(case: CaseTimeline, section: Section, row: Row) -> str:
    span: Span = row.span
    lines = [span.name, f"{where(span)} · {KIND_NAMES.get(span.kind, str(span.kind))}",
             f"start {offset(span.start_ns - case.start_ns)} from the case's first span ({moment(span.start_ns)}), "
             f"duration {duration(span.duration_ns)}"]
    if span.error:
        lines.append("ERROR" + (f": {span.status_message}" if span.status_message else ""))
    lines.append(f"span {span.span_id}" + (f", parent {span.parent_id}" if span.parent_id else "")
                 + (" (parent not recorded)" if row.orphan else ""))
    lines += [f"{key} = {value}" for key, value in sorted(span.attributes.items())]
    lines += [link_text(case, section, linked) for linked in row.linked_from]
    return "\n".join(lines)


def render(case: CaseTimeline) -> str:
    colour = {service: i for i, service in enumerate(case.services)}
    t0, t1 = case.start_ns, case.end_ns
    out = ["<!DOCTYPE html>", '<html lang="zh-CN"><head><meta charset="utf-8">',
           f"<title>{escape(case.case_no)} timeline</title><style>{_STYLE}",
           "".join(f".c{i}{{background:hsl({_hue(i)} 60% {40 + i % 3 * 10}%)}}" for i in colour.values()),
           "</style></head><body>",
           f"<h1>case <span class=mono>{escape(case.case_no)}</span></h1>",
           f'<p class="meta">{count(case.span_count, "span")} in {count(len(case.sections), "trace")}'
           + (f", sites {escape(', '.join(case.sites))}" if case.sites else "")
           + f", from {escape(moment(t0))} over {escape(duration(t1 - t0))}</p>",
           '<p class="legend">' + "".join(f'<span><i class="c{i}"></i>{escape(service)}</span>'
                                          for service, i in colour.items())
           + '<span><i class="key" style="background:#d62728"></i>ERROR</span></p>',
           "<h2>traces on the case's time scale</h2>",
           f'<div class="row axis"><div class="label">trace</div><div class="lane">{escape(offset(0))}'
           f'<span class="end">{escape(offset(t1 - t0))}</span></div><div class="dur">duration</div></div>']
    for section in case.sections:
        first = colour[section.rows[0].span.service]
        out.append(f'<div class="row{" err" if section.errors else ""}" title="{escape(section.title)}">'
                   f'<div class="label"><a href="#t{section.number}">{section.number}. '
                   f'<span class="name">{escape(section.title)}</span></a></div>'
                   f'<div class="lane"><div class="bar c{first}" style="{_place(section.start_ns, section.end_ns, t0, t1)}">'
                   f'</div></div><div class="dur">{escape(duration(section.end_ns - section.start_ns))}</div></div>')
    for section in case.sections:
        lo, hi = section.start_ns, section.end_ns
        out += [f'<h2 id="t{section.number}">trace {section.number} of {len(case.sections)}: '
                f"{escape(section.title)}</h2>",
                f'<p class="meta">{escape(moment(lo))} ({escape(offset(lo - t0))} from the case\'s first span), '
                f"{count(len(section.rows), 'span')}" + (f", {section.errors} ERROR" if section.errors else "")
                + f'; services {escape(", ".join(section.services))}; trace <span class=mono>'
                f"{escape(section.trace_id)}</span></p>",
                f'<div class="row axis"><div class="label">span</div><div class="lane">{escape(offset(lo - t0))}'
                f'<span class="end">{escape(offset(hi - t0))}</span></div><div class="dur">duration</div></div>']
        for row in section.rows:
            span = row.span
            links = "".join(f'<span class="link">{escape(link_text(case, section, linked))}</span>'
                            for linked in row.linked_from)
            out.append(
                f'<div class="row{" err" if span.error else ""}" title="{escape(_title(case, section, row))}">'
                f'<div class="label" style="padding-left:{min(row.depth, 30) * 1.1:.1f}em">'
                + ('<span class="orphan">… </span>' if row.orphan else "")
                + f'<span class="name">{escape(label(span))}</span>'
                f'<span class="svc">{escape(where(span))}</span>{links}</div>'
                f'<div class="lane"><div class="bar c{colour[span.service]}" '
                f'style="{_place(span.start_ns, span.end_ns, lo, hi)}"></div></div>'
                f'<div class="dur">{escape(duration(span.duration_ns))}</div></div>')
    out.append("</body></html>")
    return "\n".join(out)
