"""Calling options as Celery spells them: task_routes forms, ISO times, argsrepr."""

from __future__ import annotations

import re
import sys
import textwrap
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from liteq import Liteq, group, serialization, states
from liteq.exceptions import ConfigurationError
from liteq.messages import Message
from liteq.testing import FakeClock, drain
from liteq.worker import Worker

UTC = timezone.utc


def _queue(app: Liteq, task_id: str) -> str:
    row = app.storage.broker.get_task_row(task_id)
    assert row is not None
    return row[2]


def _row(app: Liteq, task_id: str) -> tuple[str, int, float, float | None]:
    queue, priority, eta, expires = app.storage.db.execute(
        "SELECT queue, priority, eta, expires FROM liteq_task WHERE task_id = ?",
        (task_id,),
    )[0]
    return queue, priority, eta, expires


def _envelope(app: Liteq, task_id: str) -> Any:
    data, content_type = app.storage.db.execute(
        "SELECT message, content_type FROM liteq_task WHERE task_id = ?", (task_id,)
    )[0]
    return serialization.loads(bytes(data), content_type)


def _message(app: Liteq, task_id: str) -> Message:
    data, content_type = app.storage.db.execute(
        "SELECT message, content_type FROM liteq_task WHERE task_id = ?", (task_id,)
    )[0]
    return Message.decode(bytes(data), content_type)


def _count(app: Liteq) -> int:
    return int(app.storage.db.execute("SELECT COUNT(*) FROM liteq_task")[0][0])


