"""Streams must not hold the api's threads: how many may be open at once (per caller and overall),
how long a client stream may stay silent, and how long any stream may last.

The api server (grpc.aio, services/common/grpc_server.py) runs plain handlers on a fixed pool of
threads: an upload holds its thread for as long as it lasts, and a server stream whose handler is a
plain generator (DownloadMaterial) takes one while it makes each message. Those get caps of their
own, well below the pool (the rest always serves unary calls), and a caller cannot take all of
them. A server stream written as `async def` (WatchCase) holds no thread while it waits: watches
are capped only per caller and overall, in the thousands. Pure Python, no gRPC: the api role's
interceptor uses these.
"""
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass

from services.common.errors import Busy, DeadlineExceeded


@dataclass(frozen=True)
class StreamLimits:
    threads: int = 16                # the api's server threads
    uploads_total: int = 6           # client streams (uploads) open at once, all callers
    uploads_per_caller: int = 3
    watches_total: int = 2000        # server streams (watches, downloads) open at once, all callers
    watches_per_caller: int = 10
    idle_s: float = 10.0             # a client stream that sends nothing this long is ended
    max_s: float = 600.0             # any stream is ended after this long
    retry_after_s: float = 1.0       # what a refusal for capacity suggests

    @classmethod
    def from_settings(cls, s):
        return cls(threads=s.grpc_threads, uploads_total=s.stream_uploads_total,
                   uploads_per_caller=s.stream_uploads_per_caller, watches_total=s.stream_watches_total,
                   watches_per_caller=s.stream_watches_per_caller, idle_s=s.stream_idle_seconds,
                   max_s=s.stream_max_seconds).checked()

    @property
    def pool_streams(self):
        """Server streams that run on the pool (a plain generator handler) open at once: what
        three quarters of the threads leave after the uploads."""
        return max(1, (self.threads * 3) // 4 - self.uploads_total)

    def checked(self):
        """Streams that hold threads (uploads, and server streams on the pool) may take at most
        three quarters of them; the rest stay for unary calls. Uploads that ask for more are scaled
        down (one pool slot is always left for server streams). Watches hold no thread: their caps
        are only kept at one at least, the per-caller one within the overall one."""
        room = max(1, (self.threads * 3) // 4)
        uploads = max(1, min(self.uploads_total, room - 1))
        watches = max(1, self.watches_total)
        return StreamLimits(self.threads, uploads, max(1, min(self.uploads_per_caller, uploads)), watches,
                            max(1, min(self.watches_per_caller, watches)), self.idle_s, self.max_s,
                            self.retry_after_s)


class StreamGate:
    """Slots for one kind of stream: at most `total` at once, at most `per_caller` for one caller."""

    def __init__(self, what, total, per_caller, retry_after_s=1.0):
        self.what, self.total, self.per_caller = what, total, per_caller
        self.retry_after_s = retry_after_s
        self._lock = threading.Lock()
        self._open: Counter[tuple] = Counter()

    def in_use(self, caller=None):
        with self._lock:
            return self._open[caller] if caller is not None else sum(self._open.values())

    def acquire(self, caller):
        """A slot for `caller`, or Busy (RESOURCE_EXHAUSTED) naming which cap is reached. Returns
        the function that gives the slot back (safe to call more than once)."""
        with self._lock:
            if self._open[caller] >= self.per_caller:
                raise Busy(f"you have {self._open[caller]} {self.what} open already, the most one caller may have "
                           f"at once (limit {self.per_caller}); finish one first or try again shortly",
                           zh=f"您同时进行的{_ZH[self.what]}已达上限（{self.per_caller} 个），请完成后再试。",
                           retry_after_s=self.retry_after_s)
            if sum(self._open.values()) >= self.total:
                raise Busy(f"the service has as many {self.what} open as it takes at once (limit {self.total}); "
                           "try again shortly", zh=f"当前{_ZH[self.what]}人数较多，请稍后再试。",
                           retry_after_s=self.retry_after_s)
            self._open[caller] += 1
        released: list = []

        def release():
            with self._lock:
                if released:
                    return
                released.append(True)
                self._open[caller] -= 1
                if self._open[caller] <= 0:
                    del self._open[caller]
        return release


_ZH = {"uploads": "上传", "watches": "办件跟踪", "streams": "下载"}


_END = object()


def guarded(requests, idle_s, deadline, what="upload"):
    """The messages of a client stream, ended with DeadlineExceeded when none arrives for `idle_s`
    seconds or the monotonic `deadline` passes. A helper thread reads `requests` (a blocking
    iterator) into a small queue; it ends when the stream does (the server ends the call when its
    handler fails), so it is never left behind for long."""
    box: queue.Queue = queue.Queue(maxsize=4)
    stop = threading.Event()

    def pump():
        try:
            for message in requests:
                while not stop.is_set():
                    try:
                        box.put((message, None), timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put((_END, None))
        except BaseException as exc:
            if not stop.is_set():
                box.put((_END, exc))

    threading.Thread(target=pump, name="stream-reader", daemon=True).start()
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeadlineExceeded(f"the {what} lasted longer than the server allows for one stream; "
                                       "start it again", zh="办理时间超过上限，请重新上传。")
            try:
                message, exc = box.get(timeout=min(idle_s, left))
            except queue.Empty:
                if deadline - time.monotonic() <= 0:
                    continue  # reported above
                raise DeadlineExceeded(f"nothing arrived for {idle_s:g} s, so the {what} was ended; "
                                       "send it again without pauses", zh="长时间未收到数据，上传已中止，请重新上传。") from None
            if message is _END:
                if exc is not None:
                    raise exc
                return
            yield message
    finally:
        stop.set()


class DeadlineContext:
    """A gRPC servicer context whose is_active() turns False once the stream's deadline passes, so
    that a handler that polls it (WatchCase) ends in time; everything else is the real context's."""

    def __init__(self, context, deadline):
        self._context, self._deadline = context, deadline

    @property
    def deadline(self):
        """The stream's time limit (time.monotonic())."""
        return self._deadline

    def expired(self):
        return time.monotonic() >= self._deadline

    def is_active(self):
        return not self.expired() and self._context.is_active()

    def time_remaining(self):
        mine = max(0.0, self._deadline - time.monotonic())
        theirs = self._context.time_remaining()
        return mine if theirs is None else min(mine, theirs)

    def __getattr__(self, name):
        return getattr(self._context, name)
