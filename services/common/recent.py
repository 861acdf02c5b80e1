"""The aggregates a process saved or read last, by key, in their stored form: a handler about the
same case a moment later starts from this copy instead of reading the database again. A copy may be
stale (another process saved since): the save that follows names the version it started from and is
refused, and the caller reads again; a caller that would decide nothing, or refuse, from a copy reads
again too, so a stale copy never decides anything by itself. Bounded: the oldest go first.

A copy is kept as BSON, as the database would send it: encoding and decoding it (C code) costs a
fraction of a deep copy of the same dicts in Python, and a part that could not be stored could not be
kept either."""
import datetime
import threading
from collections import OrderedDict

import bson
from bson.codec_options import CodecOptions

# copies decode as the suite's clients read (services.common.mongo.connect): datetimes in UTC, aware
_READ_AS: CodecOptions = CodecOptions(tz_aware=True, tzinfo=datetime.UTC)


class Recent:
    def __init__(self, size=64):
        self.size = size
        self._items: OrderedDict = OrderedDict()  # key -> (version, body as BSON, case as BSON or None)
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def put(self, key, version, body, case=None):
        """Keep `body` and `case` (values MongoDB can store; copied; `case` may be None) as `key`'s at
        `version`."""
        kept = (version, bson.encode(body), None if case is None else bson.encode(case))
        with self._lock:
            self._items[key] = kept
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def get(self, key):
        """A copy (body, case, version) of what is kept of `key`, or None."""
        with self._lock:
            found = self._items.get(key)
            if found is None:
                self.misses += 1
                return None
            self.hits += 1
        return self._decoded(found)

    @staticmethod
    def _decoded(found):
        case = None if found[2] is None else bson.decode(found[2], _READ_AS)
        return bson.decode(found[1], _READ_AS), case, found[0]

    def saved(self, key, version, body, case=None):
        """After a save of `key` as `version`: its body, with the case as given, or as kept for the
        version the save started from; any other kept case may be stale, so then nothing is kept
        and the next handler reads."""
        if case is not None:
            self.put(key, version, body, case)
        else:
            self.advanced(key, version - 1, lambda _, kept_case: None if kept_case is None else (body, kept_case))

    def advanced(self, key, from_version, change):
        """After a save of `key` that started from `from_version`: the copy kept of that version, as
        `change(body, case)` gives it ((body, case), or None: keep nothing), is kept as the next
        version. Without a copy of that version (none, or another: it may be stale) nothing is kept,
        and the next handler reads."""
        with self._lock:
            found = self._items.get(key)
        kept = None if found is None or found[0] != from_version else self._decoded(found)
        changed = None if kept is None else change(kept[0], kept[1])
        if changed is None:
            self.drop(key)
        else:
            self.put(key, from_version + 1, *changed)

    def drop(self, key):
        with self._lock:
            self._items.pop(key, None)


class PerStore:
    """A store's own Recent, as a class attribute (`recent_copies = PerStore(64)`): each store
    object gets one on first use."""

    def __init__(self, size):
        self.size = size

    def __set_name__(self, owner, name):
        self.attr = f"_{name}_kept"

    def __get__(self, store, owner=None):
        if store is None:
            return self
        found = store.__dict__.get(self.attr)
        return found if found is not None else store.__dict__.setdefault(self.attr, Recent(self.size))
