"""The span files of one folder, and an index over them so that one case's spans are found without
reading the rest.

The files (services/common/telemetry.py writes them) are `<service.name>-<pid>-<seq>.jsonl`: one
OTLP/JSON ExportTraceServiceRequest per line, one line per exported batch, append-only, never renamed;
the oldest are deleted when the folder grows past its limit, and a killed process may leave its last
line cut short.

The index is a SQLite file in the folder (`.index.sqlite`):
- `files`: each span file's name, inode and the byte offset up to which its lines are indexed;
- `trace_lines`: trace id -> (file, offset, length) of every line holding a span of that trace;
- `case_traces`: case number -> the traces in which a span carries it (per file, so that a deleted
  file takes its entries with it).
`update()` indexes only what was appended since the last run: per file from its indexed offset up to
its last complete line (a line still being written, or cut short, is left for next time); files gone
from the folder (or replaced under the same name) are dropped. Each step is one SQLite write
transaction that re-reads the offset it starts from, so two runs at once neither corrupt the index nor
index a line twice. Reading a case reads only the lines of its traces.
"""
from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import re
import sqlite3
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from services.common.telemetry import CASE_ATTR

INDEX_NAME = ".index.sqlite"
SUFFIX = ".jsonl"
SCHEMA_VERSION = "1"
CHUNK_BYTES = 32 * 1024 * 1024  # what one write transaction indexes at most (a longer single line is read whole)
BUSY_TIMEOUT_S = 300.0  # another run indexing a large folder holds the write lock one chunk at a time

_HEX_ID = re.compile(r"[0-9a-f]+")
_KINDS = {"SPAN_KIND_UNSPECIFIED": 0, "SPAN_KIND_INTERNAL": 1, "SPAN_KIND_SERVER": 2, "SPAN_KIND_CLIENT": 3,
          "SPAN_KIND_PRODUCER": 4, "SPAN_KIND_CONSUMER": 5}
