"""What a worker counts and times (common/counters.py): a fresh worker has counted and timed nothing, its totals add
up pass by pass, counter by counter, and a measured block's time goes to its own phase."""

import time

import pytest

from common.counters import (
    COUNTER_HELP,
    COUNTERS,
    LEAF_PHASES,
    PHASE_HELP,
    PHASES,
    TOP_PHASES,
    PhaseTimes,
    WorkerCounts,
)


def test_a_fresh_worker_has_counted_and_timed_nothing():
    counts, times = WorkerCounts(), PhaseTimes()
    assert counts.nonzero() == {} and [getattr(counts, name) for name in COUNTERS] == [0] * len(COUNTERS)
    assert [getattr(times, name) for name in PHASES] == [0.0] * len(PHASES)


def test_totals_add_every_counter_and_report_only_the_nonzero_ones():
    totals = WorkerCounts(batches=2, texts=10)
    totals.add(WorkerCounts(batches=1, texts=3, expired=2))
    totals.add(WorkerCounts())
    assert totals.nonzero() == {"batches": 3, "texts": 13, "expired": 2}

    each = WorkerCounts(**{name: i + 1 for i, name in enumerate(COUNTERS)})  # every counter a different count
    totals = WorkerCounts()
    totals.add(each)
    totals.add(each)
    assert totals.nonzero() == {name: 2 * (i + 1) for i, name in enumerate(COUNTERS)}
    assert each.nonzero() == {name: i + 1 for i, name in enumerate(COUNTERS)}  # what was added is left as it was


def test_a_measured_block_adds_its_time_to_its_own_phase_also_when_it_raises():
    times = PhaseTimes()
    with times.measure("infer_s"):
        time.sleep(0.02)
    with pytest.raises(RuntimeError), times.measure("infer_s"):
        time.sleep(0.01)
        raise RuntimeError("inference failed")
    assert 0.03 <= times.infer_s < 1
    assert {name: getattr(times, name) for name in PHASES if name != "infer_s"} == dict.fromkeys(
        set(PHASES) - {"infer_s"}, 0.0)


def test_every_counter_and_phase_is_explained_and_the_top_phases_make_up_the_whole():
    """The help texts are `/metrics`' HELP lines and the benchmark profile's rows; the profile's shares are of the
    top phases' sum, and it lists the leaves (inference split into tokenization and forward passes)."""
    assert list(COUNTER_HELP) == list(COUNTERS) and all(COUNTER_HELP.values())
    assert list(PHASE_HELP) == list(PHASES) and all(PHASE_HELP.values())
    assert TOP_PHASES == ("pop_s", "decode_s", "infer_s", "publish_s")
    assert LEAF_PHASES == ("pop_s", "decode_s", "tokenize_s", "forward_s", "publish_s")
