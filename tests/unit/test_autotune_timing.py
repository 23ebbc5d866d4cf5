"""BACKEND=auto's timing (engine/autotune/timing.py): candidates in turn, round after round, medians, more rounds
while the figures spread, and a busy host noticed from the CPU accounting."""

import os
import subprocess
import sys
import time

import pytest

from engine.autotune.timing import (
    BUSY_SHARE,
    MAX_ROUNDS,
    MIN_ROUNDS,
    SPREAD_LIMIT,
    HostCpu,
    _proc_stat,
    spread,
    time_in_rounds,
)


def recorder(rates, calls, name):
    """A run returning the next of ``rates`` (the last one from then on), noting its name and seconds in ``calls``."""
    queue = list(rates)

    def run(seconds):
        calls.append((name, seconds))
        return queue.pop(0) if len(queue) > 1 else queue[0]
    return run


def test_candidates_run_in_turn_round_after_round_and_each_figure_is_its_median():
    calls = []
    timed = time_in_rounds({"a": recorder([100, 96, 98], calls, "a"), "b": recorder([200, 210, 205], calls, "b")},
                           seconds=1.5)
    # Interleaved, not a's rounds then b's: a drift of the machine's speed weighs on both alike.
    assert calls == [("a", 0.5), ("b", 0.5)] * MIN_ROUNDS
    assert timed.runs == {"a": [100, 96, 98], "b": [200, 210, 205]}
    assert (timed.median("a"), timed.median("b"), timed.rounds) == (98, 205, 3)


def test_a_disturbed_round_brings_more_rounds_until_three_agree():
    calls = []
    # The second round of a ran while something else took the CPU.
    timed = time_in_rounds({"a": recorder([100, 60, 101, 99, 100], calls, "a"), "b": recorder([50], calls, "b")},
                           seconds=0.3)
    assert timed.runs["a"] == [100, 60, 101, 99]  # 3 rounds spread 41 %; a 4th, and the three nearest agree
    assert timed.median("a") == pytest.approx(99.5) and len(timed.runs["b"]) == 4


def test_rounds_spread_exactly_at_the_limit_are_settled():
    timed = time_in_rounds({"a": recorder([100.0, 105.0, 95.0, 100.0], [], "a")}, seconds=0.3)
    assert spread([100.0, 105.0, 95.0]) == SPREAD_LIMIT and timed.rounds == MIN_ROUNDS


def test_figures_that_never_settle_stop_at_the_most_rounds():
    unsettled = iter([100.0 * 2 ** i for i in range(MAX_ROUNDS)])  # the machine keeps speeding up
    timed = time_in_rounds({"a": lambda s: next(unsettled)}, seconds=0.3)
    assert timed.rounds == MAX_ROUNDS


def test_the_spread_is_that_of_the_three_rounds_nearest_the_median():
    assert spread([100.0]) == 0.0
    assert spread([100.0, 150.0]) == pytest.approx(0.4)  # two rounds: their median is 125
    assert spread([0.5, 0.5, 0.5]) == 0.0  # a slow candidate's rates below 1/s are settled all the same
    assert spread([0.0, 0.0, 0.0]) == float("inf")  # nothing ran: never settled
    assert spread([100.0, 150.0, 100.0]) == pytest.approx(0.5)
    assert spread([100.0, 150.0, 98.0, 101.0, 97.0]) == pytest.approx(0.03)  # one outlier is outvoted
    assert spread([60.0, 99.0, 100.0, 101.0]) == pytest.approx(2 / 99.5)
    assert spread([40.0, 104.0, 150.0, 101.0, 97.0, 100.0, 10.0]) == pytest.approx(0.04)


def test_the_proc_stat_reading_counts_steal_as_busy_and_the_cpus(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 10 50 1000 20 5 5 30 0 0\ncpu0 50 5 25 500 10 2 3 15 0 0\n"
                    "cpu1 50 5 25 500 10 3 2 15 0 0\nintr 1 2 3\n")
    busy, cpus = _proc_stat(stat)
    assert busy == pytest.approx((100 + 10 + 50 + 5 + 5 + 30) / os.sysconf("SC_CLK_TCK")) and cpus == 2
    stat.write_text("cpu  100 10 50 1000\ncpu0 100 10 50 1000\n")  # an old kernel: no iowait, irq, softirq, steal
    assert _proc_stat(stat) == (pytest.approx(160 / os.sysconf("SC_CLK_TCK")), 1)
    assert _proc_stat(tmp_path / "absent") == (None, 0)  # not Linux: the host's load is not known


def test_what_other_processes_took_is_the_hosts_busy_time_less_this_processs_own(monkeypatch):
    def share(before, later):
        monkeypatch.setattr(HostCpu, "now", classmethod(lambda cls: later))
        return before.others_share()

    before = HostCpu(busy_s=100.0, cpus=2, own_s=10.0, wall_s=1000.0)
    # 3 s of busy CPU in 2 s on 2 CPUs, 1.8 s of them this process's: others took 1.2 s of the 4 there were.
    assert share(before, HostCpu(103.0, 2, 11.8, 1002.0)) == pytest.approx(0.3)
    assert share(HostCpu(100.0, 1, 10.0, 1000.0), HostCpu(100.4, 1, 10.1, 1000.5)) == pytest.approx(0.6)  # 1 CPU
    assert share(before, HostCpu(120.0, 2, 10.0, 1002.0)) == 1.0  # accounting that overshoots is capped
    assert share(before, HostCpu(99.0, 2, 10.0, 1002.0)) == 0.0
    # Not known: no /proc/stat before or after, no time passed, no CPUs counted.
    assert share(HostCpu(None, 0, 10.0, 1000.0), HostCpu(103.0, 2, 11.0, 1002.0)) is None
    assert share(before, HostCpu(None, 0, 11.0, 1002.0)) is None
    assert share(before, HostCpu(103.0, 2, 11.0, 1000.0)) is None
    assert share(HostCpu(100.0, 0, 10.0, 1000.0), HostCpu(103.0, 0, 11.0, 1002.0)) is None


def _spin(seconds):
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n / seconds


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="the host's CPU accounting is Linux's /proc/stat")
def test_a_host_kept_busy_by_other_processes_is_noticed():
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        time.sleep(0.2)  # the hogs are running
        busy = time_in_rounds({"spin": _spin}, seconds=0.9)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert busy.others_cpu_share is not None and busy.others_cpu_share > BUSY_SHARE and busy.host_busy
