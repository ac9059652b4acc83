"""Reading the pool's messages with one system call where two or four were made.

The pool talks over ``multiprocessing`` connections (socket pairs on POSIX),
and both sides keep writing with ``Connection.send_bytes``: a 4-byte
big-endian length (``-1`` and an 8-byte length above 2 GiB), then the
payload, in a single write for the usual small message. ``recv_bytes`` reads
a message back in two reads, and a reader that must not block asks ``poll``
before each message and once more at the end. On the 2-core test VM every
system call of the worker's round trip cost several microseconds, so
:class:`FrameReader` takes whatever is waiting in one ``recv`` and splits it
into messages itself.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket

#: Bytes asked for per read: a report batch of 64 tasks fits many times.
CHUNK = 1 << 16


class FrameReader:
    """Splits what arrives on one connection's descriptor into messages.

    Args:
        fd: The connection's descriptor (it is duplicated: closing the
            reader leaves the connection open, and the other way round).
    """

    def __init__(self, fd: int) -> None:
        self._buf = bytearray()
        self._sock: socket.socket | None = None
        self._fd = os.dup(fd)
        try:
            self._sock = socket.socket(fileno=self._fd)
        except OSError:
            # Not a socket (a plain pipe): read it with os.read.
            self._sock = None
        #: True once the other end closed the connection.
        self.closed = False

    def _recv(self, wait: bool) -> bytes | None:
        """One read: the bytes, b"" at the end, None if nothing waits (``wait`` False)."""
        sock = self._sock
        if sock is not None:
            try:
                return (
                    sock.recv(CHUNK) if wait else sock.recv(CHUNK, socket.MSG_DONTWAIT)
                )
            except (BlockingIOError, InterruptedError):
                return None
        if not wait and not select.select([self._fd], [], [], 0)[0]:
            return None
        return os.read(self._fd, CHUNK)

    def _split(self, limit: int = -1) -> list[bytes]:
        """Take up to ``limit`` (-1: all) complete messages off the buffer."""
        buf = self._buf
        out: list[bytes] = []
        pos, end = 0, len(buf)
        while end - pos >= 4 and len(out) != limit:
            size = int.from_bytes(buf[pos : pos + 4], "big", signed=True)
            start = pos + 4
            if size == -1:
                if end - pos < 12:
                    break
                size = int.from_bytes(buf[pos + 4 : pos + 12], "big")
                start = pos + 12
            stop = start + size
            if stop > end:
                break
            out.append(bytes(buf[start:stop]))
            pos = stop
        if pos:
            del buf[:pos]
        return out

    def read_waiting(self) -> list[bytes]:
        """Return every complete message waiting now, without blocking.

        A message that has only partly arrived stays buffered for the next
        call. At the end of the connection :attr:`closed` becomes True.

        Raises:
            OSError: the read failed.
        """
        while not self.closed:
            data = self._recv(wait=False)
            if data is None:
                break
            if not data:
                self.closed = True
                break
            self._buf += data
            if len(data) < CHUNK:
                break
        return self._split() if self._buf else []

    def read_one(self) -> bytes:
        """Return the next message, blocking until it has fully arrived.

        Raises:
            EOFError: the connection ended first.
            OSError: the read failed.
        """
        while True:
            if self._buf:
                messages = self._split(1)
                if messages:
                    return messages[0]
            if self.closed:
                raise EOFError
            data = self._recv(wait=True)
            if not data:
                self.closed = True
                raise EOFError
            self._buf += data

    def close(self) -> None:
        """Close the duplicated descriptor."""
        if self._sock is not None:
            self._sock.close()
        else:
            with contextlib.suppress(OSError):
                os.close(self._fd)
