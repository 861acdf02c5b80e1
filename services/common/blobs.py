"""S3 object storage through the minio client, each call a traced span. Services name buckets by
role ("materials", "results"); ONETHING_BUCKET_PREFIX puts a deployment's (or a test run's) own
prefix in front."""
import collections
import contextvars
import io
import queue
import threading
import typing
from datetime import timedelta

from minio import Minio
from minio.commonconfig import CopySource
from minio.error import S3Error

from services.common import counters, telemetry
from services.common.config import settings


def _http_client(s):
    """Bounded waits: the minio client's own default waits up to 300 s per read and retries 5
    times; an outage should be reported within seconds, and retried by whoever called."""
    import urllib3
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=s.s3_connect_timeout_seconds, read=s.s3_read_timeout_seconds),
        maxsize=16, retries=urllib3.Retry(total=s.s3_retries, backoff_factor=0.2,
                                          status_forcelist=[500, 502, 503, 504]))


PART_SIZE = 5 * 1024 * 1024  # S3's smallest part
# bytes a streamed put may be behind its caller: more than a part, so the next part arrives while
# one is being put, and a bound on what one upload holds in memory whatever its clients' chunk size
QUEUED_BYTES = 8 * 1024 * 1024


class _Failed:
    def __init__(self, exc):
        self.exc = exc


_EOF = object()


class _Feed:
    """What the caller hands a put's thread, in order: chunks of bytes, then _EOF or a _Failed. A
    put waits while the chunks waiting hold `limit` bytes (one chunk is always taken, whatever its
    size); queue.Full when that lasts `timeout` seconds."""

    def __init__(self, limit):
        self._items: collections.deque = collections.deque()
        self._bytes, self._limit = 0, limit
        self._changed = threading.Condition()

    def put(self, item, timeout=None):
        size = len(item) if isinstance(item, bytes) else 0
        with self._changed:
            if not self._changed.wait_for(lambda: not self._items or self._bytes + size <= self._limit, timeout):
                raise queue.Full
            self._items.append(item)
            self._bytes += size
            self._changed.notify_all()

    def get(self):
        with self._changed:
            self._changed.wait_for(lambda: self._items)
            item = self._items.popleft()
            self._bytes -= len(item) if isinstance(item, bytes) else 0
            self._changed.notify_all()
            return item


class _QueueReader:
    """A file-like `read(n)` over a queue of byte chunks that ends at _EOF and raises what a _Failed
    carries (so a put reading it stops before it completes). The chunks are kept as they came and
    joined once per read: a part of 5 MiB is copied once, not three times.
    With a `length` (the put knows the size), the read that hands over the last of those bytes
    returns only once the queue has ended well: a put never completes before its caller has found
    the whole stream good, and a stream longer or shorter than `length` fails it."""

    def __init__(self, feed, length=None):
        self._feed, self._held, self._done, self._length, self._given = feed, 0, False, length, 0
        self._pieces: collections.deque[memoryview] = collections.deque()

    def _next(self):
        """The next chunk (b"" at the end); raises what a _Failed carries."""
        item = self._feed.get()
        if item is _EOF:
            self._done = True
            return b""
        if isinstance(item, _Failed):
            self._done = True
            raise OSError(f"the upload was refused while it arrived: {item.exc}")
        return item

    def read(self, n=-1):
        while not self._done and (n < 0 or self._held < n):
            item = self._next()
            if item:
                self._pieces.append(memoryview(item))
                self._held += len(item)
        if self._length is not None and self._done and self._given + self._held < self._length:
            raise OSError(f"the stream ended after {self._given + self._held} bytes, not the {self._length} declared")
        want = self._held if n < 0 else min(n, self._held)
        out, got = [], 0
        while got < want:
            piece = self._pieces.popleft()
            take = min(len(piece), want - got)
            out.append(piece[:take])
            if take < len(piece):
                self._pieces.appendleft(piece[take:])
            got += take
        self._held -= got
        self._given += got
        if self._length is not None and self._given >= self._length:
            self._await_end()
        return b"".join(out)

    def _await_end(self):
        """The last declared byte is being handed over: wait for the queue's end first (bytes that
        still come are more than declared: read and dropped, then refused)."""
        extra = self._held
        while not self._done:
            extra += len(self._next())
        if extra:
            raise OSError(f"the stream carried more than the {self._length} bytes declared")


