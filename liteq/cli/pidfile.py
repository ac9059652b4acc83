"""``--pidfile``: one running process per pid file, stale files replaced."""

from __future__ import annotations

import contextlib
import errno
import os
from types import TracebackType

import click


class Pidfile:
    """A file holding the pid of the running process.

    Acquiring fails if the file names another live process; a file left by a
    process that died (or by this very process before it re-executed itself
    on SIGHUP) is replaced.

    Args:
        path: The pid file.
    """

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self._pid: int | None = None

    def read_pid(self) -> int | None:
        """Return the pid in the file, or None if there is no readable pid."""
        try:
            with open(self.path, encoding="ascii") as fh:
                text = fh.read().strip()
        except (OSError, ValueError):
            return None
        return int(text) if text.isdigit() else None

    def acquire(self) -> None:
        """Write this process's pid to the file.

        Raises:
            click.ClickException: another live process holds the file, or it
                cannot be written.
        """
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pid = self.read_pid()
                if pid is not None and pid != os.getpid() and _alive(pid):
                    raise click.ClickException(
                        f"pid file {self.path} names process {pid}, which is still "
                        "running; stop it first or choose another --pidfile"
                    ) from None
                # Stale (or ours, before a re-exec): replace it.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
                continue
            except OSError as exc:
                raise click.ClickException(
                    f"cannot create pid file {self.path}: {exc.strerror}"
                ) from exc
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(f"{os.getpid()}\n")
            self._pid = os.getpid()
            return
        raise click.ClickException(
            f"cannot take pid file {self.path}: it keeps changing"
        )

    def release(self) -> None:
        """Remove the file if it still holds this process's pid."""
        if self._pid is None:
            return
        if self.read_pid() == self._pid:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        self._pid = None

    def __enter__(self) -> Pidfile:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        # EPERM: it exists but belongs to someone else.
        return exc.errno == errno.EPERM
    return True
