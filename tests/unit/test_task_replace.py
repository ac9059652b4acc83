"""``Task.replace``: a running task hands its id and its place to a signature."""

from __future__ import annotations

from typing import Any

import pytest

from liteq import Liteq, chain, chord, group, states
from liteq.testing import drain
from liteq.worker import Worker


@pytest.fixture
def t(app: Liteq) -> Any:
    class Tasks:
        pass

    tasks = Tasks()

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    @app.task
    def total(values: list[int]) -> int:
        return sum(values)

    @app.task(bind=True)
    def swap(self: Any, x: int) -> Any:
        return self.replace(add.s(x, 100))

    @app.task(bind=True)
    def fan(self: Any, n: int) -> Any:
        return self.replace(group(add.s(i, i) for i in range(n)))

    @app.task(bind=True)
    def steps(self: Any, x: int) -> Any:
        return self.replace(chain(add.s(x, 1), add.s(10)))

    @app.task
    def seen(value: Any) -> Any:
        return ("seen", value)

    for name, task in dict(
        add=add, total=total, swap=swap, fan=fan, steps=steps, seen=seen
    ).items():
        setattr(tasks, name, task)
    return tasks


def test_replace_gives_the_task_id_and_result_to_the_signature(
    app: Liteq, worker: Worker, t: Any
) -> None:
    result = t.swap.delay(1)
    drain(app, worker)
    assert result.get(timeout=0) == 101
    assert result.state == states.SUCCESS


def test_replace_keeps_the_rest_of_the_chain_and_the_callbacks(
    app: Liteq, worker: Worker, t: Any
) -> None:
    done = chain(t.swap.s(1), t.add.s(1)).apply_async()
    linked = t.swap.apply_async((2,), link=t.seen.s())
    drain(app, worker)
    assert done.get(timeout=0) == 102
    assert done.parent.get(timeout=0) == 101
    assert linked.get(timeout=0) == 102
    (callback,) = linked.children
    assert callback.get(timeout=0) == ["seen", 102]


def test_replace_inside_a_chord_header_counts_for_the_replaced_part(
    app: Liteq, worker: Worker, t: Any
) -> None:
    result = chord([t.swap.s(1), t.add.s(2, 2)], t.total.s()).apply_async()
    drain(app, worker)
    assert result.get(timeout=0) == 105


def test_replace_with_a_group_returns_the_list_of_its_results(
    app: Liteq, worker: Worker, t: Any
) -> None:
    result = t.fan.delay(3)
    after = chain(t.fan.s(2), t.total.s()).apply_async()
    drain(app, worker)
    assert result.get(timeout=0) == [0, 2, 4]
    assert after.get(timeout=0) == 2


def test_replace_with_a_chain_gives_its_last_result(
    app: Liteq, worker: Worker, t: Any
) -> None:
    result = t.steps.delay(5)
    drain(app, worker)
    assert result.get(timeout=0) == 16


def test_replace_under_eager_execution_returns_the_value(app: Liteq, t: Any) -> None:
    assert t.swap.apply((1,)).get() == 101
    app.conf.task_always_eager = True
    assert chain(t.swap.s(1), t.add.s(1)).delay().get() == 102


def test_replace_outside_a_running_task_is_an_error(t: Any) -> None:
    with pytest.raises(RuntimeError, match="inside a running task"):
        t.swap(1)


def test_a_replacement_that_cannot_be_queued_fails_the_task(
    app: Liteq, worker: Worker, t: Any
) -> None:
    @app.task(bind=True)
    def bad(self: Any) -> Any:
        return self.replace(t.add.s(object(), 1))

    result = bad.delay()
    drain(app, worker, raise_on_failure=False)
    assert result.state == states.FAILURE
    assert type(result.result).__name__ == "EncodeError"
