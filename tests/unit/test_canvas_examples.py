"""The canvas examples users write (issue 5's list), each run end to end with ``drain``."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from liteq import Liteq, chord, group, signature, states
from liteq.testing import FakeClock, drain


@pytest.fixture
def tasks(app: Liteq) -> SimpleNamespace:
    pages: dict[str, Any] = {}

    @app.task(name="tasks.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="tasks.tsum")
    def tsum(values: list[int]) -> int:
        return sum(values)

    @app.task(name="tasks.fetch_page")
    def fetch_page(url: str) -> str:
        return f"page of {url}"

    @app.task(name="tasks.parse_page")
    def parse_page(page: str) -> str:
        return page.upper()

    @app.task(name="tasks.store_page_info")
    def store_page_info(info: str, url: str) -> None:
        pages.setdefault(url, []).append(info)

    return SimpleNamespace(
        add=add,
        tsum=tsum,
        fetch_page=fetch_page,
        parse_page=parse_page,
        store_page_info=store_page_info,
        pages=pages,
    )


URL = "http://example.com"


@pytest.mark.parametrize("call", ["call", "delay", "apply_async"])
def test_example_chain(app: Liteq, tasks: SimpleNamespace, call: str) -> None:
    t = tasks
    chain = t.fetch_page.s(URL) | t.parse_page.s() | t.store_page_info.s(URL)
    getattr(chain, "__call__" if call == "call" else call)()
    drain(app)
    assert t.pages == {URL: [f"PAGE OF {URL.upper()}"]}


def test_example_link_list(app: Liteq, tasks: SimpleNamespace) -> None:
    t = tasks
    t.fetch_page.apply_async((URL,), link=[t.parse_page.s(), t.store_page_info.s(URL)])
    drain(app)
    assert t.pages == {URL: [f"page of {URL}"]}


def test_example_si_ignores_the_parents_result(
    app: Liteq, tasks: SimpleNamespace
) -> None:
    result = (tasks.add.s(1, 1) | tasks.add.si(2, 2))()
    drain(app)
    assert result.get() == 4


def test_example_set_countdown_delay(
    app: Liteq, tasks: SimpleNamespace, clock: FakeClock
) -> None:
    result = tasks.add.s(2, 2).set(countdown=1).delay()
    drain(app)
    assert result.state == states.PENDING
    clock.advance(1)
    drain(app)
    assert result.get() == 4


def test_example_signature_by_name_without_import(
    app: Liteq, tasks: SimpleNamespace, clock: FakeClock
) -> None:
    producer = Liteq("producer", broker=app.conf.broker_url, clock=clock)
    try:
        assert "tasks.add" not in producer.tasks
        result = signature(
            "tasks.add", args=(2, 2), countdown=10, app=producer
        ).apply_async()
    finally:
        producer.close()
    clock.advance(10)
    drain(app)
    assert app.AsyncResult(result.id).get() == 4


def test_example_calling_a_signature_runs_here(
    app: Liteq, tasks: SimpleNamespace
) -> None:
    assert tasks.add.s(2, 2)() == 4
    assert app.storage.db.query_one("SELECT COUNT(*) FROM liteq_task")[0] == 0


def test_example_group(app: Liteq, tasks: SimpleNamespace) -> None:
    result = group(tasks.add.s(i, i) for i in range(10))()
    drain(app)
    assert result.get() == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]


def test_example_chord(app: Liteq, tasks: SimpleNamespace) -> None:
    result = chord((tasks.add.s(i, i) for i in range(100)), tasks.tsum.s())()
    drain(app)
    assert result.get() == 9900


def test_example_chunks(app: Liteq, tasks: SimpleNamespace) -> None:
    result = tasks.add.chunks(zip(range(100), range(100), strict=True), 10).group()()
    drain(app)
    assert [sum(part) for part in result.get()] == [
        sum(2 * i for i in range(start, start + 10)) for start in range(0, 100, 10)
    ]


def test_example_map_and_starmap(app: Liteq, tasks: SimpleNamespace) -> None:
    mapped = tasks.add.map([(1, 2), (3, 4)]).delay()
    starred = tasks.add.starmap([(1, 2), (3, 4)]).delay()
    drain(app, raise_on_failure=False)
    assert starred.get() == [3, 7]
    # As in Celery, map passes each item as one argument: add((1, 2)) fails.
    assert mapped.state == states.FAILURE
    assert isinstance(mapped.result, TypeError)
