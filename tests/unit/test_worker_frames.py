"""The pool's message reader: whatever waits, split into Connection messages."""

from __future__ import annotations

import multiprocessing
import os
import struct
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection

import pytest

from liteq.worker.frames import CHUNK, FrameReader


@pytest.fixture
def pair() -> Iterator[tuple[Connection, Connection]]:
    a, b = multiprocessing.Pipe(duplex=True)
    yield a, b
    a.close()
    b.close()


def test_frame_reader_returns_every_waiting_message_in_order(
    pair: tuple[Connection, Connection],
) -> None:
    reader_end, writer = pair
    reader = FrameReader(reader_end.fileno())
    assert reader.read_waiting() == []
    for payload in (b"one", b"", b"three"):
        writer.send_bytes(payload)
    assert reader.read_waiting() == [b"one", b"", b"three"]
    assert reader.read_waiting() == []
    reader.close()
    # The connection itself stays usable after the reader is closed.
    writer.send_bytes(b"still open")
    assert reader_end.recv_bytes() == b"still open"


def test_frame_reader_keeps_a_partly_arrived_message_for_later(
    pair: tuple[Connection, Connection],
) -> None:
    reader_end, writer = pair
    reader = FrameReader(reader_end.fileno())
    fd = writer.fileno()
    os.write(fd, struct.pack("!i", 6) + b"abc")
    assert reader.read_waiting() == []
    os.write(fd, b"def" + struct.pack("!i", 1))
    assert reader.read_waiting() == [b"abcdef"]
    os.write(fd, b"g")
    assert reader.read_one() == b"g"
    reader.close()


def test_frame_reader_reads_a_message_larger_than_one_chunk(
    pair: tuple[Connection, Connection],
) -> None:
    reader_end, writer = pair
    reader = FrameReader(reader_end.fileno())
    big = os.urandom(CHUNK * 3 + 17)
    sender = threading.Thread(target=writer.send_bytes, args=(big,))
    sender.start()
    assert reader.read_one() == big
    sender.join(timeout=10)
    reader.close()


def test_frame_reader_read_one_returns_messages_one_at_a_time(
    pair: tuple[Connection, Connection],
) -> None:
    reader_end, writer = pair
    reader = FrameReader(reader_end.fileno())
    writer.send_bytes(b"first")
    writer.send_bytes(b"second")
    assert reader.read_one() == b"first"
    assert reader.read_waiting() == [b"second"]
    reader.close()


def test_frame_reader_reports_the_end_of_the_connection(
    pair: tuple[Connection, Connection],
) -> None:
    reader_end, writer = pair
    reader = FrameReader(reader_end.fileno())
    writer.send_bytes(b"last words")
    writer.close()
    assert reader.read_waiting() == [b"last words"]
    assert reader.read_waiting() == []
    assert reader.closed
    with pytest.raises(EOFError):
        reader.read_one()
    reader.close()


def test_frame_reader_reads_a_plain_pipe_too() -> None:
    r, w = multiprocessing.Pipe(duplex=False)
    reader = FrameReader(r.fileno())
    assert reader.read_waiting() == []
    w.send_bytes(b"over a pipe")
    assert reader.read_one() == b"over a pipe"
    w.close()
    with pytest.raises(EOFError):
        reader.read_one()
    reader.close()
    r.close()
