"""One poller for every WatchCase of an intake api: a thousand watches cost one look at the database
per interval and no thread each.

Each watch (an `async def` WatchCase on the api's grpc.aio loop) registers the case it has sent and
waits on an asyncio.Queue of its own. One asyncio task, running while any watch is open, looks every
`interval` seconds: ONE query for the stamps (the `version`, which every save of a case increments)
of all watched cases (`_id: {$in: [...]}`, 100 ids a slice), then, only for the cases whose stamp moved, ONE query for
those cases whole; what each watch sends of them is handlers.watch_step's (the domain's rule, shared
with Intake.watch), put on its queue. A watch ends at a final status, when its case is gone, at its
time limit, or when its client has gone (is_active() False, or the stream is closed: it leaves the
hub at once). The queries run on the loop's executor (the api server's thread pool).

A store that cannot be read (an outage) ends the watches of that look with the error (the api answers
UNAVAILABLE and the client opens the watch again), as a watch that polled on its own did."""
import asyncio
import contextvars
import dataclasses
import functools
import logging
import time
from collections.abc import Callable

from services.intake import domain
from services.intake.handlers import watch_step

log = logging.getLogger(__name__)
_END = object()
STAMP_SLICE = 100  # ids per stamp query


@dataclasses.dataclass(eq=False)
class _Watch:
    case_no: str
    sent: int                       # the entries of the case's history it has sent
    stamp: object                   # the case's version as last sent
    deadline: float                 # monotonic
    is_active: Callable[[], bool]
    queue: asyncio.Queue


class WatchHub:
    """`stamps(case_nos) -> {case_no: version}` (one query; a case missing: gone) and
    `cases(case_nos) -> {case_no: domain.Case}` (one query) are blocking reads, run on the loop's
    executor. `step` is what a watch sends of a case (handlers.watch_step)."""

    def __init__(self, stamps, cases, interval=0.2, step=watch_step):
        self._stamps, self._cases, self.interval, self._step = stamps, cases, interval, step
        self._watches: set[_Watch] = set()
        self._task: asyncio.Task | None = None
        self.looks = 0  # rounds of the poller (each one stamp query)

    def __len__(self):
        return len(self._watches)

    async def watch(self, case, deadline, is_active=lambda: True):
        """The case as of each change of its status after `case` (which the caller has sent), in
        order, until a final status, the case is gone, the monotonic `deadline` passes or
        `is_active()` turns False."""
        if case.status in domain.FINAL:
            return
        w = _Watch(case.case_no, len(case.history), case.version, deadline, is_active, asyncio.Queue())
        self._watches.add(w)
        self._ensure_polling()
        try:
            while True:
                item = await w.queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._watches.discard(w)  # a client gone (the stream closed or cancelled) leaves at once

    # --- the poller ---------------------------------------------------------------------------------
    def _ensure_polling(self):
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._poll(), name="watch-hub")

    async def _poll(self):
        while self._watches:
            await asyncio.sleep(self.interval)
            try:
                await self.look()
            except Exception:  # look() hands its failures to the watches; this is a bug of its own
                log.exception("the watch hub's look failed")

    def _end(self, w, item=_END):
        self._watches.discard(w)
        w.queue.put_nowait(item)

    async def look(self):
        """One round: end the watches past their time or whose client went away; read the stamps of
        the cases still watched (one query), then the cases whose stamp moved (one query); send."""
        now = time.monotonic()
        for w in list(self._watches):
            if now >= w.deadline or not w.is_active():
                self._end(w)
        if not self._watches:
            return
        self.looks += 1
        looked = list(self._watches)  # a watch that comes meanwhile waits for the next look
        case_nos = sorted({w.case_no for w in looked})
        try:
            stamps = await _blocking(self._stamps, case_nos)
            moved = sorted({w.case_no for w in looked if stamps.get(w.case_no, _END) != w.stamp})
            cases = await _blocking(self._cases, moved) if moved else {}
        except Exception as exc:
            for w in looked:
                self._end(w, exc)
            return
        for w in looked:
            if w.case_no not in moved or w not in self._watches:
                continue
            case = cases.get(w.case_no) if w.case_no in stamps else None
            views, w.sent, done = self._step(case, w.sent)
            for view in views:
                w.queue.put_nowait(view)
            if case is not None:
                w.stamp = case.version
            if done:
                self._end(w)


async def _blocking(fn, *args):
    """`fn(*args)` on the loop's executor, in a copy of this context (the trace goes on)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(contextvars.copy_context().run, fn, *args))


def readers(store):
    """(stamps, cases) of a store: intake's MongoDB store by one `$in` query each (only `version`
    for the stamps); any other (the in-memory fake) case by case."""
    from services.intake.store import IntakeStore
    if isinstance(store, IntakeStore):
        from services.intake.store import CaseDoc, case_of

        def stamps(case_nos):
            # in slices of STAMP_SLICE ids: the local server answers a long `$in` in more than linear
            # time (1,000 ids: 570 ms; 100: 10 ms)
            case_nos, out = list(case_nos), dict[str, int]()
            for i in range(0, len(case_nos), STAMP_SLICE):
                found = CaseDoc._get_collection().find({"_id": {"$in": case_nos[i:i + STAMP_SLICE]}}, {"version": 1})
                out.update((doc["_id"], doc.get("version") or 0) for doc in found)
            return out

        def cases(case_nos):
            return {doc.case_no: case_of(doc) for doc in CaseDoc.objects(case_no__in=list(case_nos))}
        return stamps, cases

    def read_each(case_nos):
        return {no: case for no in case_nos if (case := store.case(no)) is not None}

    return (lambda case_nos: {no: case.version for no, case in read_each(case_nos).items()}), read_each
