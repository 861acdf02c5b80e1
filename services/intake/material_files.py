"""intake's object storage adapter: the shared S3 client (services.common.blobs.Blobs) plus the one
read intake needs beyond it, a byte range of an object, so that a material is streamed to its reader
one part at a time (DownloadMaterial) instead of being held whole. Each part is its own ranged GET:
no S3 connection stays open while a slow reader takes its time, and the bytes, kept by content
(content/sha256/…), never change under the reader."""
from minio.error import S3Error

from services.common.blobs import Blobs

_MISSING = ("NoSuchKey", "NoSuchObject", "NotFound", "NoSuchBucket")


class MaterialBlobs(Blobs):
    def read_range(self, bucket, key, offset, length):
        """Up to `length` bytes of the object from `offset`: fewer at its end, b"" past it; None when
        there is no such object."""
        with self._span("get_range", bucket) as span:
            span.set_attribute("s3.key", key)
            try:
                resp = self.client.get_object(self.bucket(bucket), key, offset=offset, length=length)
            except S3Error as exc:
                if exc.code in _MISSING:
                    return None
                if exc.code == "InvalidRange":  # starts at or past the end: nothing more there
                    return b""
                raise
            try:
                return resp.read()
            finally:
                resp.close()
                resp.release_conn()
