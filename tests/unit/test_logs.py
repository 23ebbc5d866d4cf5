import io
import json
import logging
import os
import sys
import threading
from datetime import datetime, timezone

import pytest

import common.logs
from common.logs import JsonFormatter, TextFormatter, current_setup, redact, redact_url, setup_logging


@pytest.fixture
def restore_logging():
    """setup_logging changes process-wide state: put it back for the tests that follow."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    uvicorn = [(lg, lg.handlers[:], lg.propagate) for lg in map(logging.getLogger, ("uvicorn", "uvicorn.access"))]
    hooks = sys.excepthook, threading.excepthook
    setup = current_setup()
    yield
    common.logs._current = setup
    sys.excepthook, threading.excepthook = hooks
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    root.handlers[:], root.level = handlers, level
    for logger, its_handlers, propagate in uvicorn:
        logger.handlers[:], logger.propagate = its_handlers, propagate
    logging.captureWarnings(False)


def lines_of(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_log_lines_name_the_process_and_the_level_is_set(capsys, restore_logging):
    root = logging.getLogger()
    root.setLevel(logging.ERROR)
    setup_logging("info", "worker")
    assert root.level == logging.INFO
    logging.getLogger("worker.loop").info("window run")
    logging.getLogger("worker.loop").debug("not shown")
    line, = capsys.readouterr().err.splitlines()
    assert line.endswith(" INFO worker worker.loop: window run")


def test_json_lines_carry_time_level_process_logger_message_and_the_records_fields(restore_logging):
    out = io.StringIO()
    setup_logging("DEBUG", "api", "json", stream=out)
    log = logging.getLogger("api.access")
    log.info("POST %s %d", "/predict", 200, extra={"status": 200, "request_id": "abc-1", "texts": 3})
    log.debug("multi\nline \"quoted\" é")
    first, second = (json.loads(line) for line in lines_of(out))  # one object per line, newlines escaped
    assert first["time"].endswith("Z") and first["time"][10] == "T" and len(first["time"]) == 24
    assert {k: first[k] for k in ("level", "process", "logger", "message", "status", "request_id", "texts")} == {
        "level": "INFO", "process": "api", "logger": "api.access", "message": "POST /predict 200", "status": 200,
        "request_id": "abc-1", "texts": 3}
    assert set(first) == {"time", "level", "process", "logger", "message", "status", "request_id", "texts"}
    assert second["message"] == "multi\nline \"quoted\" é" and second["level"] == "DEBUG"


def test_a_json_line_holds_its_exception_and_never_lets_a_field_hide_its_own_keys():
    try:
        raise ValueError("bad thing")
    except ValueError:
        record = logging.getLogger("worker.loop").makeRecord("worker.loop", logging.ERROR, "f", 1, "failed", (),
                                                             sys.exc_info(), extra={"level": "x", "texts": 2})
    entry = json.loads(JsonFormatter("worker").format(record))
    assert (entry["level"], entry["process"], entry["message"], entry["texts"]) == ("ERROR", "worker", "failed", 2)
    assert entry["exception"].startswith("Traceback") and entry["exception"].endswith("ValueError: bad thing")


def test_uvicorns_loggers_write_through_the_same_handler(restore_logging):
    theirs = io.StringIO()
    for name in ("uvicorn", "uvicorn.access"):  # as uvicorn's own logging config leaves them
        logging.getLogger(name).addHandler(logging.StreamHandler(theirs))
        logging.getLogger(name).propagate = False
    out = io.StringIO()
    setup_logging("INFO", "api", "json", stream=out)
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42, extra={"color_message": "\x1b[1m"})
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "10.0.0.7:5123", "GET", "/healthz", "1.1", 200)
    started, access = map(json.loads, lines_of(out))
    assert (started["logger"], started["message"]) == ("uvicorn.error", "Started server process [42]")
    assert "color_message" not in started  # uvicorn's coloured copy of the message is not a field
    # uvicorn's access lines, when a user turns them on, are JSON lines like the rest, not uvicorn's plain text
    assert (access["logger"], access["message"]) == ("uvicorn.access", '10.0.0.7:5123 - "GET /healthz HTTP/1.1" 200')
    assert theirs.getvalue() == ""


def test_warnings_from_libraries_are_records_too(restore_logging):
    import warnings

    out = io.StringIO()
    setup_logging("INFO", "worker", "json", stream=out)
    warnings.warn("a deprecated call", DeprecationWarning, stacklevel=1)
    entry, = map(json.loads, lines_of(out))
    assert entry["logger"] == "py.warnings" and "a deprecated call" in entry["message"]


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="one of text, json"):
        setup_logging("INFO", "api", "yaml")


def test_url_passwords_are_masked_in_every_line_text_or_json(restore_logging):
    assert redact_url("redis://:s3cret@redis:6379/0") == "redis://:***@redis:6379/0"
    assert redact_url("redis://:s3cret@redis/0") == "redis://:***@redis/0"  # no port: none is made up
    assert redact_url("unix://:s3cret@/run/redis.sock?db=0") == "unix://:***@/run/redis.sock?db=0"  # no host either
    assert redact_url("redis://redis:6379/0") == "redis://redis:6379/0"
    assert redact_url("unix:///run/redis.sock?db=0&password=pw") == "unix:///run/redis.sock?db=0&password=***"
    assert redact_url("redis://:pw@[::1]:6379/0") == "redis://:***@[::1]:6379/0"  # an IPv6 host keeps its brackets
    assert redact("GET /admin?user=a&password=pw 200") == "GET /admin?user=a&password=*** 200"  # no scheme in it
    assert redact("to rediss://user:p@ss:w0rd@h:6380/1 failed") == "to rediss://user:***@h:6380/1 failed"
    assert redact("no url here") == "no url here" and redact("http://host/path") == "http://host/path"
    assert redact('{"a":"redis://:pw@h","b":"x@y"}') == '{"a":"redis://:***@h","b":"x@y"}'
    assert redact("unix:///run/redis.sock?db=0&password=pw") == "unix:///run/redis.sock?db=0&password=***"
    for fmt in ("text", "json"):
        out = io.StringIO()
        setup_logging("INFO", "worker", fmt, stream=out)
        try:
            raise ConnectionError("cannot reach redis://:s3cret@10.0.0.5:6379/0")
        except ConnectionError:
            logging.getLogger("worker").exception("Redis at %s failed", "redis://:s3cret@10.0.0.5:6379/0")
        assert "s3cret" not in out.getvalue() and out.getvalue().count("redis://:***@10.0.0.5:6379/0") >= 2


def made_at(created, msecs):
    """A record made at ``created`` (epoch seconds), ``msecs`` its milliseconds, as logging would have made it."""
    return logging.makeLogRecord({"name": "worker.loop", "msg": "window run", "levelname": "INFO",
                                  "levelno": logging.INFO, "created": created, "msecs": msecs})


def test_a_lines_time_is_when_its_record_was_made_local_in_text_lines_utc_in_json():
    """The time on a line is its record's, to the millisecond (not when it was formatted), and moves on with the
    records: one second's text is reused for that second's lines only."""
    utc = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc).timestamp()
    as_json = JsonFormatter("worker")
    assert [json.loads(as_json.format(made_at(utc + dt, ms)))["time"] for dt, ms in ((0.678, 678), (0.9, 900),
                                                                                      (61.001, 1))] == [
        "2024-01-02T03:04:05.678Z", "2024-01-02T03:04:05.900Z", "2024-01-02T03:05:06.001Z"]
    local = datetime(2024, 1, 2, 3, 4, 5).timestamp()  # naive: this machine's time zone, as text lines are
    as_text = TextFormatter("worker")
    assert [as_text.format(made_at(local + dt, ms)) for dt, ms in ((0.678, 678), (0.9, 900), (61.001, 1))] == [
        "2024-01-02 03:04:05,678 INFO worker worker.loop: window run",
        "2024-01-02 03:04:05,900 INFO worker worker.loop: window run",
        "2024-01-02 03:05:06,001 INFO worker worker.loop: window run"]


def test_a_json_line_holds_the_stack_when_one_was_asked_for(restore_logging):
    out = io.StringIO()
    setup_logging("INFO", "worker", "json", stream=out)
    logging.getLogger("worker.loop").info("slow pass", stack_info=True)
    entry, = map(json.loads, lines_of(out))
    assert entry["message"] == "slow pass" and entry["stack"].startswith("Stack (most recent call last):")
    assert "test_a_json_line_holds_the_stack_when_one_was_asked_for" in entry["stack"]  # where it was logged from


def test_setting_up_again_replaces_the_handler_and_is_what_a_spawned_child_sets_up(restore_logging):
    before, after = io.StringIO(), io.StringIO()
    setup_logging("INFO", "api", "text", stream=before)
    setup_logging("DEBUG", "api", "json", stream=after)  # as the API's server processes do
    logging.getLogger("api").debug("once")
    assert before.getvalue() == ""  # each line once, in the latest format: no line from the first handler
    assert [json.loads(line)["message"] for line in lines_of(after)] == ["once"]
    assert current_setup() == ("DEBUG", "api", "json")  # a child's lines then look like its parent's


def test_the_processes_handler_holds_back_repeated_warnings_unless_told_not_to(restore_logging):
    for interval_s, expected in ((10.0, ["Redis unavailable: refused"]), (0, ["Redis unavailable: refused"] * 3)):
        out = io.StringIO()
        setup_logging("INFO", "worker", "json", stream=out, repeat_interval_s=interval_s)
        for _ in range(3):  # within a few ms: well within 10 s
            logging.getLogger("worker.loop").warning("Redis unavailable: %s", "refused")
        assert [json.loads(line)["message"] for line in lines_of(out)] == expected


def test_a_library_imported_before_logging_is_set_up_writes_through_ours_too(restore_logging, monkeypatch):
    monkeypatch.setattr(common.logs, "OWN_HANDLER_LIBRARIES", ("tests_lib_imported_first",))
    theirs = io.StringIO()
    library = logging.getLogger("tests_lib_imported_first")  # what the library did when it was imported, earlier
    library.addHandler(logging.StreamHandler(theirs))
    library.propagate = False
    out = io.StringIO()
    setup_logging("INFO", "worker", "json", stream=out)
    logging.getLogger("tests_lib_imported_first.modeling").warning("Some weights were not used")
    entry, = map(json.loads, lines_of(out))
    assert (entry["logger"], entry["message"]) == ("tests_lib_imported_first.modeling", "Some weights were not used")
    assert theirs.getvalue() == ""


def test_a_crash_is_a_record_too(restore_logging):
    out = io.StringIO()
    setup_logging("INFO", "worker", "json", stream=out)
    try:
        raise AttributeError("'ModelSource' object has no attribute 'fingerprint'")
    except AttributeError:
        sys.excepthook(*sys.exc_info())
    thread = threading.Thread(target=lambda: 1 / 0, name="heartbeat")
    thread.start()
    thread.join()
    crash, in_thread = map(json.loads, lines_of(out))
    assert (crash["level"], crash["message"]) == ("CRITICAL", "uncaught AttributeError: the process ends")
    assert crash["exception"].endswith("AttributeError: 'ModelSource' object has no attribute 'fingerprint'")
    assert (in_thread["level"], in_thread["message"]) == ("ERROR", "uncaught ZeroDivisionError in thread heartbeat")
    assert in_thread["exception"].startswith("Traceback") and in_thread["exception"].endswith(
        "ZeroDivisionError: division by zero")  # what the thread raised, with its message


def test_a_thread_crash_reported_without_its_thread_is_a_record_too(restore_logging):
    """threading.excepthook's thread may be None (the thread object already gone): the record still comes."""
    out = io.StringIO()
    setup_logging("INFO", "worker", "json", stream=out)
    threading.excepthook(threading.ExceptHookArgs([RuntimeError, RuntimeError("lost"), None, None]))
    entry, = map(json.loads, lines_of(out))
    assert (entry["level"], entry["message"]) == ("ERROR", "uncaught RuntimeError in thread ?")
    assert entry["exception"].endswith("RuntimeError: lost")


