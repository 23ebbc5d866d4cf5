"""What an API process reads of the cluster (api/cluster.py) and the key layout it relies on, on fakeredis."""

import asyncio

import fakeredis

from api.cluster import ClusterView
from common.batch_metrics import BATCH_HISTOGRAM_NAMES
from common.keys import Keys
from common.scripts import Scripts, liveness

KEYS = Keys("unit")


def test_the_snapshot_reads_depth_live_workers_counters_and_histograms():
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server)
    client.rpush(KEYS.requests, b"a", b"b", b"c")
    client.sadd(KEYS.workers, "w1", "w2", "w3")
    client.hset(KEYS.heartbeat("w1"), "pid", "1")
    client.hset(KEYS.heartbeat("w3"), "pid", "3")  # w2 registered, heartbeat expired
    client.hset(KEYS.stats, mapping={"texts": 12, "batches": 4})
    client.hset(KEYS.histogram(BATCH_HISTOGRAM_NAMES[0]), mapping={"le=4": 3, "sum": 9.5})

    async def read():
        view = ClusterView(fakeredis.FakeAsyncRedis(server=server), KEYS)
        return await view.snapshot(), await view.live_workers(), await view.queue_depth()

    snapshot, live, depth = asyncio.run(read())
    assert (snapshot.queue_depth, snapshot.live_workers, depth, live) == (3, 2, 3, ["w1", "w3"])
    assert snapshot.worker_counts == {"texts": 12, "batches": 4}
    assert snapshot.batch_histograms[BATCH_HISTOGRAM_NAMES[0]] == {"le=4": 3.0, "sum": 9.5}
    assert all(snapshot.batch_histograms[name] == {} for name in BATCH_HISTOGRAM_NAMES[1:])


def test_liveness_pairs_every_registered_worker_with_its_heartbeat():
    client = fakeredis.FakeRedis()
    client.sadd(KEYS.workers, *[f"w{i}" for i in range(5)])
    for i in (0, 3, 4):
        client.hset(KEYS.heartbeat(f"w{i}"), "pid", str(i))
    assert liveness(Scripts(client, KEYS).worker_liveness()) == {"w0": True, "w1": False, "w2": False, "w3": True,
                                                                 "w4": True}


def test_persistent_keys_are_the_shared_ones_and_every_histogram():
    persistent = KEYS.persistent()
    assert {KEYS.requests, KEYS.workers, KEYS.stats, KEYS.deaths, KEYS.dead_letter} <= persistent
    assert {KEYS.histogram(name) for name in BATCH_HISTOGRAM_NAMES} <= persistent
    assert KEYS.reply("0" * 32) not in persistent and KEYS.inflight("w1") not in persistent
