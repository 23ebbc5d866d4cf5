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
