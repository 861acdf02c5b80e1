"""The case timeline (tools/timeline.py) and its span index (tools/spanindex.py) on small span files
written in temporary folders in the exporter's format (OTLP/JSON lines, tools/timeline_bench.py's
writer): the case across traces and sites, links, the index kept up to date by appending only, cut
and broken lines, deleted and replaced files, two indexers at once, the HTML page's escaping and
the command's exit codes."""
import json
import os
import subprocess
import sys

import pytest

from services.common.telemetry import CASE_ATTR
from tools import spanindex, timeline
from tools.spanindex import SpanIndex
from tools.timeline_bench import request_line, span_json
from tools.timeline_html import render

CASE = "440100XSECS202611260001"
OTHER = "440100XSECS202611260002"
T0 = 1_764_115_200_000_000_000  # 2025-11-26 08:00:00 +08:00
MS = 1_000_000
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tid(n):
    return f"{n:032x}"


def sid(n):
    return f"{n:016x}"


def span(trace, n, name, start_ms, dur_ms, parent=0, case=None, links=(), error=None, **attributes):
    attrs = {CASE_ATTR: case} if case else {}
    attrs.update(attributes)
    return span_json(tid(trace), sid(n), sid(parent) if parent else "", name, "internal",
                     T0 + int(start_ms * MS), T0 + int((start_ms + dur_ms) * MS), attrs,
                     [(tid(t), sid(s)) for t, s in links], error)


class Process:
    """The span files of one process: `write` appends one exported batch as one line."""

    def __init__(self, folder, service, site="440100", pid=4242, seq=1):
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, f"{service}-{pid}-{seq:06d}.jsonl")
        self.service, self.site = service, site

    def write(self, *spans, end="\n"):
        data = (request_line(self.service, self.site, spans) + end).encode()
        with open(self.path, "ab") as fh:
            fh.write(data)
        return data


def show(case_no, folders, **kw):
    lines = []
    code = timeline.print_case(case_no, folders, out=lines.append, **kw)
    return code, lines


@pytest.fixture
def folder(tmp_path):
    return str(tmp_path / "spans")


# --- the case ----------------------------------------------------------------------------------

def test_each_trace_is_a_section_ordered_by_its_first_span_titled_by_its_root(folder):
    api, worker = Process(folder, "intake-api"), Process(folder, "joint_review-worker", pid=4343)
    # written out of order: the look-up (trace 2) reaches the file first, yet starts later
    api.write(span(2, 20, "/onething.intake.v1.IntakeService/GetCase", 3_600_000, 5, case=CASE),
              span(2, 21, "mongo find cases", 3_600_001, 2, parent=20))
    api.write(span(1, 10, "/onething.intake.v1.IntakeService/SubmitCase", 0, 40, case=CASE),
              span(1, 11, "mongo insert cases", 5, 3, parent=10),
              span(1, 12, "intake.events publish", 30, 1, parent=10, case=CASE),
              span(3, 30, "/onething.intake.v1.IntakeService/SubmitCase", 1, 40, case=OTHER))
    worker.write(span(1, 13, "joint_review.on_case_submitted process", 50, 20, parent=12),
                 span(1, 14, "mongo update sessions", 55, 2, parent=13))

    case = timeline.load_case(CASE, [folder])

    assert [s.trace_id for s in case.sections] == [tid(1), tid(2)]
    assert [s.title for s in case.sections] == ["/onething.intake.v1.IntakeService/SubmitCase",
                                                "/onething.intake.v1.IntakeService/GetCase"]
    first = case.sections[0]
    assert [(r.depth, r.span.name) for r in first.rows] == [
        (0, "/onething.intake.v1.IntakeService/SubmitCase"), (1, "mongo insert cases"),
        (1, "intake.events publish"), (2, "joint_review.on_case_submitted process"), (3, "mongo update sessions")]
    assert first.services == ("intake-api", "joint_review-worker")
    assert case.span_count == 7  # the other case's trace is not there; unmarked spans of its traces are

    code, lines = show(CASE, folder)
    assert code == 0
    assert lines[0].startswith(f"case {CASE}: 7 spans in 2 traces, sites 440100, from 2025-11-26 08:00:00.000 +08:00")
    heads = [line for line in lines if line.startswith("── trace")]
    assert heads == ["── trace 1 of 2: /onething.intake.v1.IntakeService/SubmitCase ── "
                     "2025-11-26 08:00:00.000 +08:00 (+0.000 s), 5 spans",
                     "── trace 2 of 2: /onething.intake.v1.IntakeService/GetCase ── "
                     "2025-11-26 09:00:00.000 +08:00 (+1:00:00.000), 2 spans"]
    row = next(line for line in lines if "joint_review.on_case_submitted process" in line)
    assert row.split() == ["+0.050", "s", "20.0", "ms", "joint_review-worker@440100",
                           "joint_review.on_case_submitted", "process"]
    assert row.endswith("joint_review-worker@440100     joint_review.on_case_submitted process")  # two levels in


