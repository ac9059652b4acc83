"""The pool's fork server in real processes: start, share, exit codes, no tracker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from liteq.worker.forkserver import ForkServerContext, ServerProcess
from tests.apps import forkserver_targets as targets

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


def _run(ctx: ForkServerContext, target: object, *args: object) -> ServerProcess:
    process = ctx.Process(target=target, args=args, name="PoolWorker-7")  # type: ignore[arg-type]
    process.start()
    return process


def test_forkserver_child_gets_its_pipe_and_shared_memory() -> None:
    ctx = ForkServerContext()
    mine, theirs = ctx.Pipe(duplex=True)
    values = ctx.Array("d", 4)
    values[0] = 1.5
    process = _run(ctx, targets.report, theirs, values)
    theirs.close()
    assert mine.poll(20)
    pid, name, seen = mine.recv()
    process.join(20)
    assert (pid, name, seen) == (process.pid, "PoolWorker-7", 1.5)
    assert values[1] == 2.5
    assert process.exitcode == 0
    process.close()


@pytest.mark.parametrize(("code", "expected"), [(None, 0), (3, 3), ("bye", 1)])
def test_forkserver_child_exit_code_follows_sys_exit(
    code: object, expected: int
) -> None:
    process = _run(ForkServerContext(), targets.exit_with, code)
    process.join(20)
    assert process.exitcode == expected


def test_forkserver_child_that_raises_exits_with_1() -> None:
    process = _run(ForkServerContext(), targets.fail)
    process.join(20)
    assert process.exitcode == 1


def test_forkserver_killed_child_reports_the_signal_on_its_sentinel() -> None:
    process = _run(ForkServerContext(), targets.wait_for_signal)
    assert process.exitcode is None and process.is_alive()
    with pytest.raises(ValueError, match="still running"):
        process.close()
    os.kill(process.pid or 0, signal.SIGKILL)
    process.join(20)
    assert process.exitcode == -signal.SIGKILL


def test_forkserver_pool_starts_no_resource_tracker() -> None:
    script = textwrap.dedent(
        """
        import psutil
        from liteq.worker.forkserver import ForkServerContext
        from tests.apps import forkserver_targets as targets
        if __name__ == "__main__":
            process = ForkServerContext().Process(target=targets.exit_with, args=(0,))
            process.start()
            process.join(20)
            assert process.exitcode == 0
            for child in psutil.Process().children(recursive=True):
                print(" ".join(child.cmdline()))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=50,
        check=True,
        cwd=os.getcwd(),
    )
    assert "liteq.worker.forkserver" in out.stdout
    assert "resource_tracker" not in out.stdout
