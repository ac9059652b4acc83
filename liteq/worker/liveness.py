"""Is a registered worker still alive? Cheap answers for workers on this host.

A worker registers its pid with the pid's start time (``/proc/<pid>/stat``)
and the kernel's boot id. Another worker on the same host — same host name,
same boot id, same pid namespace — can then tell in a few microseconds that
the process is gone (or that its pid was reused by another process), and
recover its tasks at once instead of waiting for their leases to expire.

Workers on other hosts (or in other pid namespaces) are only judged by their
heartbeat: one that has not beaten for several leases is gone.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..storage import WorkerRow

#: A registration whose heartbeat is older than this many leases is dead.
STALE_LEASES = 3.0


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def boot_id() -> str | None:
    """Return the kernel's boot id (Linux), or None elsewhere."""
    return _read("/proc/sys/kernel/random/boot_id")


def pid_namespace() -> str | None:
    """Return an identifier of this process's pid namespace (Linux), or None."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _stat(pid: int) -> list[str] | None:
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after it.
    return stat.rpartition(")")[2].split()


def pid_starttime(pid: int) -> int | None:
    """Return the start time of ``pid`` in clock ticks since boot, or None.

    None means the process does not exist (or is a zombie), or the platform
    has no ``/proc``.
    """
    fields = _stat(pid)
    if fields is None or len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    try:
        return int(fields[19])  # field 22 of the whole line
    except ValueError:
        return None


def pid_exists(pid: int) -> bool:
    """Return True if a process with ``pid`` exists (any owner)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class HostIdentity:
    """What makes two workers "on the same host, in the same pid namespace"."""

    host: str
    boot_id: str | None
    pidns: str | None

    @classmethod
    def current(cls) -> HostIdentity:
        """Return this process's identity."""
        return cls(socket.gethostname(), boot_id(), pid_namespace())

    def as_info(self) -> dict[str, str | None]:
        """Return the fields stored in a worker's ``info``."""
        return {"host": self.host, "pidns": self.pidns}

    def same_host(self, row: WorkerRow) -> bool:
        """Return True if ``row`` was registered on this host and pid namespace."""
        if self.boot_id is None or row.boot_id != self.boot_id:
            return False
        return row.info.get("host") == self.host and row.info.get("pidns") == self.pidns


#: Ids of the workers running in this process (several in tests).
LOCAL_WORKERS: set[str] = set()


def is_alive(row: WorkerRow, me: HostIdentity, now: float, lease: float) -> bool:
    """Return False if the worker of ``row`` is certainly gone.

    On the same host the pid (and its start time, so a reused pid does not
    count) decides. Elsewhere only a heartbeat older than
    :data:`STALE_LEASES` leases does.
    """
    if me.same_host(row):
        if row.pid == os.getpid():
            # Our own pid: alive only if it is one of this process's workers,
            # not an earlier incarnation (before a restart in place).
            return row.worker_id in LOCAL_WORKERS
        if row.pid_starttime is not None:
            started = pid_starttime(row.pid)
            if started is not None:
                return started == row.pid_starttime
            if os.path.isdir("/proc/self"):
                return False
        return pid_exists(row.pid)
    return row.heartbeat_at >= now - STALE_LEASES * lease


def dead_workers(
    rows: Iterable[WorkerRow], me: HostIdentity, my_id: str, now: float, lease: float
) -> list[str]:
    """Return the ids of the registered workers in ``rows`` that are gone."""
    return [
        row.worker_id
        for row in rows
        if row.worker_id != my_id and not is_alive(row, me, now, lease)
    ]
