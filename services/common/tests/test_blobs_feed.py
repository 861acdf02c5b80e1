"""The hand-over between an upload's arrival and its put (blobs._Feed): bounded in bytes whatever
the size of the chunks, in order, and never stuck on a chunk larger than the bound; and the reader
the put reads it through (blobs._QueueReader)."""
import queue
import threading
import time

import pytest

from services.common.blobs import _EOF, _Feed


def test_chunks_come_out_in_order_with_the_end_last():
    feed = _Feed(100)
    for item in (b"a" * 10, b"b" * 20, _EOF):
        feed.put(item)
    assert [feed.get(), feed.get(), feed.get()] == [b"a" * 10, b"b" * 20, _EOF]


def test_a_put_past_the_bound_waits_and_gives_up_after_its_timeout():
    feed = _Feed(100)
    feed.put(b"x" * 60)
    feed.put(b"y" * 40)  # exactly the bound
    with pytest.raises(queue.Full):
        feed.put(b"z", timeout=0.05)


def test_a_waiting_put_goes_on_once_the_reader_takes_a_chunk():
    feed = _Feed(100)
    feed.put(b"x" * 100)
    done = threading.Event()

    def writer():
        feed.put(b"y" * 50, timeout=5)
        done.set()

    threading.Thread(target=writer, daemon=True).start()
    time.sleep(0.05)
    assert not done.is_set()  # still held back by the bound
    assert feed.get() == b"x" * 100
    assert done.wait(5)
    assert feed.get() == b"y" * 50


def test_a_chunk_larger_than_the_bound_is_taken_when_nothing_waits():
    feed = _Feed(10)
    feed.put(b"x" * 1000, timeout=0.05)
    with pytest.raises(queue.Full):
        feed.put(b"y", timeout=0.05)
    assert feed.get() == b"x" * 1000
    feed.put(b"y", timeout=0.05)


def _reader_of(*items):
    from services.common.blobs import _QueueReader
    feed = _Feed(1 << 20)
    for item in items:
        feed.put(item)
    return _QueueReader(feed)


def test_the_reader_gives_exactly_what_is_asked_across_the_chunks_as_bytes():
    reader = _reader_of(b"abc", b"", b"defgh", b"i", _EOF)
    first = reader.read(4)
    assert first == b"abcd" and type(first) is bytes  # the minio client takes bytes only
    assert reader.read(2) == b"ef" and reader.read(10) == b"ghi"
    assert reader.read(5) == b"" and reader.read() == b""  # at the end: nothing, however often


def test_the_reader_reads_everything_when_no_size_is_given():
    assert _reader_of(b"ab", b"cd", _EOF).read() == b"abcd"
    assert _reader_of(_EOF).read(3) == b""


def test_the_reader_raises_the_refusal_that_ended_the_upload():
    from services.common.blobs import _Failed
    reader = _reader_of(b"abc", _Failed(ValueError("not the sha256 the client sent")))
    assert reader.read(2) == b"ab"
    with pytest.raises(OSError, match="not the sha256 the client sent"):
        reader.read(5)


def test_a_reader_told_the_length_hands_over_the_last_byte_only_after_the_end():
    from services.common.blobs import _QueueReader
    feed = _Feed(1 << 20)
    reader = _QueueReader(feed, length=6)
    for item in (b"abc", b"def"):
        feed.put(item)
    assert reader.read(3) == b"abc"
    got = []
    last = threading.Thread(target=lambda: got.append(reader.read(3)), daemon=True)
    last.start()
    last.join(0.1)
    assert last.is_alive() and not got  # every byte is there, but the stream has not ended yet
    feed.put(_EOF)
    last.join(5)
    assert got == [b"def"]


def test_a_reader_told_the_length_raises_a_refusal_that_comes_after_the_last_byte():
    from services.common.blobs import _Failed, _QueueReader
    feed = _Feed(1 << 20)
    for item in (b"abcdef", _Failed(ValueError("not the sha256 the client sent"))):
        feed.put(item)
    with pytest.raises(OSError, match="not the sha256"):
        _QueueReader(feed, length=6).read(6)


@pytest.mark.parametrize("items, asked, words", [
    ((b"abc", b"defg", _EOF), 6, "more than the 6 bytes declared"),
    ((b"abc", b"de", _EOF), 6, "ended after 5 bytes, not the 6 declared"),
])
def test_a_reader_told_the_length_refuses_a_stream_of_another_length(items, asked, words):
    from services.common.blobs import _QueueReader
    feed = _Feed(1 << 20)
    for item in items:
        feed.put(item)
    with pytest.raises(OSError, match=words):
        _QueueReader(feed, length=6).read(asked)
