"""Logging set-up shared by the entry points: one handler on the root logger, in text or JSON (LOG_FORMAT), with
repeated warnings rate-limited (common/log_repeats.py) and URL passwords masked in every line it writes.

Every process's output is one record per line: ``text`` for people (``<time> <LEVEL> <process> <logger>:
<message>``), ``json`` for log pipelines (one object per line: time, level, process, logger, message, and the
record's structured fields, e.g. the access log's or a pass's request ids, as keys). uvicorn's loggers go through the
same handler (the servers are started with ``log_config=None``), so a JSON process writes nothing but JSON.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import IO, Any

from common.log_repeats import REPEAT_INTERVAL_S, RepeatLimiter

LOG_FORMATS = ("text", "json")

# A URL's password: scheme://user:password@ (the user may be empty, as in redis://:secret@host), the password up to
# the last @ of the address part as urllib reads it (so a raw @ in it is masked too); or a ?password= parameter.
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s\"']*):[^/?#\s\"']*@|([?&]password=)[^&#\s\"']*")

# What every LogRecord has; anything else on a record came as ``extra=`` and is a structured field of the line.
# uvicorn adds ``color_message`` (its message with terminal colours): not a field.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "color_message", "taskName"}


def redact_url(url: str) -> str:
    """``url`` fit to print: its password replaced, in the user part or as a query parameter
    (redis://:secret@host -> redis://:***@host; unix:///redis.sock?password=secret -> ...?password=***). The rest is
    left as written (an IPv6 host keeps its brackets)."""
    return _URL_PASSWORD.sub(_masked, url)


def redact(text: str) -> str:
    """``text`` with the password of every URL in it masked: the last line of defence, for a URL inside an
    exception's message or a traceback, which no call site chose to print."""
    # The check keeps access lines (no URL, no query string) cheap.
    return _URL_PASSWORD.sub(_masked, text) if "://" in text or "password=" in text else text


def _masked(match: re.Match[str]) -> str:
    return f"{match[1]}:***@" if match[1] is not None else f"{match[2]}***"


class _SecondCache:
    """A second's formatted time, kept: the access log formats one per request, ~100 to ~1,000 a second."""

    def __init__(self, render: Callable[[float], str]) -> None:
        self._render = render
        self._second = -1
        self._text = ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second, self._text = second, self._render(second)
        return self._text


# One encoder for every line (json.dumps with options builds one per call). Values JSON has no type for: as str().
_JSON = json.JSONEncoder(ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``<time> <LEVEL> <process> <logger>: <message>``, passwords masked."""

    def __init__(self, process: str) -> None:
        super().__init__(f"%(asctime)s %(levelname)s {process.replace('%', '%%')} %(name)s: %(message)s")
        self._second = _SecondCache(lambda second: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second)))

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return f"{self._second(record.created)},{int(record.msecs):03d}"  # as logging's default, once a second

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in messages and tracebacks are escaped), passwords
    masked."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process
        self._second = _SecondCache(lambda second: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": f"{self._second(record.created)}.{int(record.msecs):03d}Z",  # UTC, ISO 8601
            "level": record.levelname,
            "process": self.process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES:
                entry.setdefault(key, value)  # a field never hides one of the line's own
        if record.exc_info:
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return redact(_JSON.encode(entry))


def formatter(fmt: str, process: str) -> logging.Formatter:
    if fmt not in LOG_FORMATS:
        raise ValueError(f"unknown log format {fmt!r} (one of {', '.join(LOG_FORMATS)})")
    return JsonFormatter(process) if fmt == "json" else TextFormatter(process)


# What this process's logging was set up with: a process it spawns (they start with none) sets up the same.
_current = ("WARNING", "python", "text")


def current_setup() -> tuple[str, str, str]:
    """``setup_logging``'s arguments in this process, for a spawned child's, e.g. ``ProcessPoolExecutor(...,
    initializer=setup_logging, initargs=current_setup())``: its lines then look like its parent's."""
    return _current


def setup_logging(level: str, name: str, fmt: str = "text", *, stream: IO[str] | None = None,
                  repeat_interval_s: float = REPEAT_INTERVAL_S) -> None:
    """Log records of ``level`` and above to ``stream`` (stderr), each line naming the process ``name``, in ``fmt``
    (``text`` or ``json``). A warning repeated within ``repeat_interval_s`` is held back and counted (0: none is).
    Replaces whatever handlers the root logger had, so it may be called again (the API's server processes do)."""
    global _current
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(fmt, name))
    if repeat_interval_s > 0:
        handler.addFilter(RepeatLimiter(repeat_interval_s))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    _current = (level, name, fmt)
    # uvicorn configures its loggers with handlers of their own unless started with log_config=None (as ours
    # are); run otherwise (`uvicorn --factory api.app:create_app_from_env`), its lines come here from now on too.
    # Its access logger is left as uvicorn set it: off (access_log=False) unless a user asked for it.
    for logger in (logging.getLogger("uvicorn"), logging.getLogger("uvicorn.access")):
        if logger.handlers:
            logger.handlers.clear()
            logger.propagate = True
    logging.captureWarnings(True)  # warnings.warn() in a library: a record too, not a bare line on stderr
    for library in OWN_HANDLER_LIBRARIES:
        _through_root(library)
    if fmt == "json":  # progress bars (transformers' "Loading weights") are not records; in children too (inherited)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # A crash's traceback too: one record (a JSON line, passwords masked), not Python's bare print to stderr.
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


# Libraries that give their loggers a stderr handler of their own and stop propagation when they are imported
# (transformers, imported lazily with the model): their lines would bypass the format.
OWN_HANDLER_LIBRARIES = ("transformers",)


class _ThroughRoot(logging.Logger):
    """A library's top logger that keeps no handler and always propagates: its records (and its modules') reach the
    root's handler like any other, whatever the library does to it on import."""

    def addHandler(self, handler: logging.Handler) -> None:
        pass

    @property  # type: ignore[override]
    def propagate(self) -> bool:
        return True

    @propagate.setter
    def propagate(self, value: bool) -> None:
        pass


def _through_root(name: str) -> None:
    existing = logging.Logger.manager.loggerDict.get(name)
    if isinstance(existing, logging.Logger):  # imported already: undo what it did
        existing.handlers.clear()
        existing.propagate = True
        return
    previous = logging.getLoggerClass()
    logging.setLoggerClass(_ThroughRoot)  # for this one logger, made now, before the library asks for it
    try:
        logging.getLogger(name)
    finally:
        logging.setLoggerClass(previous)


def _log_uncaught(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)
        return
    logging.getLogger().critical("uncaught %s: the process ends", kind.__name__, exc_info=(kind, value, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return  # as threading's own hook: a thread's SystemExit is silent
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger().error("uncaught %s in thread %s", args.exc_type.__name__, name,
                              exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback))
