"""A private redis-server for the peers, and a tiny RESP client to count keys.

The driver never imports redis-py: completion is counted with a handful of
cheap commands (DBSIZE, HLEN, ZCARD, FLUSHALL) spoken over a raw socket.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

from .procs import ProcessRegistry, poll_until


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RespClient:
    """Minimal synchronous Redis client: enough for counting and flushing."""

    def __init__(self, host: str, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.reader = self.sock.makefile("rb")

    def close(self) -> None:
        """Close the connection."""
        self.reader.close()
        self.sock.close()

    def command(self, *args: str | int) -> object:
        """Send one command and return its decoded reply."""
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = str(arg).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(parts))
        return self._read()

    def _read(self) -> object:
        line = self.reader.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(f"redis error: {rest.decode()}")
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = self.reader.read(size + 2)[:-2]
            return data.decode(errors="replace")
        if kind == b"*":
            count = int(rest)
            if count < 0:
                return None
            return [self._read() for _ in range(count)]
        raise RuntimeError(f"unexpected redis reply {line!r}")

    def int_command(self, *args: str | int) -> int:
        """Send a command whose reply is an integer."""
        reply = self.command(*args)
        if not isinstance(reply, int):
            raise RuntimeError(f"expected an integer from {args!r}, got {reply!r}")
        return reply


class RedisServer:
    """A throw-away redis-server on 127.0.0.1, without persistence."""

    def __init__(self, registry: ProcessRegistry, workdir: Path) -> None:
        self.registry = registry
        self.workdir = workdir
        self.host = "127.0.0.1"
        self.port = 0
        self.pid: int | None = None
        self._client: RespClient | None = None

    def start(self) -> None:
        """Start the server on a free port and wait until it answers PING."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server not found: run `bash benchmarks/setup_peers.sh`"
            )
        self.port = free_port()
        proc = self.registry.start(
            [
                binary,
                "--bind",
                self.host,
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
                "--dir",
                str(self.workdir),
                "--daemonize",
                "no",
            ],
            name="redis-server",
        )
        self.pid = proc.pid
        poll_until(
            self._try_ping,
            bool,
            timeout=15,
            what="redis-server to answer PING",
            alive=lambda: self.registry.problem(proc),
        )

    def _try_ping(self) -> bool:
        try:
            client = RespClient(self.host, self.port, timeout=1)
        except OSError:
            return False
        try:
            return client.command("PING") == "PONG"
        finally:
            client.close()

    def url(self, db: int = 0) -> str:
        """redis:// URL of database ``db``."""
        return f"redis://{self.host}:{self.port}/{db}"

    @property
    def client(self) -> RespClient:
        """A lazily opened connection used for counting."""
        if self._client is None:
            self._client = RespClient(self.host, self.port)
        return self._client

    def count(self, db: int, *command: str | int) -> int:
        """Run an integer-valued command on database ``db``."""
        self.client.command("SELECT", db)
        return self.client.int_command(*command)

    def flushall(self) -> None:
        """Drop every key in every database."""
        self.client.command("FLUSHALL")

    def version(self) -> str:
        """The server's version string."""
        out = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=False
        )
        return out.stdout.strip()

    def stop(self) -> None:
        """Close the counting connection and stop the server by pid."""
        if self._client is not None:
            try:
                self._client.close()
            except OSError:
                pass
            self._client = None
        if self.pid is not None:
            self.registry.stop(self.pid)
            self.pid = None
