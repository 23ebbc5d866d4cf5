import pytest

from worker.lease import LeaseTerm


def test_the_lease_is_the_floor_until_passes_say_it_must_be_longer():
    lease = LeaseTerm(2.0, multiple=4.0, recent=3)
    assert lease.seconds == 2.0
    lease.observe(0.3)
    assert lease.seconds == 2.0  # 4 x 0.3 < floor
    lease.observe(0.9)
    assert lease.seconds == pytest.approx(3.6)  # 4 x the slowest recent pass
    for _ in range(3):
        lease.observe(0.1)
    assert lease.seconds == 2.0  # the slow pass left the window of recent ones


def test_a_lease_needs_a_positive_floor():
    with pytest.raises(ValueError, match="the lease floor must be positive"):
        LeaseTerm(0)


def test_the_lease_stays_within_a_third_of_the_requests_time_budget():
    """A frozen window's texts are taken back after the lease (plus a reaper period) and must still have time to
    run elsewhere before their deadline: the lease never grows past a third of their budget."""
    lease = LeaseTerm(2.0, multiple=4.0)
    lease.observe(6.0)  # passes asked for 24 s
    lease.bound(10.0)  # requests of REQUEST_TIMEOUT_S=10
    assert lease.seconds == pytest.approx(10 / 3) and lease.wanted_s == 24.0
    lease.bound(3.0)
    assert lease.seconds == 2.0  # the floor (WORK_LEASE_S) is the operator's: it wins over the budget


def test_a_publish_lease_covers_the_pass_just_run_within_the_same_bounds():
    lease = LeaseTerm(0.5, multiple=4.0)
    assert lease.seconds_after(0.3) == pytest.approx(1.2)  # not yet observed: only a held window's passes are
    assert lease.seconds == 0.5
    lease.bound(3.0)
    assert lease.seconds_after(0.9) == pytest.approx(1.0)