def test_a_case_across_three_traces_and_two_sites(tmp_path):
    gz, sz = str(tmp_path / "sites" / "440100" / "spans"), str(tmp_path / "sites" / "440300" / "spans")
    # trace 1: submitted in 深圳, a desk in 广州 decides; the desk's spans carry no case number
    Process(sz, "intake-api", site="440300").write(
        span(1, 10, "/onething.intake.v1.IntakeService/SubmitCase", 0, 30, case=CASE),
        span(1, 11, "joint_review.events publish", 20, 1, parent=10, case=CASE))
    Process(gz, "desk-scjg-440100", site="").write(  # no onething.site: the folder's region
        span(1, 12, "desk.scjg.440100 process", 80, 10, parent=11),
        span(1, 13, "decide 180000000001", 82, 5, parent=12))
    # trace 2: a clerk in 广州 looks the case up
    Process(gz, "intake-api", site="440100").write(
        span(2, 20, "/onething.intake.v1.IntakeService/GetCase", 60_000, 4, case=CASE))
    # trace 3: the rating, back in 深圳
    Process(sz, "evaluation-api", site="440300").write(
        span(3, 30, "/onething.evaluation.v1.EvaluationService/SubmitEvaluation", 86_400_000, 12, case=CASE),
        span(3, 31, "mongo insert evaluations", 86_400_002, 3, parent=30))

    code, lines = show(CASE, [gz, sz])

    assert code == 0, lines
    assert lines[0].startswith(f"case {CASE}: 7 spans in 3 traces, sites 440100, 440300,")
    text = "\n".join(lines)
    assert "desk-scjg-440100@440100" in text and "intake-api@440300" in text and "intake-api@440100" in text
    assert "evaluation-api@440300" in text and "1d 00:00:00.000" in text
    case = timeline.load_case(CASE, [gz, sz])
    assert [len(s.rows) for s in case.sections] == [4, 1, 2]
    assert [(r.depth, r.span.site) for r in case.sections[0].rows] == [(0, "440300"), (1, "440300"),
                                                                       (2, "440100"), (3, "440100")]
    # one site's folder alone holds only part of trace 1, and nothing marks the case in 广州's part of it
    assert timeline.load_case(CASE, [gz]).span_count == 1


def test_links_name_the_linked_span_when_it_is_in_the_case(folder):
    proc = Process(folder, "intake-worker")
    proc.write(span(1, 10, "/onething.intake.v1.IntakeService/SubmitCase", 0, 30, case=CASE),
               span(2, 20, "outbox sweep", 5_000, 10, case=CASE),
               span(2, 21, "intake.events publish", 5_001, 1, parent=20, links=[(1, 10)]),
               span(2, 22, "intake.events publish", 5_003, 1, parent=20, links=[(9, 90)]),  # not in the case
               span(2, 23, "process intake.events", 5_010, 4, parent=21, links=[(2, 21)]),  # its own parent
               span(9, 90, "something else", 0, 1, case=OTHER))

    code, lines = show(CASE, folder)

    assert code == 0
    linked = [line for line in lines if "intake.events publish" in line]
    assert linked[0].endswith("intake.events publish  ← linked from intake-worker "
                              "/onething.intake.v1.IntakeService/SubmitCase (trace 1)")
    assert linked[1].endswith("intake.events publish")
    assert next(line for line in lines if "process intake.events" in line).endswith("  process intake.events")
    assert "something else" not in "\n".join(lines)


def test_errors_are_marked_and_spans_without_their_parent_shown_at_the_top(folder):
    Process(folder, "elicense-worker").write(
        span(1, 10, "elicense.on_opinion_recorded process", 0, 30, case=CASE),
        span(1, 11, "s3 put_object", 5, 3, parent=10, error="SlowDown: reduce your request rate"),
        span(1, 12, "mongo insert licences", 10, 2, parent=77),  # its parent was never exported
        span(1, 13, "loop a", 20, 1, parent=14), span(1, 14, "loop b", 21, 1, parent=13))  # a circle

    code, lines = show(CASE, folder)

    assert code == 0
    failed = next(line for line in lines if "s3 put_object" in line)
    assert " ERROR " in failed and failed.endswith("s3 put_object  (SlowDown: reduce your request rate)")
    assert next(line for line in lines if "mongo insert licences" in line).endswith(" … mongo insert licences")
    assert "1 ERROR" in lines[2] and "1 span whose parent was not recorded" in lines[2]
    case = timeline.load_case(CASE, [folder])
    assert sorted(r.span.name for r in case.sections[0].rows) == sorted(
        ["elicense.on_opinion_recorded process", "s3 put_object", "mongo insert licences", "loop a", "loop b"])


