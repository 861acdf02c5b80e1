"""Blobs.put_stream against the local S3 server: bytes put while they arrive (one PUT when small, a
multipart upload when not), and a stream its caller refuses on the way, at any point, stores nothing."""
import os
import uuid

import pytest

from services.common.blobs import PART_SIZE, Blobs

pytestmark = pytest.mark.integration

CHUNK = 64 * 1024


class Refused(Exception):
    pass


def chunks_of(data, fail_after=None):
    for i in range(0, len(data), CHUNK):
        if fail_after is not None and i >= fail_after:
            raise Refused("not the hash it claimed")
        yield data[i:i + CHUNK]
    if fail_after is not None:  # refused once every byte has come (the hash checked at the end)
        raise Refused("not the hash it claimed")


@pytest.fixture
def blobs(test_env):
    b = Blobs()
    b.ensure_bucket("materials")
    return b


@pytest.mark.parametrize("known", [False, True])  # the length told to the put, or not
@pytest.mark.parametrize("size", [100 * 1024, 2 * PART_SIZE + 12345])  # one PUT; three parts
def test_what_arrives_is_stored_whole(blobs, size, known):
    data, key = os.urandom(size), f"stream-test/{uuid.uuid4().hex}"
    blobs.put_stream("materials", key, chunks_of(data), content_type="application/pdf", metadata={"sha256": "x"},
                     length=size if known else None)
    try:
        assert blobs.get("materials", key) == data
        assert blobs.stat("materials", key).content_type == "application/pdf"
    finally:
        blobs.delete("materials", key)


@pytest.mark.parametrize("size, fail_after", [
    (100 * 1024, None),                          # small: refused after the last byte
    (2 * PART_SIZE + 12345, None),               # multipart: refused after the last byte
    (2 * PART_SIZE + 12345, PART_SIZE + CHUNK),  # multipart: refused after the first part went up
])
@pytest.mark.parametrize("known", [False, True])
def test_a_stream_refused_on_the_way_stores_nothing(blobs, size, fail_after, known):
    # with the length known, the put has every byte it was told of before the refusal comes: it
    # must still not complete
    data, key = os.urandom(size), f"stream-test/{uuid.uuid4().hex}"
    with pytest.raises(Refused):
        blobs.put_stream("materials", key, chunks_of(data, fail_after if fail_after is not None else size),
                         content_type="application/pdf", length=size if known else None)
    assert blobs.stat("materials", key) is None


@pytest.mark.parametrize("size", [100 * 1024, 2 * PART_SIZE + 12345])
@pytest.mark.parametrize("told, words", [(-1, "more than the"), (+1, "ended after")])
def test_a_stream_longer_or_shorter_than_its_length_stores_nothing(blobs, size, told, words):
    data, key = os.urandom(size), f"stream-test/{uuid.uuid4().hex}"
    with pytest.raises(OSError, match=words):
        blobs.put_stream("materials", key, chunks_of(data), content_type="application/pdf", length=size + told)
    assert blobs.stat("materials", key) is None