class Blobs:
    def __init__(self, endpoint=None, access_key=None, secret_key=None, secure=None, bucket_prefix=None):
        s = settings()
        self.prefix = s.bucket_prefix if bucket_prefix is None else bucket_prefix
        self.client = Minio(endpoint or s.s3_endpoint, access_key=access_key or s.s3_access_key,
                            secret_key=secret_key or s.s3_secret_key,
                            secure=s.s3_secure if secure is None else secure, http_client=_http_client(s))

    def bucket(self, name):
        return f"{self.prefix}{name}"

    def _span(self, op, bucket):
        counters.S3_OPERATIONS.labels(op).inc()
        return telemetry.tracer().start_as_current_span(f"s3 {op} {self.bucket(bucket)}",
                                                        kind=telemetry.trace.SpanKind.CLIENT)

    def ensure_bucket(self, bucket):
        with self._span("ensure_bucket", bucket):
            if not self.client.bucket_exists(self.bucket(bucket)):
                try:
                    self.client.make_bucket(self.bucket(bucket))
                except S3Error as exc:
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise

    def put(self, bucket, key, data, content_type="application/octet-stream", metadata=None):
        with self._span("put", bucket) as span:
            span.set_attribute("s3.key", key)
            self.client.put_object(self.bucket(bucket), key, io.BytesIO(data), len(data), content_type=content_type,
                                   metadata=metadata or {})

    def put_stream(self, bucket, key, chunks, content_type="application/octet-stream", metadata=None,
                   part_size=PART_SIZE, length=None):
        """Put the bytes of `chunks` (an iterable of bytes) while they come: a thread of its own puts
        them (one PUT below `part_size`, else a multipart upload of `part_size` parts) as the caller's
        iteration goes on, at most QUEUED_BYTES behind it. An exception from `chunks` (the caller
        refuses what arrived: too large, not the hash it claimed) aborts the put before it completes,
        so nothing is stored, and is raised here; so is the put's own failure. `length`, when the
        caller knows it, saves the put two copies of every part (the minio client reads an unknown
        length a byte beyond each part); a stream of any other length is refused."""
        feed = _Feed(QUEUED_BYTES)
        outcome: dict = {}

        def upload():
            try:
                with self._span("put", bucket) as span:
                    span.set_attribute("s3.key", key)
                    reader: typing.Any = _QueueReader(feed, length)  # read() is all put_object asks of it
                    self.client.put_object(self.bucket(bucket), key, reader, length=-1 if length is None else length,
                                           part_size=part_size, content_type=content_type, metadata=metadata or {})
            except BaseException as exc:  # handed to the caller below
                outcome["error"] = exc

        # in a copy of the caller's context, so the put's span belongs to the caller's trace
        uploader = threading.Thread(target=contextvars.copy_context().run, args=(upload,), name=f"put-{key[:24]}",
                                    daemon=True)
        uploader.start()

        def send(item):
            while uploader.is_alive():  # a put that failed reads no more: stop feeding it
                try:
                    feed.put(item, timeout=0.5)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            for chunk in chunks:
                if not send(bytes(chunk)):
                    break
        except BaseException as exc:
            send(_Failed(exc))
            uploader.join()
            raise
        send(_EOF)
        uploader.join()
        if "error" in outcome:
            raise outcome["error"]

    def get(self, bucket, key):
        with self._span("get", bucket) as span:
            span.set_attribute("s3.key", key)
            resp = self.client.get_object(self.bucket(bucket), key)
            try:
                return resp.read()
            finally:
                resp.close()
                resp.release_conn()

    def stat(self, bucket, key):
        """Object metadata, or None when there is no such object."""
        with self._span("stat", bucket) as span:
            span.set_attribute("s3.key", key)
            try:
                return self.client.stat_object(self.bucket(bucket), key)
            except S3Error as exc:
                if exc.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                    return None
                raise

    def copy(self, bucket, src_key, dst_key):
        with self._span("copy", bucket) as span:
            span.set_attribute("s3.key", dst_key)
            self.client.copy_object(self.bucket(bucket), dst_key, CopySource(self.bucket(bucket), src_key))

    def delete(self, bucket, key):
        with self._span("delete", bucket):
            self.client.remove_object(self.bucket(bucket), key)

    def list(self, bucket, prefix):
        with self._span("list", bucket):
            return [o.object_name for o in self.client.list_objects(self.bucket(bucket), prefix=prefix, recursive=True)]

    def download_url(self, bucket, key, expires=timedelta(hours=24)):
        return self.client.presigned_get_object(self.bucket(bucket), key, expires=expires)
