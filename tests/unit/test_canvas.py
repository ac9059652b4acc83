"""Signatures and workflow construction: Celery's rules for merging, linking, ``|``."""

from __future__ import annotations

import json
import pickle
from types import SimpleNamespace

import pytest

from liteq import Liteq
from liteq.canvas import (
    Signature,
    chain,
    chord,
    chunks,
    group,
    maybe_signature,
    signature,
    subtask,
    xmap,
    xstarmap,
)
from liteq.serialization import json_dumps, json_loads


@pytest.fixture
def t(app: Liteq) -> SimpleNamespace:
    @app.task(name="tasks.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="tasks.tsum")
    def tsum(values: list[int]) -> int:
        return sum(values)

    @app.task(name="tasks.echo")
    def echo(*args: object, **kwargs: object) -> object:
        return [list(args), kwargs]

    return SimpleNamespace(add=add, tsum=tsum, echo=echo)


# -- Signature fields --------------------------------------------------------------------


def test_signature_is_a_plain_dict_of_celery_fields(t: SimpleNamespace) -> None:
    sig = t.add.s(2, 2)
    assert dict(sig) == {
        "task": "tasks.add",
        "args": (2, 2),
        "kwargs": {},
        "options": {},
        "subtask_type": None,
        "immutable": False,
    }
    assert isinstance(sig, dict)


def test_signature_by_name_takes_options_as_keywords(app: Liteq) -> None:
    sig = signature("tasks.add", args=(2, 2), countdown=10, app=app)
    assert sig.name == sig.task == "tasks.add"
    assert sig.args == (2, 2)
    assert sig.options == {"countdown": 10}
    assert subtask is signature


def test_task_signature_takes_args_kwargs_and_options(t: SimpleNamespace) -> None:
    sig = t.add.signature((2,), {"y": 3}, countdown=10)
    assert (sig.args, sig.kwargs, sig.options) == ((2,), {"y": 3}, {"countdown": 10})
    assert t.add.subtask((1, 1)).args == (1, 1)


def test_si_makes_an_immutable_signature(t: SimpleNamespace) -> None:
    assert t.add.si(2, 2).immutable
    assert not t.add.s(2, 2).immutable
    assert t.add.signature((2, 2), immutable=True).immutable


def test_signature_of_a_dict_rebuilds_it_and_of_a_signature_copies_it(
    t: SimpleNamespace,
) -> None:
    original = t.add.s(1, 2).set(queue="q")
    copy = signature(original)
    assert copy == original and copy is not original
    copy.set(queue="other")
    assert original.options["queue"] == "q"
    assert signature(dict(original)) == original


def test_maybe_signature_rejects_what_is_not_a_signature() -> None:
    with pytest.raises(TypeError, match="expected a signature"):
        maybe_signature("tasks.add")


def test_maybe_signature_passes_none_through() -> None:
    assert maybe_signature(None) is None


def test_group_skew_spreads_countdowns_and_repeats_the_last_after_stop(
    t: SimpleNamespace,
) -> None:
    g = group(t.echo.s(i) for i in range(5))
    assert g.skew(start=1, stop=3) is g
    assert [m.options["countdown"] for m in g.tasks] == [1.0, 2.0, 3.0, 3.0, 3.0]
    g.skew(start=0.5, step=0.25)
    assert [m.options["countdown"] for m in g.tasks] == [0.5, 0.75, 1.0, 1.25, 1.5]


# -- merging (Celery's rules) ---------------------------------------------------------


def test_partial_args_are_prepended_and_kwargs_merged(t: SimpleNamespace) -> None:
    sig = t.echo.s(3, a=1)
    clone = sig.clone((1, 2), {"b": 2})
    assert clone.args == (1, 2, 3)
    assert clone.kwargs == {"a": 1, "b": 2}
    assert sig.args == (3,)


def test_immutable_signature_ignores_partial_arguments_but_takes_options(
    t: SimpleNamespace,
) -> None:
    sig = t.echo.si(3)
    clone = sig.clone((1,), {"b": 2}, countdown=5)
    assert clone.args == (3,) and clone.kwargs == {}
    assert clone.options == {"countdown": 5}


def test_set_updates_options_in_place_and_returns_the_signature(
    t: SimpleNamespace,
) -> None:
    sig = t.add.s(2, 2)
    assert sig.set(countdown=1, queue="q") is sig
    assert sig.options == {"countdown": 1, "queue": "q"}
    sig.set(immutable=True)
    assert sig.immutable


def test_clone_copies_options_so_links_on_the_copy_stay_there(
    t: SimpleNamespace,
) -> None:
    sig = t.add.s(1, 1)
    sig.link(t.tsum.s())
    clone = sig.clone()
    clone.link(t.echo.s())
    assert len(sig.options["link"]) == 1
    assert len(clone.options["link"]) == 2


def test_a_group_id_set_once_is_not_overridden_by_merging(t: SimpleNamespace) -> None:
    sig = t.add.s(1, 1).set(group_id="g1")
    assert sig.clone(group_id="g2").options["group_id"] == "g1"


def test_replace_swaps_args_kwargs_or_options(t: SimpleNamespace) -> None:
    sig = t.echo.s(1, a=1).set(queue="q")
    new = sig.replace(args=(9,), options={})
    assert new.args == (9,) and new.kwargs == {"a": 1} and new.options == {}


# -- links and freezing -----------------------------------------------------------------


def test_link_returns_the_callback_and_on_error_returns_the_signature(
    t: SimpleNamespace,
) -> None:
    sig = t.add.s(1, 1)
    callback, errback = t.tsum.s(), t.echo.s()
    assert sig.link(callback) is callback
    assert sig.link_error(errback) is errback
    assert sig.on_error(t.echo.s(1)) is sig
    assert sig.options["link"] == [callback]
    assert sig.options["link_error"] == [errback, t.echo.s(1)]


def test_linking_the_same_callback_twice_keeps_one(t: SimpleNamespace) -> None:
    sig = t.add.s(1, 1)
    sig.link(t.tsum.s())
    sig.link(t.tsum.s())
    assert len(sig.options["link"]) == 1
    assert [s.name for s in sig.flatten_links()] == ["tasks.add", "tasks.tsum"]


def test_freeze_fixes_the_task_id_once(t: SimpleNamespace) -> None:
    sig = t.add.s(1, 1)
    result = sig.freeze()
    assert sig.id == result.id
    assert sig.freeze().id == result.id
    assert t.add.s(1, 1).freeze("my-id").id == "my-id"


def test_freezing_a_chain_links_each_result_to_the_previous_one(
    t: SimpleNamespace,
) -> None:
    c = t.add.s(1, 1) | t.add.s(2) | t.add.s(3)
    last = c.freeze()
    ids = [step.id for step in c.tasks]
    assert last.id == ids[2]
    assert last.parent.id == ids[1]
    assert last.parent.parent.id == ids[0]
    assert last.parent.parent.parent is None


def test_freezing_a_chord_makes_the_header_group_the_body_results_parent(
    t: SimpleNamespace,
) -> None:
    c = chord([t.add.s(1, 1), t.add.s(2, 2)], t.tsum.s())
    result = c.freeze()
    assert result.id == c.body.id
    header = result.parent
    assert [r.id for r in header.results] == [s.id for s in c.tasks]
    assert all(s.options["group_id"] == header.id for s in c.tasks)
    assert all(s.options["chord"] == c.body for s in c.tasks)


# -- calling in this process ----------------------------------------------------------------


def test_calling_a_signature_runs_the_function_here(t: SimpleNamespace) -> None:
    assert t.add.s(2, 2)() == 4
    assert t.add.s(2)(3) == 5
    assert t.add.si(2, 2)(100) == 4


def test_apply_runs_through_the_worker_code_path(t: SimpleNamespace) -> None:
    result = t.add.s(2).apply((3,))
    assert result.get() == 5
    assert result.successful()


def test_invert_applies_and_waits(app: Liteq, t: SimpleNamespace) -> None:
    app.conf.task_always_eager = True
    assert ~t.add.s(2, 3) == 5


# -- serialization --------------------------------------------------------------------------


def test_every_kind_of_signature_round_trips_through_json(t: SimpleNamespace) -> None:
    workflows = [
        t.add.s(1, 2).set(countdown=3),
        t.add.s(1, 1) | t.add.s(2),
        group(t.add.s(1, 1), t.add.s(2, 2)),
        chord([t.add.s(1, 1), t.add.s(2, 2)], t.tsum.s()),
        xmap(t.tsum.s(), [[1], [2]]),
        xstarmap(t.add.s(), [(1, 2)]),
        chunks(t.add.s(), [(1, 2), (3, 4)], 1),
    ]
    for sig in workflows:
        rebuilt = maybe_signature(json_loads(json_dumps(sig)))
        assert type(rebuilt) is type(sig)
        assert json.loads(json_dumps(rebuilt)) == json.loads(json_dumps(sig))


def test_signatures_pickle_as_plain_data(t: SimpleNamespace) -> None:
    c = chord([t.add.s(1, 1)], t.tsum.s())
    rebuilt = pickle.loads(pickle.dumps(c))
    assert isinstance(rebuilt, chord)
    assert rebuilt.body == c.body


def test_a_rebuilt_chord_keeps_its_header_and_body(t: SimpleNamespace) -> None:
    c = chord([t.add.s(1, 1), t.add.s(2, 2)], t.tsum.s())
    rebuilt = maybe_signature(json_loads(json_dumps(c)))
    assert isinstance(rebuilt, chord)
    assert [s.args for s in rebuilt.tasks] == [(1, 1), (2, 2)]
    assert rebuilt.body.name == "tasks.tsum"


# -- composing with | --------------------------------------------------------------------------


def test_or_of_signatures_builds_a_chain(t: SimpleNamespace) -> None:
    c = t.add.s(1, 1) | t.add.s(2) | t.add.s(3)
    assert isinstance(c, chain)
    assert [s.args for s in c.tasks] == [(1, 1), (2,), (3,)]


def test_nested_chains_flatten(t: SimpleNamespace) -> None:
    inner = t.add.s(2) | t.add.s(3)
    assert len((t.add.s(1, 1) | inner).tasks) == 3
    assert len(chain(t.add.s(1, 1), inner, t.add.s(4)).tasks) == 4
    assert len(chain(t.add.s(i) for i in range(3)).tasks) == 3


def test_group_followed_by_a_task_is_a_chord(t: SimpleNamespace) -> None:
    c = group(t.add.s(1, 1), t.add.s(2, 2)) | t.tsum.s()
    assert isinstance(c, chord)
    assert c.body.name == "tasks.tsum"
    longer = t.add.s(1, 1) | group(t.add.s(1), t.add.s(2)) | t.tsum.s()
    assert isinstance(longer, chain)
    assert isinstance(longer.tasks[-1], chord)


def test_a_chord_followed_by_a_task_runs_it_after_the_body(t: SimpleNamespace) -> None:
    c = chord([t.add.s(1, 1)], t.tsum.s()) | t.add.s(10)
    assert isinstance(c, chord)
    assert isinstance(c.body, chain)
    assert [s.name for s in c.body.tasks] == ["tasks.tsum", "tasks.add"]


def test_a_group_of_one_in_a_chain_is_just_that_task(t: SimpleNamespace) -> None:
    c = t.add.s(1, 1) | group(t.add.s(2))
    assert [type(s) for s in c.tasks] == [Signature, Signature]


def test_chain_link_goes_to_the_last_step_and_link_error_to_every_step(
    t: SimpleNamespace,
) -> None:
    c = t.add.s(1, 1) | t.add.s(2)
    c.link(t.tsum.s())
    c.link_error(t.echo.s())
    c.freeze()
    first, last = c.tasks
    assert "link" not in first.options and last.options["link"] == [t.tsum.s()]
    assert first.options["link_error"] == last.options["link_error"] == [t.echo.s()]


def test_group_link_goes_immutable_to_the_first_task_and_link_error_to_all(
    t: SimpleNamespace,
) -> None:
    g = group(t.add.s(1, 1), t.add.s(2, 2))
    g.link(t.tsum.s())
    g.link_error(t.echo.s())
    assert g.tasks[0].options["link"][0].immutable
    assert "link" not in g.tasks[1].options
    assert all(s.options["link_error"] == [t.echo.s()] for s in g.tasks)


def test_chord_link_and_link_error_go_to_the_body(t: SimpleNamespace) -> None:
    c = chord([t.add.s(1, 1)], t.tsum.s())
    c.link(t.echo.s())
    c.link_error(t.echo.s(1))
    assert c.body.options["link"] == [t.echo.s()]
    assert c.body.options["link_error"] == [t.echo.s(1)]
    assert "link_error" not in c.tasks[0].options


def test_a_chord_without_a_body_says_so(t: SimpleNamespace) -> None:
    with pytest.raises(ValueError, match="no body"):
        chord([t.add.s(1, 1)]).freeze()


def test_an_empty_chain_cannot_be_applied(app: Liteq) -> None:
    with pytest.raises(ValueError, match="empty chain"):
        chain(app=app).apply_async()


def test_a_group_refuses_link_options_when_applied(t: SimpleNamespace) -> None:
    with pytest.raises(TypeError, match="use a chord"):
        group(t.add.s(1, 1)).apply_async(link=t.tsum.s())


def test_reprs_read_like_calls(t: SimpleNamespace) -> None:
    assert repr(t.add.s(2, 2)) == "tasks.add(2, 2)"
    assert repr(t.add.si(2, 2)) == "tasks.add(2, 2)!"
    assert repr(t.add.s(1, 1) | t.add.s(2)) == "tasks.add(1, 1) | tasks.add(2)"
    assert repr(group(t.add.s(1, 1))) == "group([tasks.add(1, 1)])"
    assert repr(chord([t.add.s(1, 1)], t.tsum.s())) == (
        "chord(group([tasks.add(1, 1)]), tasks.tsum())"
    )


# -- maps and chunks ---------------------------------------------------------------------------


def test_task_map_starmap_and_chunks_build_one_message_signatures(
    t: SimpleNamespace,
) -> None:
    mapped = t.add.map([(1, 2), (3, 4)])
    starred = t.add.starmap([(1, 2), (3, 4)])
    chunked = t.add.chunks(zip(range(10), range(10), strict=True), 3)
    assert isinstance(mapped, xmap) and mapped.name == "liteq.map"
    assert isinstance(starred, xstarmap) and starred.name == "liteq.starmap"
    assert isinstance(chunked, chunks)
    assert mapped.immutable and starred.immutable
    assert repr(starred) == "[tasks.add(*x) for x in [(1, 2), (3, 4)]]"


def test_chunks_group_splits_the_items_into_starmaps(t: SimpleNamespace) -> None:
    g = t.add.chunks(zip(range(10), range(10), strict=True), 4).group()
    assert isinstance(g, group)
    assert [len(part.kwargs["it"]) for part in g.tasks] == [4, 4, 2]
    assert all(isinstance(part, xstarmap) for part in g.tasks)


def test_chunks_needs_a_positive_size(t: SimpleNamespace) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        t.add.chunks([(1, 2)], 0)


def test_every_app_has_the_builtin_canvas_tasks(app: Liteq) -> None:
    for name in ("map", "starmap", "chunks"):
        assert app.tasks[f"liteq.{name}"] is app.tasks[f"celery.{name}"]
    assert "liteq.errback" in app.tasks
