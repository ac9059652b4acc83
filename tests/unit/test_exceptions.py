"""The exception tree: one base, Celery's names as aliases, useful messages."""

from __future__ import annotations

import pickle

import pytest

import liteq
from liteq import exceptions
from liteq.exceptions import (
    ConfigurationError,
    ContentDisallowed,
    DatabaseLocked,
    DecodeError,
    Ignore,
    LiteqError,
    MaxRetriesExceededError,
    NotRegistered,
    Reject,
    ResultTimeout,
    Retry,
    SoftTimeLimitExceeded,
    StorageError,
    TaskPredicate,
    TimeLimitExceeded,
    WorkerLostError,
)


@pytest.mark.parametrize(
    "cls",
    [
        ConfigurationError,
        StorageError,
        DatabaseLocked,
        DecodeError,
        ContentDisallowed,
        NotRegistered,
        MaxRetriesExceededError,
        ResultTimeout,
        WorkerLostError,
        TimeLimitExceeded,
        exceptions.TaskRevokedError,
        exceptions.ChordError,
        exceptions.EncodeError,
        Retry,
        Ignore,
        Reject,
    ],
)
def test_every_liteq_error_derives_from_liteq_error(cls: type[Exception]) -> None:
    assert issubclass(cls, LiteqError)


def test_control_flow_exceptions_share_the_task_predicate_base() -> None:
    for cls in (Retry, Ignore, Reject):
        assert issubclass(cls, TaskPredicate)
    assert not issubclass(StorageError, TaskPredicate)


def test_celery_aliases_point_at_liteq_classes() -> None:
    assert exceptions.TimeoutError is ResultTimeout
    assert exceptions.ImproperlyConfigured is ConfigurationError
    import builtins

    assert exceptions.TimeoutError is not builtins.TimeoutError


def test_soft_time_limit_is_an_ordinary_exception_the_task_can_catch() -> None:
    assert issubclass(SoftTimeLimitExceeded, Exception)
    assert not issubclass(SoftTimeLimitExceeded, LiteqError)


def test_default_message_is_the_docstring() -> None:
    assert str(WorkerLostError()) == (
        "The worker or pool process running the task died before it finished."
    )
    assert str(ConfigurationError("custom")) == "custom"


def test_not_registered_is_a_key_error_with_a_readable_message() -> None:
    error = NotRegistered("tasks.missing")
    assert isinstance(error, KeyError)
    assert str(error) == "tasks.missing"


def test_storage_errors_carry_the_path() -> None:
    error = DatabaseLocked("locked", path="/tmp/x.db")
    assert error.path == "/tmp/x.db"
    assert isinstance(error, StorageError)


def test_decode_error_keeps_the_raw_bytes_and_cause() -> None:
    cause = ValueError("bad")
    error = DecodeError("cannot decode", b"\x00", cause)
    assert (error.data, error.error) == (b"\x00", cause)


def test_retry_describes_when_and_why() -> None:
    assert str(Retry(exc=KeyError("k"), when=5)) == "Retry in 5s: KeyError('k')"
    assert Retry(when=5).humanize() == "in 5s"
    copy = pickle.loads(pickle.dumps(Retry(exc=KeyError("k"), when=5)))
    assert (copy.when, repr(copy.exc)) == (5, "KeyError('k')")


def test_reject_keeps_reason_and_requeue_across_pickling() -> None:
    copy = pickle.loads(pickle.dumps(Reject("bad", requeue=True)))
    assert (copy.reason, copy.requeue) == ("bad", True)


def test_max_retries_exceeded_keeps_the_task_arguments() -> None:
    error = MaxRetriesExceededError("no more", task_args=(1,), task_kwargs={"a": 2})
    assert (error.task_args, error.task_kwargs) == ((1,), {"a": 2})


def test_package_exports_the_main_errors() -> None:
    for name in ("LiteqError", "ConfigurationError", "StorageError", "Retry", "Reject"):
        assert getattr(liteq, name) is getattr(exceptions, name)
    assert set(exceptions.__all__) >= {"TimeoutError", "DecodeError", "DatabaseLocked"}
