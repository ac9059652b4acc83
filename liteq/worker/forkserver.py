"""A fork server for pool children that needs no resource-tracker process.

``multiprocessing``'s ``forkserver`` (and ``spawn``) start context always
launches a second helper, the resource tracker, a whole interpreter that
only cleans up named semaphores and shared memory segments left behind. The
prefork pool creates neither, so that process is pure overhead (about
13 MiB resident). This module starts children the same way without it:

* one server process per worker, a fresh interpreter (no database
  connection or thread of the worker is inherited) that imports the
  preloaded modules once and then forks a child per request;
* a request carries the child's target and arguments, pickled, and the
  file descriptors they hold (pipe ends, the shared array) as ``SCM_RIGHTS``;
* each child gets a status socket: the server writes the child's pid to it
  at once and its exit status when it ends, so the parent's end works as a
  process sentinel (readable when the child has exited);
* the server ends when the worker does (a pipe the worker holds closes).

:class:`ForkServerContext` offers the part of a ``multiprocessing`` context
the pool uses: ``Pipe``, ``Array`` (of doubles, in shared memory, without a
lock), ``Process`` and ``set_forkserver_preload``.
"""

from __future__ import annotations

import contextlib
import io
import mmap
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import traceback
import weakref
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.connection import Pipe as _Pipe
from typing import Any

#: Most file descriptors one request may carry.
MAX_FDS = 16
_HEADER = struct.Struct("!I")
_PID = struct.Struct("!q")
_STATUS = struct.Struct("!i")
#: Exit code reported when the server vanished without telling.
UNKNOWN_EXIT = 255


class SharedDoubles:
    """A fixed-size array of doubles in memory shared with one child.

    Indexing reads and writes a slot without locking (each slot is written by
    one side only). Pickled for a child, it travels as a file descriptor.

    Args:
        size: Number of slots (all 0.0 at first).
    """

    def __init__(self, size: int, fd: int | None = None) -> None:
        nbytes = max(size, 1) * 8
        if fd is None:
            fd = _anonymous_file(nbytes)
        self.size = size
        self._fd = fd
        self._map = mmap.mmap(fd, nbytes)
        self._view = memoryview(self._map).cast("d")
        weakref.finalize(self, os.close, fd)

    def __getitem__(self, index: int) -> float:
        value: float = self._view[index]
        return value

    def __setitem__(self, index: int, value: float) -> None:
        self._view[index] = value

    def __len__(self) -> int:
        return self.size

    def fileno(self) -> int:
        """Return the descriptor of the shared memory."""
        return self._fd


def _anonymous_file(nbytes: int) -> int:
    """Return the descriptor of ``nbytes`` of zeroed memory no path names."""
    memfd = getattr(os, "memfd_create", None)
    if memfd is not None:
        fd: int = memfd("liteq-shared", getattr(os, "MFD_CLOEXEC", 0))
    else:  # pragma: no cover - BSD
        import tempfile

        fd, name = tempfile.mkstemp(prefix="liteq-shared-")
        os.unlink(name)
    os.ftruncate(fd, nbytes)
    return fd


# -- pickling arguments with their file descriptors ---------------------------------
def _rebuild_connection(index: int, readable: bool, writable: bool) -> Connection:
    return Connection(_received[index], readable, writable)


def _rebuild_doubles(index: int, size: int) -> SharedDoubles:
    return SharedDoubles(size, _received[index])


#: Descriptors received with the request being unpickled (in the child).
_received: list[int] = []


class _Pickler(pickle.Pickler):
    """Pickles pipe ends and shared arrays as indexes into the passed fds."""

    def __init__(self, file: io.BytesIO, fds: list[int]) -> None:
        super().__init__(file, pickle.HIGHEST_PROTOCOL)
        self.fds = fds

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, Connection):
            self.fds.append(obj.fileno())
            return _rebuild_connection, (len(self.fds) - 1, obj.readable, obj.writable)
        if isinstance(obj, SharedDoubles):
            self.fds.append(obj.fileno())
            return _rebuild_doubles, (len(self.fds) - 1, obj.size)
        return NotImplemented


# -- the parent's side ------------------------------------------------------------------
class _Server:
    """The parent's handle on its fork server process."""

    def __init__(self, preload: Sequence[str]) -> None:
        parent_sock, server_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        alive_r, alive_w = os.pipe()
        fds = (server_sock.fileno(), alive_r)
        flags: list[str] = getattr(subprocess, "_args_from_interpreter_flags", list)()
        code = (
            f"import sys; sys.path[:] = {sys.path!r}; "
            "from liteq.worker.forkserver import main; "
            f"main({fds[0]}, {fds[1]}, {list(preload)!r})"
        )
        try:
            self.popen = subprocess.Popen(
                [_executable(), *flags, "-c", code], pass_fds=fds, close_fds=True
            )
        finally:
            server_sock.close()
            os.close(alive_r)
        self.sock = parent_sock
        self.alive_w = alive_w
        self.pid = os.getpid()
        self.lock = threading.Lock()

    def usable(self) -> bool:
        return self.pid == os.getpid() and self.popen.poll() is None

    def request(self, payload: bytes, fds: list[int]) -> None:
        with self.lock:
            socket.send_fds(self.sock, [_HEADER.pack(len(payload))], fds)
            self.sock.sendall(payload)