# --- the index ---------------------------------------------------------------------------------

def test_each_run_indexes_only_what_was_appended_and_shows_each_span_once(folder):
    proc = Process(folder, "intake-api")
    proc.write(span(1, 10, "/onething.intake.v1.IntakeService/SubmitCase", 0, 30, case=CASE))
    assert len(timeline.load_case(CASE, [folder]).sections[0].rows) == 1

    more = proc.write(span(1, 11, "mongo insert cases", 5, 3, parent=10))
    more += proc.write(span(2, 20, "/onething.intake.v1.IntakeService/GetCase", 9_000, 4, case=CASE))
    Process(folder, "joint_review-worker", pid=5151).write(span(1, 12, "joint_review.on_case_submitted process",
                                                                40, 9))
    with SpanIndex(folder) as index:
        stats = index.update()
        assert stats.bytes_indexed == len(more) + os.path.getsize(os.path.join(folder, "joint_review-worker-5151-000001.jsonl"))
        assert stats.lines == 3 and stats.files_indexed == 2
        assert index.update().bytes_indexed == 0  # nothing new

    case = timeline.load_case(CASE, [folder])
    names = [r.span.name for s in case.sections for r in s.rows]
    assert names == ["/onething.intake.v1.IntakeService/SubmitCase", "mongo insert cases",
                     "joint_review.on_case_submitted process", "/onething.intake.v1.IntakeService/GetCase"]
    assert timeline.load_case(CASE, [folder]).span_count == 4  # run again: still once each


def test_a_line_cut_short_is_left_until_it_is_whole_and_a_broken_line_is_skipped(folder):
    proc = Process(folder, "delivery-worker")
    proc.write(span(1, 10, "delivery.on_case_concluded process", 0, 30, case=CASE))
    with open(proc.path, "ab") as fh:
        fh.write(b'{"resourceSpans": [not json at all\n')  # a whole line, but not a request
    cut = (request_line("delivery-worker", "440100", [span(1, 11, "s3 presigned_get", 5, 1, parent=10)]) + "\n").encode()
    with open(proc.path, "ab") as fh:
        fh.write(cut[:40])  # still being written, or its process was killed

    case = timeline.load_case(CASE, [folder])
    assert [r.span.name for r in case.sections[0].rows] == ["delivery.on_case_concluded process"]
    with SpanIndex(folder) as index:
        row = index._db.execute("SELECT indexed FROM files").fetchone()
        assert row[0] == os.path.getsize(proc.path) - 40  # the cut line: not indexed yet
        assert index.counts()["bad_lines"] == 1

    with open(proc.path, "ab") as fh:
        fh.write(cut[40:])  # the writer finishes the line
    case = timeline.load_case(CASE, [folder])
    assert [r.span.name for r in case.sections[0].rows] == ["delivery.on_case_concluded process", "s3 presigned_get"]


def test_a_deleted_file_leaves_the_index_and_a_replaced_one_is_read_again(folder):
    old = Process(folder, "intake-api", seq=1)
    old.write(span(1, 10, "/onething.intake.v1.IntakeService/SubmitCase", 0, 30, case=CASE))
    new = Process(folder, "intake-api", seq=2)
    new.write(span(2, 20, "/onething.intake.v1.IntakeService/GetCase", 9_000, 4, case=CASE))
    assert timeline.load_case(CASE, [folder]).span_count == 2

    os.remove(old.path)  # the oldest file, deleted when the folder grew past its limit
    case = timeline.load_case(CASE, [folder])
    assert [s.title for s in case.sections] == ["/onething.intake.v1.IntakeService/GetCase"]
    with SpanIndex(folder) as index:
        assert index.counts() == {"files": 1, "trace_lines": 1, "case_traces": 1, "cases": 1, "bad_lines": 0}

    os.remove(new.path)  # a new file under the same name (a pid used again): indexed from its start
    again = Process(folder, "intake-api", seq=2)
    again.write(span(3, 30, "/onething.evaluation.v1.EvaluationService/SubmitEvaluation", 99_000, 4, case=CASE),
                span(3, 31, "mongo insert evaluations", 99_001, 1, parent=30))
    case = timeline.load_case(CASE, [folder])
    assert [(s.title, len(s.rows)) for s in case.sections] == [
        ("/onething.evaluation.v1.EvaluationService/SubmitEvaluation", 2)]

    os.remove(again.path)
    assert show(CASE, folder) == (1, [f"no spans recorded for case {CASE} in {folder}"])