@pytest.fixture
def router_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The name of an importable module of routers (gone from sys.modules after)."""
    name = "liteq_test_routers"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            calls = []

            def route_task(name, args, kwargs, options, task=None, **kw):
                calls.append(name)
                if name.startswith("billing."):
                    return {"queue": "billing", "priority": 3}
                return None

            def to_audit(name, args, kwargs, options, task=None, **kw):
                return "audit"

            class OldRouter:
                def route_for_task(self, task, args=None, kwargs=None):
                    return {"queue": "old"} if task.startswith("old.") else None
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(name, None)
    yield name
    sys.modules.pop(name, None)


# -- task_routes ---------------------------------------------------------------------


def test_task_routes_dict_with_a_compiled_regex_key_routes_matching_tasks(
    app: Liteq,
) -> None:
    app.conf.task_routes = {
        re.compile(r"(video|image)\.tasks\..*"): {"queue": "media"},
        "feed.tasks.*": {"queue": "feeds"},
        "tasks.exact": "exact",
    }
    queues = {
        name: _queue(app, app.send_task(name).id)
        for name in (
            "video.tasks.encode",
            "image.tasks.resize",
            "feed.tasks.import_feed",
            "tasks.exact",
            "audio.tasks.mix",
        )
    }
    assert queues == {
        "video.tasks.encode": "media",
        "image.tasks.resize": "media",
        "feed.tasks.import_feed": "feeds",
        "tasks.exact": "exact",
        "audio.tasks.mix": "celery",
    }


def test_task_routes_regex_keys_match_from_the_start_of_the_name(app: Liteq) -> None:
    app.conf.task_routes = {re.compile(r"video\."): "media"}
    assert _queue(app, app.send_task("video.encode").id) == "media"
    assert _queue(app, app.send_task("old.video.encode").id) == "celery"


def test_task_routes_globs_need_a_star_and_match_the_whole_name(app: Liteq) -> None:
    app.conf.task_routes = {"feed.*.run": "feeds", "tasks.a?": "question"}
    assert _queue(app, app.send_task("feed.x.run").id) == "feeds"
    assert _queue(app, app.send_task("feed.x.runner").id) == "celery"
    # Only "*" makes a pattern (Celery's rule): "?" is part of the name.
    assert _queue(app, app.send_task("tasks.ab").id) == "celery"
    assert _queue(app, app.send_task("tasks.a?").id) == "question"


def test_task_routes_list_of_pairs_tries_the_patterns_in_their_order(
    app: Liteq,
) -> None:
    app.conf.task_routes = (
        [
            ("feed.tasks.*", {"queue": "feeds"}),
            ("feed.*", "generic"),
            (
                re.compile(r"(video|image)\.tasks\..*"),
                {"queue": "media", "priority": 7},
            ),
            ("feed.tasks.special", "special"),
        ],
    )
    assert _row(app, app.send_task("feed.tasks.import_feed").id)[:2] == ("feeds", 0)
    assert _row(app, app.send_task("feed.other").id)[:2] == ("generic", 0)
    assert _row(app, app.send_task("image.tasks.crop").id)[:2] == ("media", 7)
    # An exact name is looked up before any pattern, wherever it stands.
    assert _queue(app, app.send_task("feed.tasks.special").id) == "special"
    assert _queue(app, app.send_task("web.tasks.x").id) == "celery"


def test_task_routes_a_lone_pair_is_a_list_of_one_pair(app: Liteq) -> None:
    app.conf.task_routes = [("feed.tasks.*", {"queue": "feeds"}), ("web.*", "web")]
    assert _queue(app, app.send_task("feed.tasks.a").id) == "feeds"
    assert _queue(app, app.send_task("web.page").id) == "web"


def test_task_routes_items_of_a_list_are_asked_in_order_until_one_answers(
    app: Liteq,
) -> None:
    seen: list[str] = []

    def first(name: str, args: Any, kwargs: Any, options: Any, task: Any = None) -> Any:
        seen.append(name)
        return None

    app.conf.task_routes = [first, {"tasks.*": "from-map"}, lambda *a, **k: "never"]
    assert _queue(app, app.send_task("tasks.x").id) == "from-map"
    assert seen == ["tasks.x"]


def test_task_routes_a_router_answering_an_empty_route_stops_the_lookup(
    app: Liteq,
) -> None:
    app.conf.task_routes = [lambda *a, **k: {}, {"tasks.*": "later"}]
    assert _queue(app, app.send_task("tasks.x").id) == "celery"


def test_task_routes_router_string_is_imported_on_first_use(
    app: Liteq, router_module: str, add: Any
) -> None:
    app.conf.task_routes = f"{router_module}.route_task"
    assert router_module not in sys.modules
    plain = add.delay(1, 2)
    assert router_module in sys.modules
    billed = app.send_task("billing.charge", (5,))
    assert _row(app, plain.id)[:2] == ("celery", 0)
    assert _row(app, billed.id)[:2] == ("billing", 3)
    assert sys.modules[router_module].calls == ["tasks.add", "billing.charge"]


def test_task_routes_router_strings_in_a_list_and_with_a_colon(
    app: Liteq, router_module: str
) -> None:
    app.conf.task_routes = (
        f"{router_module}.route_task",
        f"{router_module}:OldRouter",
        f"{router_module}:to_audit",
    )
    assert _queue(app, app.send_task("billing.x").id) == "billing"
    # A router class of Celery before 4.0 is instantiated and asked.
    assert _queue(app, app.send_task("old.x").id) == "old"
    assert _queue(app, app.send_task("other.x").id) == "audit"


def test_task_routes_router_string_that_cannot_be_imported_raises_and_writes_nothing(
    app: Liteq, add: Any
) -> None:
    app.conf.task_routes = ["no_such_pkg_for_routes.routers.route_task"]
    with pytest.raises(ConfigurationError, match="no_such_pkg_for_routes.routers"):
        add.delay(1, 2)
    with pytest.raises(ConfigurationError, match="route_task"):
        app.send_task("tasks.other")
    assert _count(app) == 0


def test_task_routes_pair_given_as_the_whole_setting_raises_with_a_hint(
    app: Liteq,
) -> None:
    app.conf.task_routes = ("feed.tasks.*", {"queue": "feeds"})
    with pytest.raises(ConfigurationError, match=r"pairs go in a list"):
        app.send_task("feed.tasks.x")


def test_task_routes_router_string_naming_no_router_raises(
    app: Liteq, router_module: str
) -> None:
    app.conf.task_routes = f"{router_module}.calls"
    with pytest.raises(ConfigurationError, match="not a router"):
        app.send_task("tasks.x")


def test_task_routes_entry_that_is_no_router_raises(app: Liteq) -> None:
    app.conf.task_routes = [42]
    with pytest.raises(ConfigurationError, match="42"):
        app.send_task("tasks.x")
    app.conf.task_routes = ([("feed.*", "feeds"), "stray"],)
    with pytest.raises(ConfigurationError, match="pairs"):
        app.send_task("tasks.x")


def test_task_routes_route_queue_may_be_an_object_with_a_name(app: Liteq) -> None:
    class Queue:
        def __init__(self, name: str) -> None:
            self.name = name

    app.conf.task_routes = {"tasks.*": {"queue": Queue("named"), "exchange": "x"}}
    assert _queue(app, app.send_task("tasks.x").id) == "named"


def test_task_routes_regex_key_added_to_the_routes_dict_applies_at_once(
    app: Liteq, add: Any
) -> None:
    routes: dict[Any, Any] = {}
    app.conf.task_routes = routes
    before = add.delay(1, 1)
    routes[re.compile(r"tasks\.")] = {"queue": "late"}
    after = add.delay(1, 1)
    assert (_queue(app, before.id), _queue(app, after.id)) == ("celery", "late")


def test_task_routes_explicit_queue_option_wins_over_the_route(app: Liteq) -> None:
    app.conf.task_routes = ([(re.compile("tasks"), "routed")],)
    assert _queue(app, app.send_task("tasks.x", queue="mine").id) == "mine"


def test_task_routes_regex_routed_task_is_claimed_from_its_queue(
    app: Liteq, add: Any
) -> None:
    app.conf.task_routes = {re.compile(r"tasks\.add$"): {"queue": "math"}}
    result = add.delay(2, 3)
    assert drain(app, queues=["celery"]) == 0
    assert drain(app, queues=["math"]) == 1
    assert result.get(timeout=1) == 5


def test_task_routes_enqueue_many_and_groups_follow_regex_routes(
    app: Liteq, add: Any
) -> None:
    app.conf.task_routes = ([(re.compile(r"tasks\."), "bulk")],)
    results = app.enqueue_many(add, [(1, 2), (3, 4)])
    members = group(add.s(5, 6), add.s(7, 8)).apply_async()
    assert [_queue(app, r.id) for r in results] == ["bulk", "bulk"]
    assert [_queue(app, r.id) for r in members.results] == ["bulk", "bulk"]


# -- eta and expires as ISO 8601 strings ---------------------------------------------


def test_apply_async_eta_iso_string_is_stored_as_that_time(
    app: Liteq, add: Any
) -> None:
    utc = add.apply_async((1, 2), eta="2030-01-01T00:00:00+00:00")
    offset = add.apply_async((1, 2), eta="2030-01-01T02:00:00+02:00")
    zulu = add.apply_async((1, 2), eta="2030-01-01T00:00:00Z")
    expected = datetime(2030, 1, 1, tzinfo=UTC)
    assert {_row(app, r.id)[2] for r in (utc, offset, zulu)} == {expected.timestamp()}
    assert _message(app, utc.id).eta == expected


def test_apply_async_expires_iso_string_is_stored_as_that_time(
    app: Liteq, add: Any
) -> None:
    result = add.apply_async((1, 2), expires="2030-06-01T12:30:00+00:00")
    expected = datetime(2030, 6, 1, 12, 30, tzinfo=UTC)
    assert _row(app, result.id)[3] == expected.timestamp()
    assert _message(app, result.id).expires == expected


def test_send_task_iso_strings_for_eta_and_expires(app: Liteq) -> None:
    result = app.send_task(
        "remote.job", eta="2030-01-01T00:00:00+00:00", expires="2030-01-02T00:00:00Z"
    )
    _, _, eta, expires = _row(app, result.id)
    assert (eta, expires) == (
        datetime(2030, 1, 1, tzinfo=UTC).timestamp(),
        datetime(2030, 1, 2, tzinfo=UTC).timestamp(),
    )


def test_naive_iso_strings_are_read_as_naive_datetimes_are(
    tmp_path: Path, clock: FakeClock
) -> None:
    for enable_utc, zone in ((True, UTC), (False, ZoneInfo("Asia/Shanghai"))):
        app = Liteq(
            "t",
            broker=tmp_path / f"naive-{enable_utc}.db",
            clock=clock,
            enable_utc=enable_utc,
            timezone="Asia/Shanghai",
            set_as_current=False,
        )
        from_string = app.send_task(
            "tasks.ping", eta="2030-01-01T08:00:00", expires="2030-01-01T09:00:00"
        )
        from_datetime = app.send_task(
            "tasks.ping",
            eta=datetime(2030, 1, 1, 8, 0),
            expires=datetime(2030, 1, 1, 9, 0),
        )
        _, _, eta, expires = _row(app, from_string.id)
        assert (eta, expires) == _row(app, from_datetime.id)[2:]
        assert eta == datetime(2030, 1, 1, 8, 0, tzinfo=zone).timestamp()
        assert expires == datetime(2030, 1, 1, 9, 0, tzinfo=zone).timestamp()
        app.close()


@pytest.mark.parametrize("option", ["eta", "expires"])
@pytest.mark.parametrize("value", ["tomorrow", "2030-13-01T00:00:00", "2030-01-01T"])
def test_malformed_iso_string_raises_value_error_naming_the_option(
    app: Liteq, add: Any, option: str, value: str
) -> None:
    with pytest.raises(ValueError, match=f"^{option}=.*ISO 8601"):
        add.apply_async((1, 2), **{option: value})
    assert _count(app) == 0


def test_empty_eta_and_expires_strings_mean_none_as_in_celery(
    app: Liteq, add: Any, clock: FakeClock
) -> None:
    result = add.apply_async((1, 2), eta="", expires="")
    _, _, eta, expires = _row(app, result.id)
    assert (eta, expires) == (clock.time(), None)


def test_eta_of_another_type_raises_type_error_naming_eta(app: Liteq, add: Any) -> None:
    with pytest.raises(TypeError, match="eta must be a datetime or an ISO 8601"):
        add.apply_async((1, 2), eta=1893456000)


def test_iso_eta_task_runs_once_the_clock_reaches_it(
    app: Liteq, add: Any, worker: Worker, clock: FakeClock
) -> None:
    start = clock.now()
    result = add.apply_async((2, 3), eta=(start + timedelta(minutes=5)).isoformat())
    assert drain(app, worker) == 0
    clock.advance(301)
    assert drain(app, worker) == 1
    assert result.get(timeout=1) == 5


def test_iso_expires_in_the_past_ends_revoked_without_running(
    app: Liteq, worker: Worker, clock: FakeClock
) -> None:
    ran: list[int] = []

    @app.task(name="tasks.job")
    def job() -> None:
        ran.append(1)

    result = job.apply_async(expires=(clock.now() + timedelta(seconds=10)).isoformat())
    clock.advance(11)
    drain(app, worker)
    assert ran == []
    assert result.state == states.REVOKED


def test_task_expires_attribute_may_be_an_iso_string(app: Liteq) -> None:
    @app.task(name="tasks.dated", expires="2030-01-01T00:00:00+00:00")
    def dated() -> None:
        return None

    result = dated.delay()
    assert _row(app, result.id)[3] == datetime(2030, 1, 1, tzinfo=UTC).timestamp()


# -- argsrepr and kwargsrepr ---------------------------------------------------------


def test_apply_async_argsrepr_and_kwargsrepr_become_message_headers(
    app: Liteq, add: Any
) -> None:
    result = add.apply_async(
        (2, 3), argsrepr="(<secret-x>, <secret-y>)", kwargsrepr="{'key': '***'}"
    )
    envelope = _envelope(app, result.id)
    assert envelope["headers"]["argsrepr"] == "(<secret-x>, <secret-y>)"
    assert envelope["headers"]["kwargsrepr"] == "{'key': '***'}"
    # Only how they are shown changes: the task gets the real arguments.
    assert envelope["body"][:2] == [[2, 3], {}]
    assert drain(app) == 1
    assert result.get(timeout=1) == 5


def test_signature_set_kwargsrepr_becomes_a_message_header(
    app: Liteq, add: Any
) -> None:
    sig = add.s(2, y=3).set(kwargsrepr="{'y': '<hidden>'}")
    result = sig.apply_async()
    headers = _envelope(app, result.id)["headers"]
    assert headers["kwargsrepr"] == "{'y': '<hidden>'}"
    assert "argsrepr" not in headers


def test_argsrepr_joins_the_user_headers_and_wins_over_them(app: Liteq) -> None:
    result = app.send_task(
        "remote.job",
        (1,),
        headers={"trace": "t-1", "argsrepr": "from headers"},
        argsrepr="(<redacted>,)",
    )
    headers = _envelope(app, result.id)["headers"]
    assert (headers["trace"], headers["argsrepr"]) == ("t-1", "(<redacted>,)")


def test_build_message_carries_argsrepr_in_the_message_headers(
    app: Liteq, add: Any
) -> None:
    message, _ = app.build_message(add.name, (2, 3), argsrepr="(<x>, <y>)")
    assert message.headers == {"argsrepr": "(<x>, <y>)"}
    assert message.to_dict()["headers"]["argsrepr"] == "(<x>, <y>)"


def test_argsrepr_reaches_the_running_task_in_its_request_headers(
    app: Liteq,
) -> None:
    seen: list[Any] = []

    @app.task(bind=True, name="tasks.secret")
    def secret(self: Any, token: str) -> None:
        seen.append((self.request.headers or {}).get("argsrepr"))

    secret.apply_async(("hunter2",), argsrepr="('<token>',)")
    assert drain(app) == 1
    assert seen == ["('<token>',)"]


def test_unknown_calling_options_are_still_rejected(app: Liteq, add: Any) -> None:
    with pytest.raises(
        TypeError, match=r"unexpected options for tasks.add: \['argrepr'\]"
    ):
        add.apply_async((1, 2), argrepr="(<x>,)")
    assert _count(app) == 0


def test_task_routes_router_sees_the_calls_options(app: Liteq, add: Any) -> None:
    seen: list[dict[str, Any]] = []

    def by_priority(
        name: str, args: Any, kwargs: Any, options: dict[str, Any], **kw: Any
    ) -> Any:
        seen.append(options)
        return "urgent" if options.get("priority", 0) >= 5 else None

    app.conf.task_routes = (by_priority,)
    high = add.apply_async((1, 1), priority=9, countdown=5)
    low = add.apply_async((1, 1))
    assert (_queue(app, high.id), _queue(app, low.id)) == ("urgent", "celery")
    assert seen[0] == {"priority": 9, "countdown": 5}
