"""An in-memory catalog store with the same methods as store.CatalogStore: for unit tests and for
tools that need a catalog without MongoDB."""
import copy
import datetime
import threading


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


class MemoryCatalogStore:
    def __init__(self):
        self.docs = {}
        self._lock = threading.Lock()

    def add_version(self, code, version, status, definition, digest, outbox=()):
        with self._lock:
            if (code, version) in self.docs:
                return False
            now = _now()
            self.docs[(code, version)] = {
                "code": code, "version": version, "status": status, "digest": digest,
                "definition": copy.deepcopy(definition), "created_at": now,
                "published_at": now if status == "published" else None, "retired_at": None,
                "outbox": list(outbox)}
            return True

    def replace_draft(self, code, version, definition, digest):
        with self._lock:
            doc = self.docs.get((code, version))
            if doc is None or doc["status"] != "draft":
                return False
            doc.update(definition=copy.deepcopy(definition), digest=digest)
            return True

    def _view(self, doc):
        if doc is None:
            return None
        return copy.deepcopy({k: v for k, v in doc.items() if k != "outbox"})

    def version(self, code, version):
        return self._view(self.docs.get((code, version)))

    def latest(self, code, status=None):
        found = [d for (c, _), d in self.docs.items() if c == code and (status is None or d["status"] == status)]
        return self._view(max(found, key=lambda d: d["version"])) if found else None

    def versions(self, code):
        return [self._view(d) for (c, _), d in sorted(self.docs.items()) if c == code]

    def codes(self):
        return sorted({c for c, _ in self.docs})

    def set_status(self, code, version, expected, status, outbox=()):
        with self._lock:
            doc = self.docs.get((code, version))
            if doc is None or doc["status"] != expected:
                return False
            doc["status"] = status
            doc[f"{status}_at"] = _now()
            doc["outbox"] += list(outbox)
            return True

    def flush_outbox(self, code, version, bus, entries=None):
        doc = self.docs[(code, version)]
        entries = list(doc["outbox"]) if entries is None else list(entries)
        for e in entries:
            bus.publish_raw(e["event_type"], e["payload"], {"case_no": e.get("case_no", "")})
        ids = {e["id"] for e in entries}
        doc["outbox"] = [e for e in doc["outbox"] if e["id"] not in ids]
        return len(entries)

    def pending(self):
        return [e for d in self.docs.values() for e in d["outbox"]]