def test_a_damaged_index_is_built_again(folder):
    Process(folder, "intake-api").write(span(1, 10, "/onething.intake.v1.IntakeService/SubmitCase", 0, 30, case=CASE))
    with open(os.path.join(folder, spanindex.INDEX_NAME), "wb") as fh:
        fh.write(b"this is not an sqlite file, it only sits where the index goes" * 100)

    assert timeline.load_case(CASE, folder).span_count == 1


def test_two_runs_indexing_at_once_index_every_line_exactly_once(folder):
    lines = 0
    for p in range(4):
        proc = Process(folder, f"desk-gaj-44010{p}", pid=6000 + p)
        for i in range(60):
            n = p * 1000 + i + 1
            proc.write(span(n, n, f"decide {n}", i, 1, case=CASE if i % 7 == 0 else OTHER),
                       span(n, n + 100_000, "desk.opinions publish", i, 1, parent=n))
            lines += 1
    script = ("import sys, tools.spanindex as s; s.CHUNK_BYTES = 2048; "  # small steps: the two runs interleave
              "i = s.SpanIndex(sys.argv[1]); print(i.update().lines)")
    runs = [subprocess.Popen([sys.executable, "-c", script, folder], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [run.communicate(timeout=120) for run in runs]
    assert all(run.returncode == 0 for run in runs), results
    assert sum(int(out) for out, _err in results) == lines  # between them, each line once
    with SpanIndex(folder) as index:
        assert index.update().lines == 0
        assert index.counts()["trace_lines"] == lines
        assert len(index.traces_of_case(CASE)) == 4 * len(range(0, 60, 7))
    assert timeline.load_case(CASE, [folder]).span_count == 2 * 4 * len(range(0, 60, 7))


def test_the_otlp_json_values_are_read_as_the_encoding_writes_them(folder):
    raw = {"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "catalog-api"}},
        {"key": "onething.site", "value": {"stringValue": "440300"}}]},
        "scopeSpans": [{"scope": {"name": "onething"}, "spans": [{
            "traceId": "0AF7651916CD43DD8448EB211C80319C", "spanId": "B7AD6B7169203331", "parentSpanId": "",
            "name": "GetPackage", "kind": "SPAN_KIND_SERVER", "startTimeUnixNano": "1764115200000000000",
            "endTimeUnixNano": 1764115200002500000,
            "attributes": [{"key": CASE_ATTR, "value": {"stringValue": CASE}},
                           {"key": "rpc.grpc.status_code", "value": {"intValue": "5"}},
                           {"key": "retry", "value": {"boolValue": True}},
                           {"key": "ratio", "value": {"doubleValue": 0.5}},
                           {"key": "items", "value": {"arrayValue": {"values": [{"stringValue": "a"},
                                                                                {"intValue": "2"}]}}}],
            "status": {"code": "STATUS_CODE_ERROR", "message": "NOT_FOUND"}},
            {"traceId": "00000000000000000000000000000000", "spanId": "b7ad6b7169203332", "name": "no trace"}]}]}]}
    os.makedirs(folder)
    with open(os.path.join(folder, "catalog-api-1-000001.jsonl"), "w") as fh:
        fh.write(json.dumps(raw) + "\n")

    (only,) = spanindex.case_spans(CASE, [folder])

    assert (only.trace_id, only.span_id, only.parent_id) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", "")
    assert (only.service, only.site, only.kind, only.duration_ns) == ("catalog-api", "440300", 2, 2_500_000)
    assert only.error and only.status_message == "NOT_FOUND"
    assert only.attributes == {CASE_ATTR: CASE, "rpc.grpc.status_code": 5, "retry": True, "ratio": 0.5,
                               "items": ["a", 2]}


