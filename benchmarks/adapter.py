"""Base classes of the per-system adapters (see :mod:`benchmarks.systems`).

An adapter knows how to reset the system's state, start and stop its worker
(2 processes), drive the client script in ``apps/`` and count stored results
from outside with a cheap query. The driver never imports a peer framework:
peers run under ``benchmarks/.peers-venv/bin/python``, liteq under the
interpreter running the driver with the repository on ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from .procs import ProcessRegistry
from .redis_server import RedisServer

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
APPS_DIR = BENCH_DIR / "apps"
PEERS_PYTHON = BENCH_DIR / ".peers-venv" / "bin" / "python"
#: Compiled bytecode of every system's modules (git-ignored, like results/).
PYCACHE_DIR = BENCH_DIR / "results" / "pycache"


class SystemUnavailable(RuntimeError):
    """The system cannot be benchmarked here (not installed, API missing...).

    ``still_runs`` names the workloads that need less and can run anyway.
    """

    def __init__(self, message: str, still_runs: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.still_runs = still_runs


@dataclass
class Context:
    """Shared state of one benchmark run."""

    registry: ProcessRegistry
    workdir: Path
    redis: RedisServer | None = None


class System:
    """Base adapter; subclasses fill in the system-specific parts."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    module: ClassVar[str] = ""
    is_peer: ClassVar[bool] = True
    notes: ClassVar[list[str]] = []
    #: At most this many tasks in W2 and W4, for a system whose worker is too
    #: slow to drain N in minutes; rates stay comparable, and the report
    #: says which size was used. None: N.
    drain_cap: ClassVar[int | None] = None

    def drain_size(self, n: int) -> int:
        """How many tasks W2 and W4 use for this system when asked for ``n``."""
        cap = self.drain_cap
        return n if cap is None else min(n, cap)

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.worker: subprocess.Popen[bytes] | None = None
        self._calls = 0
        self.tag = "init"

    # -- environment ---------------------------------------------------------

    @property
    def python(self) -> str:
        """Interpreter for the worker and the clients."""
        return str(PEERS_PYTHON)

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for the worker and the clients."""
        env = dict(os.environ)
        # Every system imports from cached bytecode, as an installed package
        # does (pip compiles it at install): where PYTHONDONTWRITEBYTECODE is
        # set, each worker start would otherwise compile every module again.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE_DIR)
        env["PYTHONPATH"] = str(APPS_DIR)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.settings())
        env.update(extra or {})
        return env

    def settings(self) -> dict[str, str]:
        """``BENCH_*`` variables read by the app module."""
        return {}

    def check(self) -> dict[str, Any]:
        """Raise SystemUnavailable with a clear message if we cannot run.

        Returns the versions/settings reported by the app module.
        """
        if not PEERS_PYTHON.exists():
            raise SystemUnavailable(
                f"{PEERS_PYTHON} missing: run `bash benchmarks/setup_peers.sh`"
            )
        return self.info()

    # -- state ---------------------------------------------------------------

    def reset(self, tag: str) -> None:
        """Start from an empty broker and result store."""
        self.tag = tag

    def cleanup(self) -> None:
        """Remove files left by the last reset (default: nothing)."""

    def count_done(self) -> int:
        """Number of results stored so far."""
        raise NotImplementedError

    # -- worker --------------------------------------------------------------

    def worker_argv(self) -> list[str]:
        """Command line of a worker with 2 worker processes."""
        raise NotImplementedError

    def start_worker(self, extra_env: dict[str, str] | None = None) -> int:
        """Start the worker; returns its pid (root of the worker tree)."""
        if self.worker is not None:
            raise RuntimeError("worker already running")
        self.worker = self.ctx.registry.start(
            self.worker_argv(),
            name=f"{self.name}-worker-{self.tag}",
            cwd=APPS_DIR,
            env=self.env(extra_env),
        )
        return self.worker.pid

    def worker_problem(self) -> str | None:
        """Error text if the worker died, else None."""
        if self.worker is None:
            return "worker not started"
        return self.ctx.registry.problem(self.worker)

    def stop_worker(self) -> None:
        """Stop the worker tree by pid (SIGTERM, then SIGKILL)."""
        if self.worker is not None:
            self.ctx.registry.stop(self.worker.pid)
            self.worker = None

    def stop(self) -> None:
        """Stop everything this adapter started and drop its files."""
        self.stop_worker()
        self.cleanup()

    # -- clients -------------------------------------------------------------

    def _client_argv(self, op: str, **opts: Any) -> tuple[list[str], Path]:
        self._calls += 1
        out = self.ctx.workdir / f"{self.name}-{self._calls}-{op}.json"
        argv = [self.python, str(APPS_DIR / "bench_client.py"), self.module, op]
        for key, value in opts.items():
            argv += [f"--{key}", str(value)]
        argv += ["--out", str(out)]
        return argv, out

    def client(
        self,
        op: str,
        *,
        timeout: float,
        extra_env: dict[str, str] | None = None,
        **opts: Any,
    ) -> dict[str, Any]:
        """Run one client operation in a fresh process and return its JSON."""
        argv, out = self._client_argv(op, **opts)
        self.ctx.registry.run(
            argv,
            name=f"{self.name}-client-{op}",
            cwd=APPS_DIR,
            env=self.env(extra_env),
            timeout=timeout,
        )
        data: dict[str, Any] = json.loads(out.read_text())
        out.unlink()
        return data

    def start_client(
        self, op: str, **opts: Any
    ) -> tuple[subprocess.Popen[bytes], Path]:
        """Start a client operation in the background; returns (process, out)."""
        argv, out = self._client_argv(op, **opts)
        proc = self.ctx.registry.start(
            argv, name=f"{self.name}-client-{op}", cwd=APPS_DIR, env=self.env()
        )
        return proc, out

    def enqueue(self, n: int, timeout: float = 900) -> dict[str, Any]:
        """N one-at-a-time calls from a fresh producer process."""
        return self.client("enqueue", n=n, timeout=timeout)

    def bulk_variants(self) -> list[str]:
        """Names of the bulk-enqueue APIs the app module offers."""
        return []

    def bulk_enqueue(
        self, n: int, variant: str, timeout: float = 900
    ) -> dict[str, Any]:
        """One bulk call for N tasks from a fresh producer process."""
        return self.client("bulk", n=n, variant=variant, timeout=timeout)

    def round_trips(
        self,
        n: int,
        warmup: int,
        timeout: float = 600,
        extra_env: dict[str, str] | None = None,
    ) -> list[float]:
        """Latencies (s) of N sequential submit-and-wait calls after a warm-up."""
        data = self.client(
            "roundtrip", n=n, warmup=warmup, timeout=timeout, extra_env=extra_env
        )
        return [float(x) for x in data["latencies"]]

    def info(self) -> dict[str, Any]:
        """Versions and settings reported by the app module."""
        self.reset("info")
        try:
            return dict(self.client("info", timeout=120)["info"])
        except RuntimeError as exc:
            raise SystemUnavailable(f"{self.label}: {exc}") from exc
        finally:
            self.cleanup()

    def w3_variants(self) -> list[tuple[str, dict[str, str]]]:
        """Round-trip variants: ("default", env) plus any documented tuning."""
        return [("default", {})]

    def w4_variants(self) -> list[tuple[str, dict[str, str]]]:
        """Mixed-load variants: ("default", env) plus any documented tuning."""
        return [("default", {})]


# -- SQLite-backed systems -----------------------------------------------------


class SqliteSystem(System):
    """Systems whose broker and results live in one SQLite file."""

    count_sql: ClassVar[str] = ""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.db = ctx.workdir / f"{self.name}.db"

    def settings(self) -> dict[str, str]:
        return {"BENCH_DB": str(self.db)}

    def reset(self, tag: str) -> None:
        self.cleanup()
        self.tag = tag
        self.db = self.ctx.workdir / f"{self.name}-{tag}.db"

    def cleanup(self) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.db}{suffix}").unlink(missing_ok=True)

    def count_done(self) -> int:
        if not self.db.exists():
            return 0
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        try:
            return int(conn.execute(self.count_sql).fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return 0
            raise
        finally:
            conn.close()


# -- Redis-backed systems ------------------------------------------------------


class RedisSystem(System):
    """Systems that use the harness' private redis-server."""

    @property
    def redis(self) -> RedisServer:
        """The shared server (started by the runner)."""
        if self.ctx.redis is None:
            raise SystemUnavailable("redis-server is not running")
        return self.ctx.redis

    def settings(self) -> dict[str, str]:
        return {
            "BENCH_REDIS_URL": self.redis.url(0),
            "BENCH_RESULT_URL": self.redis.url(1),
        }

    def reset(self, tag: str) -> None:
        self.tag = tag
        self.redis.flushall()
