import logging

from common.logs import setup_logging


def test_log_lines_name_the_process_and_the_level_is_set(capsys):
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        root.setLevel(logging.ERROR)
        setup_logging("info", "worker")
        assert root.level == logging.INFO
        logging.getLogger("worker.loop").info("window run")
        logging.getLogger("worker.loop").debug("not shown")
        line, = capsys.readouterr().err.splitlines()
        assert line.endswith(" INFO worker worker.loop: window run")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
