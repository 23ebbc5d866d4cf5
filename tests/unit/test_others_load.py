"""engine.cpu.OthersLoad: the share of the machine's CPUs that other processes used while a block ran (what
BACKEND=auto checks before it trusts its own timings)."""

import os
import subprocess
import sys
import time

import pytest

from engine.cpu import OthersLoad, cpu_seconds_busy

pytestmark = pytest.mark.skipif(cpu_seconds_busy() is None, reason="no /proc/stat here")


def test_a_process_spinning_beside_the_block_is_seen():
    spinner = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 3\nwhile time.time() < end: pass"])
    try:
        time.sleep(0.3)  # it is spinning
        with OthersLoad() as load:
            time.sleep(0.6)
    finally:
        spinner.kill()
        spinner.wait()
    # One spinning process is one CPU of the machine's; this block itself only slept.
    assert load.share is not None and load.share >= 0.8 / (os.cpu_count() or 1)


def test_the_blocks_own_work_is_not_counted_as_others(monkeypatch):
    import engine.cpu as cpu

    machine = iter([(100.0, 400.0), (101.5, 402.0)])  # 1.5 of 2 CPU-seconds busy while the block ran...
    monkeypatch.setattr(cpu, "cpu_seconds_busy", lambda: next(machine))
    own = iter([(10.0, 1.0, 0, 0, 0), (10.8, 1.2, 0, 0, 0)])  # ...1.0 of them this process's (user + system)
    monkeypatch.setattr(cpu.os, "times", lambda: next(own))
    with OthersLoad() as load:
        pass
    assert load.share == pytest.approx(0.25)  # others: 0.5 of 2
