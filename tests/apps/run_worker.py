"""Run a worker for the subprocess tests: ``python -m tests.apps.run_worker '<json>'``.

The JSON object holds ``Worker`` keyword arguments plus ``burst``,
``loglevel``, ``settings`` (app settings to change first), ``bare`` (run
on the bare database file, as ``liteq worker tasks.db`` does) and
``batch_at_once`` (idle pool slots take batches from the first task on) and
``die_on_receipt`` (SIGKILL itself from a ``task_received`` receiver). The
database is the one in ``LITEQ_TEST_DB`` (the app of
:mod:`tests.apps.tasks`). Exits with the worker's exit code.
"""

from __future__ import annotations

import json
import logging
import os
import sys

FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s"


def main() -> int:
    """Build the worker from ``sys.argv[1]`` and run it."""
    options = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    logging.basicConfig(level=options.pop("loglevel", "INFO"), format=FORMAT)
    burst = bool(options.pop("burst", False))
    from liteq.worker import Worker

    if options.pop("batch_at_once", False):
        from liteq.worker import pool

        pool.FAST_STREAK = 0

    if options.pop("bare", False):
        # As ``liteq worker tasks.db``: no app module, tasks imported by name.
        from liteq import Liteq

        app = Liteq(broker=os.environ["LITEQ_TEST_DB"])
    else:
        from tests.apps.tasks import app
    app.conf.update(options.pop("settings", {}))
    if options.pop("die_on_receipt", False):
        # Killed between a claim's commit and its hand-over to the pool.
        import signal

        from liteq import signals

        def die(**kwargs: object) -> None:
            os.kill(os.getpid(), signal.SIGKILL)

        signals.task_received.connect(die, weak=False)
    worker = Worker(app, **options)
    print(worker.banner(), file=sys.stderr, flush=True)
    return worker.run(burst=burst)


if __name__ == "__main__":
    sys.exit(main())
