"""One adapter per benchmarked system: liteq (twice), Celery, Huey x2, RQ."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, ClassVar

from .adapter import (
    APPS_DIR,
    REPO_ROOT,
    RedisSystem,
    SqliteSystem,
    System,
    SystemUnavailable,
)


class Liteq(SqliteSystem):
    """liteq with its defaults: WAL, synchronous=NORMAL."""

    name = "liteq"
    label = "liteq (WAL, synchronous=NORMAL)"
    module = "liteq_app"
    is_peer = False
    durable = False
    count_sql = "SELECT count(*) FROM liteq_result WHERE status='SUCCESS'"
    notes = [
        "liteq: worker `-c 2` (prefork pool); tuned W3 with `worker_pool = "
        '"solo"` (the worker runs each task itself, no hand-off to a pool process); '
        'tuned W4 with `worker_pool = "solo"` and `worker_claim_linger = 0.005` '
        "(`--claim-linger`: while the worker keeps up with the producer, claims at "
        "most every 5 ms)."
    ]

    @property
    def python(self) -> str:
        return sys.executable

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = super().env(extra)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(APPS_DIR)])
        return env

    def settings(self) -> dict[str, str]:
        out = super().settings()
        if self.durable:
            out["BENCH_DURABLE"] = "1"
        return out

    def worker_argv(self) -> list[str]:
        # ``-A liteq_app``: the worker (and its children) use the app from the
        # task module, so ``durable=True`` set there reaches the worker too;
        # ``worker DB --include liteq_app`` would build a plain app without it.
        return [
            self.python,
            "-m",
            "liteq",
            "worker",
            str(self.db),
            "-A",
            "liteq_app",
            "-c",
            "2",
            "-l",
            "warning",
        ]

    def check(self) -> dict[str, Any]:
        self.reset("check")
        probe = (
            "import liteq_app\n"
            "missing = [n for n in ('enqueue_many',) "
            "if not hasattr(liteq_app.app, n)]\n"
            "missing += [n for n in ('delay', 's') if not hasattr(liteq_app.noop, n)]\n"
            "assert not missing, 'liteq API missing: ' + ', '.join(missing)\n"
        )
        # (what, command, workloads that can run without it)
        steps = [
            ("import liteq_app", [self.python, "-c", probe], ("deep",)),
            (
                "liteq worker --help",
                [self.python, "-m", "liteq", "worker", "--help"],
                ("w1", "deep"),
            ),
        ]
        try:
            for what, argv, still_runs in steps:
                try:
                    self.ctx.registry.run(
                        argv,
                        name=f"{self.name}-check",
                        cwd=APPS_DIR,
                        env=self.env(),
                        timeout=60,
                    )
                except RuntimeError as exc:
                    raise SystemUnavailable(
                        f"liteq is not runnable yet ({what} failed): {exc}",
                        still_runs=still_runs,
                    ) from exc
        finally:
            self.cleanup()
        return self.info()

    def bulk_variants(self) -> list[str]:
        return ["enqueue_many", "group"]

    def w3_variants(self) -> list[tuple[str, dict[str, str]]]:
        # Tuned: ``worker_pool = "solo"`` (README, "Speed"), set in the
        # task module so that ``-A liteq_app`` picks it up.
        return [("default", {}), ("tuned", {"BENCH_TUNED": "1"})]

    def w4_variants(self) -> list[tuple[str, dict[str, str]]]:
        # Tuned: ``worker_pool = "solo"`` and ``worker_claim_linger`` (README,
        # "Speed"), the latter through the worker command's environment.
        tuned = {"BENCH_TUNED": "1", "LITEQ_CLAIM_LINGER": "0.005"}
        return [("default", {}), ("tuned", tuned)]

    def deep_queue(
        self, rows: int, claims: int, timeout: float = 1800
    ) -> dict[str, Any]:
        """Claim latency with a deep ready queue / deep future-ETA backlog.

        Runs ``apps/liteq_deep_queue.py`` once per scenario, each on a fresh
        database file, and merges the metrics.
        """
        merged: dict[str, Any] = {"metrics": {}, "notes": {}, "plan": []}
        for scenario in ("baseline", "ready", "future"):
            self.reset(f"deep-{scenario}")
            argv, out = self._client_argv(f"deep-{scenario}")
            argv = [
                self.python,
                str(APPS_DIR / "liteq_deep_queue.py"),
                "--scenario",
                scenario,
                "--rows",
                str(rows),
                "--claims",
                str(claims),
                "--db",
                str(self.db),
                "--out",
                str(out),
            ]
            try:
                self.ctx.registry.run(
                    argv,
                    name=f"liteq-deep-{scenario}",
                    cwd=APPS_DIR,
                    env=self.env(),
                    timeout=timeout,
                )
                data = json.loads(out.read_text())
            finally:
                out.unlink(missing_ok=True)
                self.cleanup()
            merged["metrics"].update(data["metrics"])
            merged["notes"].update(data["notes"])
            merged["plan"] = data["plan"]
        return merged


class LiteqDurable(Liteq):
    """liteq with ``durable=True``: synchronous=FULL."""

    name = "liteq_durable"
    label = "liteq durable=True (WAL, synchronous=FULL)"
    durable = True
    notes: ClassVar[list[str]] = []  # the worker note of ``liteq`` covers both


class HueySqlite(SqliteSystem):
    """Huey on SqliteHuey, consumer with 2 worker processes."""

    name = "huey_sqlite"
    label = "Huey + SQLite"
    module = "huey_sqlite_app"
    count_sql = "SELECT count(*) FROM kv WHERE queue='bench'"
    notes = [
        "Huey-SQLite: SqliteHuey defaults (WAL, no PRAGMA synchronous of its own), "
        "consumer `-w 2 -k process -q`, default polling (0.1 s initial, x1.15 "
        "back-off, 10 s max); result waits poll from 50 ms with back-off."
    ]

    def worker_argv(self) -> list[str]:
        return [
            self.python,
            "-m",
            "huey.bin.huey_consumer",
            "huey_sqlite_app.huey",
            "-w",
            "2",
            "-k",
            "process",
            "-q",
        ]

    def bulk_variants(self) -> list[str]:
        return ["map"]


class CeleryRedis(RedisSystem):
    """Celery 5, Redis broker (db 0) and result backend (db 1), prefork -c 2."""

    name = "celery_redis"
    label = "Celery + Redis"
    module = "celery_app"
    notes = [
        "Celery: Redis broker and result backend, prefork `-c 2`, otherwise "
        "defaults (prefetch multiplier 4, gossip/mingle/heartbeat on)."
    ]

    def worker_argv(self) -> list[str]:
        return [
            self.python,
            "-m",
            "celery",
            "-A",
            "celery_app",
            "worker",
            "-P",
            "prefork",
            "-c",
            "2",
            "-l",
            "warning",
        ]

    def bulk_variants(self) -> list[str]:
        return ["group"]

    def count_done(self) -> int:
        # Results are the only keys in the backend database.
        return self.redis.count(1, "DBSIZE")


class HueyRedis(RedisSystem):
    """Huey on RedisHuey, consumer with 2 worker processes."""

    name = "huey_redis"
    label = "Huey + Redis"
    module = "huey_redis_app"

    def worker_argv(self) -> list[str]:
        return [
            self.python,
            "-m",
            "huey.bin.huey_consumer",
            "huey_redis_app.huey",
            "-w",
            "2",
            "-k",
            "process",
            "-q",
        ]

    def bulk_variants(self) -> list[str]:
        return ["map"]

    def count_done(self) -> int:
        return self.redis.count(0, "HLEN", "huey.results.bench")

    def w3_variants(self) -> list[tuple[str, dict[str, str]]]:
        return [("default", {}), ("tuned", {"BENCH_TUNED": "1"})]


class Rq(RedisSystem):
    """RQ, ``rq worker-pool -n 2`` (default Worker: one fork per job)."""

    name = "rq"
    label = "RQ"
    module = "rq_app"
    notes = ["RQ: `rq worker-pool -n 2` with the default Worker class (forks per job)."]
    # It forks a process per job (about 70 tasks/s on the 2-core VM): 20,000
    # tasks would take W2 and W4 about five minutes per repetition each.
    drain_cap = 2_000

    def worker_argv(self) -> list[str]:
        return [
            self.python,
            "-m",
            "rq.cli",
            "worker-pool",
            "-n",
            "2",
            "-u",
            self.redis.url(0),
            "-l",
            "WARNING",
            "bench",
        ]

    def bulk_variants(self) -> list[str]:
        return ["enqueue_many"]

    def count_done(self) -> int:
        return self.redis.count(0, "ZCARD", "rq:finished:bench")


SYSTEMS: dict[str, type[System]] = {
    cls.name: cls
    for cls in (Liteq, LiteqDurable, CeleryRedis, HueySqlite, HueyRedis, Rq)
}
LITEQ_SYSTEMS = ("liteq", "liteq_durable")
PEER_SYSTEMS = ("celery_redis", "huey_sqlite", "huey_redis", "rq")