def test_ctrl_c_is_not_a_crash_record_but_pythons_own_message(restore_logging, capsys):
    out = io.StringIO()
    setup_logging("INFO", "worker", "json", stream=out)
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt:
        sys.excepthook(*sys.exc_info())
    assert out.getvalue() == ""
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and err.endswith("\nKeyboardInterrupt\n")
    assert "test_ctrl_c_is_not_a_crash_record_but_pythons_own_message" in err


def test_a_library_that_brings_its_own_handler_writes_through_ours_anyway(restore_logging, monkeypatch):
    import common.logs

    monkeypatch.setattr(common.logs, "OWN_HANDLER_LIBRARIES", ("tests_lib_with_handler",))
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)  # and put back as it was, after
    out, theirs = io.StringIO(), io.StringIO()
    setup_logging("INFO", "worker", "json", stream=out)
    library = logging.getLogger("tests_lib_with_handler")  # what transformers does when it is imported, later
    library.addHandler(logging.StreamHandler(theirs))
    library.propagate = False
    library.setLevel(logging.WARNING)
    logging.getLogger("tests_lib_with_handler.modeling").warning("Some weights were not used")
    logging.getLogger("tests_lib_with_handler.modeling").info("below the library's level")
    entry, = map(json.loads, lines_of(out))
    assert (entry["logger"], entry["message"]) == ("tests_lib_with_handler.modeling", "Some weights were not used")
    assert theirs.getvalue() == ""
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"  # no progress bars among JSON lines