def test_the_files_the_exporter_writes_are_read(folder):
    """services/common/telemetry.py's file exporter, fed by the OpenTelemetry SDK: what the suite's
    processes write is what the timeline reads."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode

    from services.common import telemetry

    provider = TracerProvider(resource=Resource.create({"service.name": "joint_review-worker",
                                                        telemetry.SITE_ATTR: "440300"}))
    provider.add_span_processor(SimpleSpanProcessor(telemetry.OtlpJsonLinesExporter(
        folder, "joint_review-worker-777", 1 << 20, 1 << 30)))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("process intake.events", kind=SpanKind.CONSUMER) as handling:
        handling.set_attribute(CASE_ATTR, CASE)
        with tracer.start_as_current_span("send joint_review.events", kind=SpanKind.PRODUCER) as send:
            sent = send.get_span_context()
        with tracer.start_as_current_span("mongo update onething_joint_review.sessions", kind=SpanKind.CLIENT) as db:
            db.set_status(Status(StatusCode.ERROR, "NotWritablePrimary"))
    with tracer.start_as_current_span("process desk.opinions", kind=SpanKind.CONSUMER, links=[Link(sent)]) as later:
        later.set_attribute(CASE_ATTR, CASE)
    provider.shutdown()

    case = timeline.load_case(CASE, folder)

    first, second = case.sections
    assert [(r.depth, r.span.name, r.span.kind, r.span.error) for r in first.rows] == [
        (0, "process intake.events", 5, False), (1, "send joint_review.events", 4, False),
        (1, "mongo update onething_joint_review.sessions", 3, True)]
    assert first.rows[0].span.site == "440300" and first.rows[2].span.status_message == "NotWritablePrimary"
    assert [(r.span.name, [s.name for s in r.linked_from]) for r in second.rows] == [
        ("process desk.opinions", ["send joint_review.events"])]


# --- the HTML page and the command -------------------------------------------------------------

def test_the_html_waterfall_escapes_span_names_and_attributes(folder, tmp_path):
    Process(folder, "intake-api").write(
        span(1, 10, "<script>alert('name')</script>", 0, 30, case=CASE, note='"><img src=x onerror=alert(1)>'),
        span(1, 11, "mongo & co", 10, 10, parent=10, error="<b>boom</b>"),
        span(2, 20, "GetCase", 5_000, 5, case=CASE))
    out = str(tmp_path / "case.html")

    code, lines = show(CASE, folder, html=out)

    assert code == 0 and lines[-1] == f"HTML waterfall written to {out}"
    page = open(out, encoding="utf-8").read()
    assert "<script" not in page and "<img" not in page and "<b>boom" not in page
    assert "&lt;script&gt;alert(&#x27;name&#x27;)&lt;/script&gt;" in page
    assert "note = &quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    assert "mongo &amp; co" in page and "ERROR: &lt;b&gt;boom&lt;/b&gt;" in page
    assert page.count('<div class="row') == (1 + 2) + (1 + 2) + (1 + 1)  # overview, then each trace: axis + spans
    assert page.count('class="row err"') == 2  # the failed span, and its trace in the overview
    assert "http" not in page and "<link" not in page and "url(" not in page  # nothing fetched from elsewhere
    assert render(timeline.load_case(CASE, [folder])) == page


def test_the_command_exit_codes(folder, tmp_path, capsys, monkeypatch):
    Process(folder, "intake-api").write(span(1, 10, "/onething.intake.v1.IntakeService/SubmitCase", 0, 30,
                                             case=CASE))

    assert timeline.main([CASE, "--spans", folder]) == 0
    assert capsys.readouterr().out.startswith(f"case {CASE}: 1 span in 1 trace, sites 440100, from ")

    assert timeline.main([OTHER, "--spans", folder]) == 1
    assert capsys.readouterr().out == f"no spans recorded for case {OTHER} in {folder}\n"

    monkeypatch.setenv("ONETHING_VAR_DIR", str(tmp_path / "var"))
    assert timeline.main([CASE, "--sites"]) == 1
    assert capsys.readouterr().out.startswith("no span folders to read")

    assert timeline.main([CASE, "--spans", str(tmp_path / "nowhere")]) == 1
    assert capsys.readouterr().out == f"no span folder at {tmp_path / 'nowhere'}\n"

    with pytest.raises(SystemExit) as exc:
        timeline.main(["440100xsecs'; drop", "--spans", folder])
    assert exc.value.code == 2
    assert "is not a case number" in capsys.readouterr().err
    with pytest.raises(ValueError, match="is not a case number"):
        timeline.print_case("ab", folder)

    done = subprocess.run([sys.executable, "-m", "tools.timeline", CASE, "--spans", folder,
                           "--html", str(tmp_path / "t.html")], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert os.path.getsize(tmp_path / "t.html") > 0
    done = subprocess.run([sys.executable, "-m", "tools.timeline", "NOPE", "--spans", folder], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 2 and "'NOPE' is not a case number" in done.stderr
