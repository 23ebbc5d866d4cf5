"""Repeated warnings held back (common/log_repeats.py): once per interval, then a count of what was held back."""

import io
import logging

from common.log_repeats import RepeatLimiter
from tests.unit.test_logs import lines_of


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def limited(clock: FakeClock, interval_s: float = 10.0) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RepeatLimiter(interval_s, clock=clock))
    return own_logger("tests.repeats", handler), out


def own_logger(name: str, handler: logging.Handler) -> logging.Logger:
    """A logger of the test's own, writing to ``handler`` only (not to the process's handlers)."""
    log = logging.getLogger(name)
    log.handlers[:], log.propagate = [handler], False
    log.setLevel(logging.DEBUG)
    return log


def test_a_repeated_warning_passes_once_per_interval_and_the_next_says_how_many_were_held_back():
    clock = FakeClock()
    log, out = limited(clock)
    for i in range(38):  # 38 in 3.7 s: the first passes, 37 are held back
        log.warning("dropped %d text(s) of requests %s", 1, f"r{i}")
        clock.now += 0.1
    clock.now = 110.0  # 10 s after the first
    log.warning("dropped %d text(s) of requests %s", 2, "r-last")
    log.warning("dropped %d text(s) of requests %s", 3, "held back again")
    assert lines_of(out) == ["dropped 1 text(s) of requests r0",
                             "dropped 2 text(s) of requests r-last (and 37 more like it in 10 s)"]


def test_the_count_is_a_field_of_its_own_and_only_when_something_was_held_back():
    clock = FakeClock()
    log, _ = limited(clock)
    records: list[logging.LogRecord] = []
    log.handlers[0].emit = records.append  # type: ignore[method-assign]
    log.warning("Redis unavailable: %s", "refused")
    clock.now += 30
    log.warning("Redis unavailable: %s", "refused")  # none held back in between: no count
    log.warning("Redis unavailable: %s", "refused")
    clock.now += 10
    log.warning("Redis unavailable: %s", "refused")
    assert [getattr(r, "repeats_suppressed", None) for r in records] == [None, None, 1]
    assert records[-1].getMessage() == "Redis unavailable: refused (and 1 more like it in 10 s)"


def test_distinct_warnings_other_loggers_and_other_levels_are_never_held_back():
    clock = FakeClock()
    log, out = limited(clock)
    other = own_logger("tests.repeats.other", log.handlers[0])
    log.warning("one thing")
    log.warning("another thing")
    other.warning("one thing")  # same template, another logger
    for _ in range(3):
        log.error("inference failed for requests %s", "a")  # errors each name what failed: all written
        log.info("pass of %d texts", 4)
    assert lines_of(out) == ["one thing", "another thing", "one thing"] + [
        "inference failed for requests a", "pass of 4 texts"] * 3


def test_the_limiter_forgets_old_warnings_so_its_memory_stays_bounded(monkeypatch):
    import common.log_repeats as repeats

    monkeypatch.setattr(repeats, "MAX_REMEMBERED", 5)
    clock = FakeClock()
    limiter = RepeatLimiter(10.0, clock=clock)
    for i in range(20):
        assert limiter.filter(logging.makeLogRecord({"name": "x", "msg": f"distinct {i}", "levelno": 30}))
        clock.now += 3
    assert len(limiter._seen) <= 5


def test_making_room_forgets_only_warnings_whose_interval_has_passed(monkeypatch):
    """A warning still within its interval stays held back when the limiter makes room for new ones."""
    import common.log_repeats as repeats

    monkeypatch.setattr(repeats, "MAX_REMEMBERED", 2)
    clock = FakeClock()
    log, out = limited(clock)
    log.warning("Redis unavailable")  # at 100
    clock.now = 105.0
    log.warning("expired texts dropped")
    clock.now = 110.0
    log.warning("slow pass")  # three remembered: the first, 10 s old, is forgotten to make room
    clock.now = 111.0
    log.warning("expired texts dropped")  # 6 s after the last that passed: held back
    clock.now = 115.0
    log.warning("expired texts dropped")
    assert lines_of(out) == ["Redis unavailable", "expired texts dropped", "slow pass",
                             "expired texts dropped (and 1 more like it in 10 s)"]


def test_warnings_logged_as_objects_are_told_apart_by_their_text():
    """``log.warning(exc)``: a new exception each time, the same text: the same warning; another text: another."""
    clock = FakeClock()
    log, out = limited(clock)
    for _ in range(3):
        log.warning(ConnectionError("Redis at redis:6379 refused the connection"))
    log.warning(ConnectionError("Redis at redis:6379 timed out"))
    clock.now += 10
    log.warning(ConnectionError("Redis at redis:6379 refused the connection"))
    assert lines_of(out) == ["Redis at redis:6379 refused the connection", "Redis at redis:6379 timed out",
                             "Redis at redis:6379 refused the connection (and 2 more like it in 10 s)"]
