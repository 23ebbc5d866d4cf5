"""A served API process freezes what it built at start and collects young objects rarely (api/app.py): a hundred
requests in flight must not be walked by a collection every few requests."""

import gc

from api.app import freeze_startup_heap


def test_a_server_process_lets_thousands_of_allocations_pass_before_a_young_collection():
    thresholds = gc.get_threshold()
    try:
        freeze_startup_heap()
        before = gc.get_stats()[0]["collections"]
        kept = [{"request": i} for i in range(5_000)]  # tracked containers that stay alive, as in-flight requests' do
        assert gc.get_stats()[0]["collections"] == before, "a young collection ran within 5,000 allocations"
        assert gc.get_freeze_count() > 0
        del kept
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
