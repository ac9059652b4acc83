"""Redirecting stdout/stderr to a logger, and per-process log file names."""

from __future__ import annotations

import io
import logging
import multiprocessing
import sys
import threading
from collections.abc import Iterator

import pytest

from liteq.log import (
    REDIRECT_LOGGER,
    LoggingProxy,
    WorkerLogging,
    current_process_index,
    expand_placeholders,
    logfile_for_process,
    parse_level,
    real_stream,
    redirect_stdouts,
    worker_logging,
    worker_logging_installed,
)


class Records(logging.Handler):
    """Keeps what reaches it, as (level name, message)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((record.levelname, record.getMessage()))


@pytest.fixture
def records() -> Iterator[Records]:
    logger = logging.getLogger("test.redirected")
    handler = Records()
    logger.addHandler(handler)
    saved = logger.level, logger.propagate
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def proxy(
    level: int | str = "WARNING", stream: io.StringIO | None = None
) -> LoggingProxy:
    return LoggingProxy(logging.getLogger("test.redirected"), level, stream)


def test_proxy_logs_each_printed_line_at_its_level(records: Records) -> None:
    out = proxy()
    print("hello", file=out)
    print("two", "words", file=out)
    assert records.seen == [("WARNING", "hello"), ("WARNING", "two words")]


def test_proxy_joins_partial_writes_until_the_newline(records: Records) -> None:
    out = proxy("INFO")
    out.write("par")
    out.write("tial")
    assert records.seen == []
    out.write(" line\nsecond\nthi")
    assert records.seen == [("INFO", "partial line"), ("INFO", "second")]
    out.flush()
    assert records.seen[-1] == ("INFO", "thi")


def test_proxy_skips_blank_lines_and_strips_carriage_returns(records: Records) -> None:
    out = proxy()
    out.writelines(["\n", "   \n", "dos line\r\n", "x\n"])
    assert records.seen == [("WARNING", "dos line"), ("WARNING", "x")]


def test_proxy_write_returns_the_length_and_refuses_bytes(records: Records) -> None:
    out = proxy()
    assert out.write("abc\n") == 4
    with pytest.raises(TypeError, match="str"):
        out.write(b"abc\n")  # type: ignore[arg-type]


def test_proxy_keeps_percent_signs_literal(records: Records) -> None:
    out = proxy()
    print("100% of %s", file=out)
    assert records.seen == [("WARNING", "100% of %s")]


def test_proxy_looks_like_a_text_stream() -> None:
    real = io.StringIO()
    out = proxy(stream=real)
    assert out.isatty() is False
    assert out.writable() and not out.readable() and not out.seekable()
    assert out.encoding == "utf-8"
    assert out.mode == "w" and out.line_buffering is True
    assert out.closed is False
    with pytest.raises(io.UnsupportedOperation):
        out.fileno()  # a StringIO has no descriptor either
    out.reconfigure(encoding="latin-1")
    assert out.encoding == "latin-1"


def test_proxy_fileno_is_the_replaced_stream_descriptor() -> None:
    out = LoggingProxy(logging.getLogger("test.redirected"), "WARNING", sys.__stderr__)
    assert sys.__stderr__ is not None
    assert out.fileno() == sys.__stderr__.fileno()


def test_proxy_close_flushes_and_then_refuses_writes(records: Records) -> None:
    out = proxy()
    out.write("pending")
    out.close()
    assert records.seen == [("WARNING", "pending")]
    assert out.closed
    with pytest.raises(ValueError, match="closed"):
        out.write("more\n")


def test_proxy_sends_a_handler_writing_back_to_it_to_the_real_stream() -> None:
    real = io.StringIO()
    logger = logging.getLogger("test.redirected.loop")
    logger.propagate = False
    out = LoggingProxy(logger, "WARNING", real)
    # A handler writing to the redirected stream itself, as
    # ``logging.StreamHandler()`` made after the redirect does.
    looping = logging.StreamHandler(out)  # type: ignore[arg-type]
    looping.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
    logger.addHandler(looping)
    try:
        print("hello", file=out)
    finally:
        logger.removeHandler(looping)
    assert real.getvalue() == "[WARNING] hello\n"


def test_proxy_keeps_each_threads_partial_line_apart(records: Records) -> None:
    out = proxy()
    out.write("main ")

    def other() -> None:
        out.write("other ")
        out.write("thread\n")

    thread = threading.Thread(target=other)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    out.write("thread\n")
    assert records.seen == [("WARNING", "other thread"), ("WARNING", "main thread")]


def test_parse_level_takes_names_in_any_case_and_numbers() -> None:
    assert parse_level("warning") == logging.WARNING
    assert parse_level("WARN") == logging.WARNING
    assert parse_level("Error") == logging.ERROR
    assert parse_level(15) == 15
    assert parse_level("15") == 15
    with pytest.raises(ValueError, match="LOUD"):
        parse_level("LOUD")


def test_redirect_stdouts_replaces_both_streams_and_restores_them() -> None:
    saved = sys.stdout, sys.stderr
    root = logging.getLogger()
    handler = Records()
    root.addHandler(handler)
    try:
        redirect = redirect_stdouts("ERROR")
        try:
            assert isinstance(sys.stdout, LoggingProxy)
            assert isinstance(sys.stderr, LoggingProxy)
            assert real_stream(sys.stdout) is saved[0]
            assert real_stream(sys.stderr) is saved[1]
            print("to stdout")
            print("to stderr", file=sys.stderr)
        finally:
            redirect.restore()
    finally:
        root.removeHandler(handler)
    assert (sys.stdout, sys.stderr) == saved
    assert ("ERROR", "to stdout") in handler.seen
    assert ("ERROR", "to stderr") in handler.seen
    assert logging.getLogger(REDIRECT_LOGGER).name == "liteq.redirected"


def test_redirect_stdouts_twice_wraps_the_real_stream_once() -> None:
    saved = sys.stdout, sys.stderr
    first = redirect_stdouts("WARNING")
    try:
        second = redirect_stdouts("WARNING")
        try:
            assert real_stream(sys.stdout) is saved[0]
        finally:
            second.restore()
        assert isinstance(sys.stdout, LoggingProxy)
    finally:
        first.restore()
    assert (sys.stdout, sys.stderr) == saved


def test_worker_logging_is_installed_only_inside_the_block() -> None:
    saved = sys.stdout, sys.stderr
    assert worker_logging() is None
    settings = WorkerLogging(redirect_level=logging.WARNING, logfile="w%I.log")
    with worker_logging_installed(settings):
        assert worker_logging() is settings
        assert isinstance(sys.stdout, LoggingProxy)
    assert worker_logging() is None
    assert (sys.stdout, sys.stderr) == saved


def test_worker_logging_without_redirect_leaves_the_streams_alone() -> None:
    saved = sys.stdout, sys.stderr
    with worker_logging_installed(WorkerLogging(redirect_level=None)):
        assert (sys.stdout, sys.stderr) == saved


@pytest.mark.parametrize(
    ("template", "index", "expected"),
    [
        ("w1-%i.log", 0, "w1-0.log"),
        ("w1-%i.log", 2, "w1-2.log"),
        ("w1%I.log", 0, "w1.log"),
        ("w1%I.log", 3, "w1-3.log"),
        ("100%%-%i.log", 1, "100%-1.log"),
        ("%x-%i.log", 1, "%x-1.log"),
    ],
)
def test_logfile_for_process_expands_the_process_index(
    template: str, index: int, expected: str
) -> None:
    assert logfile_for_process(template, index) == expected


def test_expand_placeholders_leaves_unknown_and_trailing_percent() -> None:
    assert expand_placeholders("a%b%c%", {"b": "B"}) == "aB%c%"


def test_current_process_index_is_0_in_the_main_process() -> None:
    assert current_process_index() == 0


@pytest.mark.parametrize(
    ("name", "index"), [("PoolWorker-3", 3), ("PoolWorker-12", 12), ("Other-2", 0)]
)
def test_current_process_index_reads_the_pool_process_name(
    name: str, index: int
) -> None:
    process = multiprocessing.current_process()
    saved = process.name
    process.name = name
    try:
        assert current_process_index() == index
    finally:
        process.name = saved
