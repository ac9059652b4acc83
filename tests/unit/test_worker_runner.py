"""The prefork child's report: what it carries back to the parent, pickled."""

from __future__ import annotations

import pickle

from liteq import Liteq, states
from liteq.storage import Completion, NewTask
from liteq.worker.runner import Report


def _report(completion: Completion) -> Report:
    return Report(
        "tid", "tests.job", states.FAILURE, completion, "line", "tb", True, 0.25
    )


def test_report_unpickles_with_every_attribute(app: Liteq) -> None:
    row = app.make_result_row("tid", states.FAILURE, ValueError("x"), traceback="tb")
    completion = Completion(
        task_id="tid",
        result=row,
        event=True,
        retry_eta=5.0,
        retry_message=b"m",
        followups=[NewTask(task_id="n", name="tests.next", message=b"{}")],
        chord_group="g",
        chord_failed=True,
    )
    report = _report(completion)
    back = pickle.loads(pickle.dumps(report, pickle.HIGHEST_PROTOCOL))
    assert back == report
    assert back.completion == completion and back.completion.result == row
    back.completion.claimed = None  # the parent sets it: an ordinary attribute
    assert back.describe() == "line"


def test_report_without_a_result_unpickles_without_one() -> None:
    report = _report(Completion(task_id="tid", requeue=True))
    back = pickle.loads(pickle.dumps(report, pickle.HIGHEST_PROTOCOL))
    assert back == report and back.completion.result is None
    assert back.completion.followups == [] and back.exc is None