def _executable() -> str:
    from multiprocessing import spawn

    return os.fsdecode(spawn.get_executable())


_server: _Server | None = None
_server_lock = threading.Lock()


def _ensure_server(preload: Sequence[str]) -> _Server:
    global _server
    with _server_lock:
        if _server is None or not _server.usable():
            if _server is not None and _server.pid == os.getpid():
                with contextlib.suppress(OSError):
                    _server.sock.close()
                    os.close(_server.alive_w)
                _server.popen.wait()
            _server = _Server(preload)
        return _server


class ServerProcess:
    """A child started by the fork server; the subset of ``Process`` the pool uses.

    Args:
        target: A module-level callable (pickled by reference).
        args: Its arguments; pipe ends and :class:`SharedDoubles` among them
            are passed as file descriptors.
        name: The child's ``multiprocessing`` process name (log records show it).
        daemon: Accepted for compatibility; the child never outlives the server.
        preload: Modules the server imports before its first fork.
    """

    def __init__(
        self,
        target: Callable[..., object],
        args: tuple[Any, ...] = (),
        name: str | None = None,
        daemon: bool | None = None,
        preload: Sequence[str] = (),
    ) -> None:
        self.target = target
        self.args = args
        self.name = name or "PoolWorker"
        self.daemon = bool(daemon)
        self.preload = tuple(preload)
        self.pid: int | None = None
        self._status: socket.socket | None = None
        self._code: int | None = None

    @property
    def sentinel(self) -> int:
        """A descriptor that becomes readable when the child has exited."""
        if self._status is None:
            raise ValueError("process not started")
        return self._status.fileno()

    def start(self) -> None:
        """Fork the child in the server; return once its pid is known.

        Raises:
            OSError: the server could not be reached or did not answer.
        """
        import multiprocessing
        from multiprocessing import spawn

        fds: list[int] = []
        buf = io.BytesIO()
        authkey = bytes(multiprocessing.current_process().authkey)
        # The worker's main module (a script, or ``python -m proj.celery``),
        # so that the child can import ``__main__:app`` as spawn would.
        prepared = spawn.get_preparation_data(self.name)
        main = {
            key: prepared[key]
            for key in ("init_main_from_name", "init_main_from_path")
            if key in prepared
        }
        _Pickler(buf, fds).dump(
            (sys.path, os.getcwd(), self.name, authkey, main, self.target, self.args)
        )
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            for attempt in (1, 2):
                server = _ensure_server(self.preload)
                try:
                    server.request(buf.getvalue(), [theirs.fileno(), *fds])
                    break
                except OSError:
                    if attempt == 2:
                        raise
                    server.popen.poll()
        finally:
            theirs.close()
        data = _read_exactly(mine, _PID.size)
        if len(data) != _PID.size:
            mine.close()
            raise OSError("the fork server did not start the process")
        self.pid = _PID.unpack(data)[0]
        self._status = mine

    @property
    def exitcode(self) -> int | None:
        """The exit code (``-N`` for signal N), or None while it runs."""
        if self._code is None and self._status is not None:
            ready, _, _ = select.select([self._status], [], [], 0)
            if ready:
                self._read_status()
        return self._code

    def _read_status(self) -> None:
        assert self._status is not None
        data = _read_exactly(self._status, _STATUS.size)
        self._code = (
            _STATUS.unpack(data)[0] if len(data) == _STATUS.size else UNKNOWN_EXIT
        )

    def is_alive(self) -> bool:
        """True until the child has exited."""
        return self.pid is not None and self.exitcode is None

    def join(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` seconds for the child to exit."""
        if self._status is None or self._code is not None:
            return
        ready, _, _ = select.select([self._status], [], [], timeout)
        if ready:
            self._read_status()

    def terminate(self) -> None:
        """Send SIGTERM to the child if it runs."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """Send SIGKILL to the child if it runs."""
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        if self.pid is not None and self.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def close(self) -> None:
        """Release the status socket of an exited child.

        Raises:
            ValueError: the child is still running.
        """
        if self._status is not None:
            if self.exitcode is None:
                raise ValueError("cannot close a process while it is still running")
            self._status.close()
            self._status = None


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        try:
            chunk = sock.recv(size - len(data))
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data


class ForkServerContext:
    """The part of a ``multiprocessing`` context the prefork pool uses."""

    def __init__(self) -> None:
        self.preload: tuple[str, ...] = ()

    def set_forkserver_preload(self, modules: Sequence[str]) -> None:
        """Modules the server imports before forking (used when it starts)."""
        self.preload = tuple(modules)

    @staticmethod
    def Pipe(duplex: bool = True) -> tuple[Connection, Connection]:  # noqa: N802 - multiprocessing's name
        """Return a pair of connected pipe ends."""
        return _Pipe(duplex)

    @staticmethod
    def Array(kind: object, size: int, lock: bool = False) -> SharedDoubles:  # noqa: N802
        """Return shared memory for ``size`` doubles (``ctypes.c_double`` only, no lock).

        Raises:
            ValueError: another element type, or a lock was asked for.
        """
        import ctypes

        if kind not in (ctypes.c_double, "d") or lock:
            raise ValueError("only lock-free arrays of doubles are supported")
        return SharedDoubles(size)

    def Process(  # noqa: N802
        self,
        target: Callable[..., object],
        args: tuple[Any, ...] = (),
        name: str | None = None,
        daemon: bool | None = None,
    ) -> ServerProcess:
        """Return a child to be started by the fork server."""
        return ServerProcess(target, args, name, daemon, self.preload)


# -- the server process -----------------------------------------------------------------
def main(sock_fd: int, alive_fd: int, preload: list[str]) -> None:
    """Run the fork server: preload, then fork one child per request."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _stdin_to_devnull()
    for name in preload:
        with contextlib.suppress(ImportError):
            __import__(name)
    _release_free_memory()
    sock = socket.socket(fileno=sock_fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    status_of: dict[int, socket.socket] = {}
    while True:
        try:
            ready, _, _ = select.select([sock.fileno(), alive_fd, wake_r], [], [])
        except InterruptedError:  # pragma: no cover - retried by Python
            continue
        if alive_fd in ready:
            return  # the worker is gone
        if wake_r in ready:
            with contextlib.suppress(OSError):
                while os.read(wake_r, 512):
                    pass
            _reap(status_of)
        if sock.fileno() in ready:
            request = _receive(sock)
            if request is None:
                return
            payload, fds = request
            status = socket.socket(fileno=fds[0])
            pid = os.fork()
            if pid == 0:
                code = UNKNOWN_EXIT
                try:
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    signal.signal(signal.SIGINT, signal.SIG_DFL)
                    for fd in (sock_fd, alive_fd, wake_r, wake_w):
                        os.close(fd)
                    for other in status_of.values():
                        other.close()
                    status.close()
                    code = _run_child(payload, fds[1:])
                finally:
                    os._exit(code)
            for fd in fds[1:]:
                os.close(fd)
            with contextlib.suppress(OSError):
                status.sendall(_PID.pack(pid))
            status_of[pid] = status
            # A child that ended before its entry existed is reaped here.
            _reap(status_of)


def _release_free_memory() -> None:
    """Give the memory freed while importing back to the system (glibc).

    Every child is a copy of the server, so each page returned here is
    resident in none of them (about 2 MiB each after importing liteq).
    """
    import gc

    gc.collect()
    try:
        import ctypes

        trim = ctypes.CDLL(None).malloc_trim
    except (ImportError, OSError, AttributeError):  # pragma: no cover - not glibc
        return
    trim(0)


def _stdin_to_devnull() -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stdin.close()
        fd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(fd, 0)
        os.close(fd)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - lives with the process


def _receive(sock: socket.socket) -> tuple[bytes, list[int]] | None:
    try:
        data, fds, _, _ = socket.recv_fds(sock, _HEADER.size, MAX_FDS)
    except OSError:
        return None
    if not data:
        return None
    data += _read_exactly(sock, _HEADER.size - len(data))
    (size,) = _HEADER.unpack(data)
    payload = _read_exactly(sock, size)
    if len(payload) != size or not fds:
        for fd in fds:
            os.close(fd)
        return None
    return payload, list(fds)


def _reap(status_of: dict[int, socket.socket]) -> None:
    while status_of:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        sock = status_of.pop(pid, None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.sendall(_STATUS.pack(os.waitstatus_to_exitcode(status)))
            sock.close()


def _run_child(payload: bytes, fds: list[int]) -> int:
    """Unpickle the target and run it, as ``multiprocessing`` runs a process."""
    _received[:] = fds
    path, cwd, name, authkey, main, target, args = pickle.loads(payload)
    del _received[:]
    sys.path[:] = path
    with contextlib.suppress(OSError):
        os.chdir(cwd)
    import multiprocessing

    process = multiprocessing.current_process()
    process.name = name
    process.authkey = authkey
    code = 0
    try:
        if main:
            from multiprocessing import spawn

            # Imported as ``__mp_main__``: its ``if __name__ == "__main__"``
            # block does not run, exactly as with multiprocessing's children.
            spawn.prepare(main)
        target(*args)
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            sys.stderr.write(f"{exc.code}\n")
            code = 1
    except BaseException:  # noqa: BLE001 - reported like multiprocessing does
        sys.stderr.write(f"Process {name}:\n")
        traceback.print_exc()
        code = 1
    finally:
        for thread in threading.enumerate():
            if thread is not threading.main_thread() and not thread.daemon:
                thread.join()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
    return code