_STATUS = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
KIND_NAMES = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
STATUS_ERROR = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, inode INTEGER NOT NULL,
    indexed INTEGER NOT NULL, bad_lines INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS trace_lines (
    trace BLOB NOT NULL, file INTEGER NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL,
    PRIMARY KEY (trace, file, offset)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS trace_lines_file ON trace_lines (file);
CREATE TABLE IF NOT EXISTS case_traces (
    case_no TEXT NOT NULL, trace BLOB NOT NULL, file INTEGER NOT NULL,
    PRIMARY KEY (case_no, trace, file)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS case_traces_file ON case_traces (file);
"""


class SpanFileError(Exception):
    """A span folder that cannot be read."""


@dataclasses.dataclass(frozen=True, slots=True)
class Span:
    """One finished span as the timeline needs it. Ids are lower-case hex; times are Unix nanoseconds;
    `kind` and `status` are the OTLP enum numbers; `links` are (trace id, span id) pairs."""
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    service: str
    site: str
    status: int
    status_message: str
    attributes: dict[str, Any]
    links: tuple[tuple[str, str], ...]

    @property
    def error(self) -> bool:
        return self.status == STATUS_ERROR

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)

    @property
    def case_no(self) -> str | None:
        value = self.attributes.get(CASE_ATTR)
        return value if isinstance(value, str) else None


@dataclasses.dataclass
class IndexStats:
    """What one `update()` did."""
    files_indexed: int = 0
    bytes_indexed: int = 0
    lines: int = 0
    bad_lines: int = 0
    files_dropped: int = 0


# --- the OTLP/JSON encoding --------------------------------------------------------------------

def any_value(value: Any) -> Any:
    """The Python value of an OTLP/JSON AnyValue (int64 arrives as a string of digits)."""
    if not isinstance(value, dict):
        return value
    if "stringValue" in value:
        return value["stringValue"]
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        try:
            return int(value["intValue"])
        except (TypeError, ValueError):
            return value["intValue"]
    if "doubleValue" in value:
        double = value["doubleValue"]
        if isinstance(double, str):  # "NaN", "Infinity", "-Infinity"
            with contextlib.suppress(ValueError):
                return float(double)
        return double
    if "arrayValue" in value:
        return [any_value(v) for v in (value["arrayValue"] or {}).get("values", [])]
    if "kvlistValue" in value:
        return key_values((value["kvlistValue"] or {}).get("values", []))
    if "bytesValue" in value:
        with contextlib.suppress(ValueError, TypeError):
            return base64.b64decode(value["bytesValue"]).hex()
        return value["bytesValue"]
    return None


def key_values(pairs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs or []:
        if isinstance(pair, dict) and isinstance(pair.get("key"), str):
            out[pair["key"]] = any_value(pair.get("value"))
    return out


def _hex_id(value: Any, length: int) -> str:
    """A trace or span id as lower-case hex, or "" when absent, empty, all zeros or malformed."""
    if not isinstance(value, str) or len(value) != length:
        return ""
    value = value.lower()
    if not _HEX_ID.fullmatch(value) or value.count("0") == length:
        return ""
    return value


def _enum(value: Any, names: dict[str, int]) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return names.get(value, int(value) if value.isdigit() else 0)
    return 0


def _nanos(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _span_lists(request: Any) -> Iterator[tuple[dict[str, Any], list[Any]]]:
    """(resource attributes, spans) of each scope of one ExportTraceServiceRequest."""
    if not isinstance(request, dict):
        raise ValueError("a line is not a JSON object")
    for resource_spans in request.get("resourceSpans") or []:
        resource = key_values(((resource_spans or {}).get("resource") or {}).get("attributes"))
        for scope_spans in resource_spans.get("scopeSpans") or []:
            yield resource, (scope_spans or {}).get("spans") or []


def decode(request: Any, default_site: str = "", traces: set[str] | None = None) -> Iterator[Span]:
    """The spans of one ExportTraceServiceRequest (only those of `traces` when given). A span without a
    valid trace or span id is left out."""
    for resource, spans in _span_lists(request):
        service = str(resource.get("service.name") or "?")
        site = str(resource.get("onething.site") or default_site)
        for raw in spans:
            if not isinstance(raw, dict):
                continue
            trace_id = _hex_id(raw.get("traceId"), 32)
            if not trace_id or (traces is not None and trace_id not in traces):
                continue
            span_id = _hex_id(raw.get("spanId"), 16)
            if not span_id:
                continue
            status = raw.get("status") or {}
            links = []
            for link in raw.get("links") or []:
                if isinstance(link, dict):
                    link_trace, link_span = _hex_id(link.get("traceId"), 32), _hex_id(link.get("spanId"), 16)
                    if link_trace and link_span:
                        links.append((link_trace, link_span))
            yield Span(
                trace_id=trace_id, span_id=span_id, parent_id=_hex_id(raw.get("parentSpanId"), 16),
                name=str(raw.get("name") or ""), kind=_enum(raw.get("kind"), _KINDS),
                start_ns=_nanos(raw.get("startTimeUnixNano")), end_ns=_nanos(raw.get("endTimeUnixNano")),
                service=service, site=site, status=_enum(status.get("code"), _STATUS),
                status_message=str(status.get("message") or ""), attributes=key_values(raw.get("attributes")),
                links=tuple(links))


def line_keys(request: Any) -> tuple[set[str], set[tuple[str, str]]]:
    """What the index keeps of one line: the traces of its spans, and (case number, trace) for each
    span that carries a case number."""
    traces: set[str] = set()
    cases: set[tuple[str, str]] = set()
    for _resource, spans in _span_lists(request):
        for raw in spans:
            if not isinstance(raw, dict):
                continue
            trace_id = _hex_id(raw.get("traceId"), 32)
            if not trace_id:
                continue
            traces.add(trace_id)
            for pair in raw.get("attributes") or []:
                if isinstance(pair, dict) and pair.get("key") == CASE_ATTR:
                    case_no = any_value(pair.get("value"))
                    if isinstance(case_no, str) and case_no:
                        cases.add((case_no, trace_id))
    return traces, cases


def folder_site(folder: str) -> str:
    """The region of a site's span folder (var/sites/<region>/spans), else ""."""
    parent = os.path.dirname(os.path.abspath(folder))
    region = os.path.basename(parent)
    if os.path.basename(os.path.dirname(parent)) == "sites" and len(region) == 6 and region.isdigit():
        return region
    return ""


# --- the index ---------------------------------------------------------------------------------

def _wal(db: sqlite3.Connection) -> None:
    """Switch the index to WAL. Two runs opening a new index at once may both ask, and SQLite then
    answers one of them "database is locked" at once, without waiting its busy timeout (a lock it
    would have to upgrade): that one asks again, a little later, until BUSY_TIMEOUT_S."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


class SpanIndex:
    """The index of one span folder. `update()` first, then `traces_of_case` and `read_traces`."""

    def __init__(self, folder: str, index_path: str | None = None):
        if not os.path.isdir(folder):
            raise SpanFileError(f"no span folder at {folder}")
        self.folder = folder
        self.site = folder_site(folder)
        self.index_path = index_path or os.path.join(folder, INDEX_NAME)
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            db = self._connect(self.index_path)
        except sqlite3.DatabaseError as exc:
            if "not a database" not in str(exc) and "malformed" not in str(exc):
                if not os.access(os.path.dirname(os.path.abspath(self.index_path)), os.W_OK):
                    print(f"timeline: cannot write an index in {self.folder} ({exc}); reading every file",
                          file=sys.stderr)
                    return self._connect(":memory:")
                raise
            # the index is only a cache of the span files: a damaged one is built again
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.index_path + suffix)
            db = self._connect(self.index_path)
        return db

    @staticmethod
    def _connect(path: str) -> sqlite3.Connection:
        db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        if path != ":memory:":
            _wal(db)  # readers go on while another run indexes
            db.execute("PRAGMA synchronous=NORMAL")  # a cache: a lost last transaction is indexed again
        with _write(db):
            version = None
            if db.execute("SELECT 1 FROM sqlite_master WHERE name='meta'").fetchone():
                row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
                version = row[0] if row else None
            if version not in (None, SCHEMA_VERSION):
                for table in ("meta", "files", "trace_lines", "case_traces"):
                    db.execute(f"DROP TABLE IF EXISTS {table}")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))
        return db

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SpanIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- indexing --

    def _span_files(self) -> dict[str, os.stat_result]:
        found = {}
        for entry in os.scandir(self.folder):
            if entry.name.endswith(SUFFIX) and not entry.name.startswith("."):
                with contextlib.suppress(FileNotFoundError):
                    found[entry.name] = entry.stat()
        return found

    def update(self) -> IndexStats:
        """Index what was appended since the last run; drop files that are gone."""
        stats = IndexStats()
        present = self._span_files()

        def gone() -> list[int]:
            """Files deleted, or replaced by another under the same name."""
            return [file_id for file_id, name, inode, indexed
                    in self._db.execute("SELECT id, name, inode, indexed FROM files")
                    if name not in present or present[name].st_ino != inode or present[name].st_size < indexed]

        if gone():  # the write lock only when there is something to drop
            with _write(self._db):
                for file_id in gone():
                    self._drop(file_id)
                    stats.files_dropped += 1
        for name, st in sorted(present.items()):
            row = self._db.execute("SELECT indexed FROM files WHERE name=?", (name,)).fetchone()
            if row is None or row[0] < st.st_size:
                self._index_file(name, st, stats)
        return stats

    def _drop(self, file_id: int) -> None:
        self._db.execute("DELETE FROM trace_lines WHERE file=?", (file_id,))
        self._db.execute("DELETE FROM case_traces WHERE file=?", (file_id,))
        self._db.execute("DELETE FROM files WHERE id=?", (file_id,))

    def _index_file(self, name: str, st: os.stat_result, stats: IndexStats) -> None:
        path = os.path.join(self.folder, name)
        try:
            fh = open(path, "rb")
        except FileNotFoundError:
            return
        with fh:
            if os.fstat(fh.fileno()).st_ino != st.st_ino:
                return  # replaced since the listing: the next run sees the new one
            counted = False
            while True:
                with _write(self._db):
                    row = self._db.execute("SELECT id, indexed FROM files WHERE name=?", (name,)).fetchone()
                    if row is None:
                        file_id = self._db.execute("INSERT INTO files (name, inode, indexed) VALUES (?, ?, 0)",
                                                   (name, st.st_ino)).lastrowid
                        start = 0
                    else:
                        file_id, start = row
                    assert file_id is not None
                    fh.seek(start)
                    data = fh.read(CHUNK_BYTES)
                    end = data.rfind(b"\n")
                    while end < 0 and len(data) >= CHUNK_BYTES:  # one line longer than a chunk
                        more = fh.read(CHUNK_BYTES)
                        if not more:
                            break
                        data += more
                        end = data.rfind(b"\n")
                    if end < 0:
                        return  # nothing new but a line still being written (or cut short)
                    self._index_lines(file_id, start, data[:end + 1], stats)
                    self._db.execute("UPDATE files SET indexed=? WHERE id=?", (start + end + 1, file_id))
                    stats.bytes_indexed += end + 1
                    if not counted:
                        stats.files_indexed += 1
                        counted = True

    def _index_lines(self, file_id: int, base: int, data: bytes, stats: IndexStats) -> None:
        trace_rows: list[tuple[bytes, int, int, int]] = []
        case_rows: list[tuple[str, bytes, int]] = []
        bad = 0
        offset = 0
        size = len(data)
        while offset < size:
            stop = data.index(b"\n", offset)
            if stop > offset:
                line = data[offset:stop]
                try:
                    traces, cases = line_keys(json.loads(line))
                except (ValueError, UnicodeDecodeError, AttributeError, TypeError):
                    bad += 1  # a complete line that is not a request: skipped, counted
                else:
                    stats.lines += 1
                    at = base + offset
                    trace_rows.extend((bytes.fromhex(t), file_id, at, stop - offset) for t in traces)
                    case_rows.extend((c, bytes.fromhex(t), file_id) for c, t in cases)
            offset = stop + 1
        self._db.executemany("INSERT OR IGNORE INTO trace_lines (trace, file, offset, length) VALUES (?, ?, ?, ?)",
                             trace_rows)
        self._db.executemany("INSERT OR IGNORE INTO case_traces (case_no, trace, file) VALUES (?, ?, ?)", case_rows)
        if bad:
            stats.bad_lines += bad
            self._db.execute("UPDATE files SET bad_lines = bad_lines + ? WHERE id=?", (bad, file_id))

    # -- reading --

    def traces_of_case(self, case_no: str) -> set[str]:
        return {bytes(t).hex() for (t,) in
                self._db.execute("SELECT DISTINCT trace FROM case_traces WHERE case_no=?", (case_no,))}

    def read_traces(self, traces: Iterable[str]) -> list[Span]:
        """Every span of these traces in this folder, reading only the lines that hold them."""
        wanted = set(traces)
        if not wanted:
            return []
        keys = [bytes.fromhex(t) for t in sorted(wanted)]
        lines: set[tuple[str, int, int]] = set()
        for i in range(0, len(keys), 500):  # below SQLite's limit of bound parameters
            part = keys[i:i + 500]
            lines.update(self._db.execute(
                "SELECT f.name, t.offset, t.length FROM trace_lines t JOIN files f ON f.id = t.file "
                f"WHERE t.trace IN ({','.join('?' * len(part))})", part))
        spans: list[Span] = []
        by_file: dict[str, list[tuple[int, int]]] = {}
        for name, offset, length in lines:
            by_file.setdefault(name, []).append((offset, length))
        for name, places in sorted(by_file.items()):
            try:
                fh = open(os.path.join(self.folder, name), "rb")
            except FileNotFoundError:
                continue  # deleted since it was indexed: its spans are gone
            with fh:
                for offset, length in sorted(places):
                    fh.seek(offset)
                    try:
                        spans.extend(decode(json.loads(fh.read(length)), self.site, wanted))
                    except (ValueError, UnicodeDecodeError, AttributeError, TypeError):
                        continue  # the file changed under the index (replaced): the next update drops it
        return spans

    def counts(self) -> dict[str, int]:
        """Sizes of the index (for the benchmark and the tests)."""
        one = lambda sql: int(self._db.execute(sql).fetchone()[0])
        return {"files": one("SELECT count(*) FROM files"),
                "trace_lines": one("SELECT count(*) FROM trace_lines"),
                "case_traces": one("SELECT count(*) FROM case_traces"),
                "cases": one("SELECT count(DISTINCT case_no) FROM case_traces"),
                "bad_lines": one("SELECT coalesce(sum(bad_lines), 0) FROM files")}


@contextlib.contextmanager
def _write(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, taken at once (BEGIN IMMEDIATE): a second writer waits for it."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def case_spans(case_no: str, folders: Iterable[str]) -> list[Span]:
    """Every span of the case in these folders: the traces in which any span carries the case number
    (in any folder: a trace goes on across sites), each with all its spans, from every folder. The
    indexes are brought up to date first."""
    indexes: list[SpanIndex] = []
    try:
        for folder in folders:
            indexes.append(SpanIndex(folder))
        for index in indexes:
            index.update()
        traces: set[str] = set()
        for index in indexes:
            traces |= index.traces_of_case(case_no)
        seen: set[tuple[str, str, str]] = set()
        spans = []
        for index in indexes:
            for span in index.read_traces(traces):
                key = (span.trace_id, span.span_id, span.service)
                if key not in seen:  # the same folder given twice, or a batch exported twice
                    seen.add(key)
                    spans.append(span)
        return spans
    finally:
        for index in indexes:
            index.close()
