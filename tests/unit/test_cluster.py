"""What an API process reads of the cluster (api/cluster.py) and the key layout it relies on, on fakeredis."""

import asyncio

import fakeredis

from api.cluster import ClusterView, backend_counts
from common.batch_metrics import BATCH_HISTOGRAM_NAMES
from common.keys import Keys
from common.scripts import Scripts, WorkerState, worker_states

KEYS = Keys("unit")


def test_the_snapshot_reads_depth_live_workers_counters_and_histograms():
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server)
    client.rpush(KEYS.requests, b"a", b"b", b"c")
    client.hset(KEYS.workers, mapping={"w1": "a", "w2": "b", "w3": "c", "w4": "d"})
    for worker, backend in (("w1", "openvino"), ("w3", "onnxruntime"), ("w4", "openvino")):
        client.hset(KEYS.heartbeat(worker), mapping={"pid": "1", "backend": backend})  # w2: heartbeat expired
    client.rpush(KEYS.inflight("w4"), b"held")  # w4 beats but holds work past its lease: stalled
    client.hset(KEYS.stats, mapping={"texts": 12, "batches": 4})
    client.hset(KEYS.histogram(BATCH_HISTOGRAM_NAMES[0]), mapping={"le=4": 3, "sum": 9.5})

    async def read():
        view = ClusterView(fakeredis.FakeAsyncRedis(server=server), KEYS)
        return await view.snapshot(), await view.live_workers(), await view.queue_depth()

    snapshot, live, depth = asyncio.run(read())
    assert (snapshot.queue_depth, snapshot.live_workers, depth, live) == (3, 2, 3, ["w1", "w3"])
    assert snapshot.stalled_workers == 1
    assert snapshot.backends == {"onnxruntime": 1, "openvino": 1}  # live ones only: w4 is stalled
    assert snapshot.worker_counts == {"texts": 12, "batches": 4}
    assert snapshot.batch_histograms[BATCH_HISTOGRAM_NAMES[0]] == {"le=4": 3.0, "sum": 9.5}
    assert all(snapshot.batch_histograms[name] == {} for name in BATCH_HISTOGRAM_NAMES[1:])


def test_a_worker_is_live_while_it_beats_and_holds_no_work_past_its_lease():
    client = fakeredis.FakeRedis()
    client.hset(KEYS.workers, mapping={f"w{i}": f"i{i}" for i in range(5)})
    for i in (0, 2, 3, 4):
        client.hset(KEYS.heartbeat(f"w{i}"), "pid", str(i))
    client.rpush(KEYS.inflight("w2"), b"m1", b"m2")  # holds work, lease gone
    client.rpush(KEYS.inflight("w3"), b"m3")
    client.set(KEYS.lease("w3"), "i3", px=5000)  # holds work under a current lease
    states = worker_states(Scripts(client, KEYS).worker_states())
    assert states == [WorkerState("w0", "i0", True, 0, False), WorkerState("w1", "i1", False, 0, False),
                      WorkerState("w2", "i2", True, 2, False), WorkerState("w3", "i3", True, 1, True),
                      WorkerState("w4", "i4", True, 0, False)]
    assert [w.worker_id for w in states if w.live] == ["w0", "w3", "w4"]
    assert [w.worker_id for w in states if w.stalled] == ["w2"]


def test_persistent_keys_are_the_shared_ones_and_every_histogram():
    persistent = KEYS.persistent()
    assert {KEYS.requests, KEYS.workers, KEYS.stats, KEYS.deaths, KEYS.dead_letter} <= persistent
    assert {KEYS.histogram(name) for name in BATCH_HISTOGRAM_NAMES} <= persistent
    assert KEYS.reply("0" * 32) not in persistent and KEYS.inflight("w1") not in persistent


def test_workers_are_counted_per_backend_and_one_whose_heartbeat_expired_meanwhile_as_unknown():
    described = [{"backend": "onnxruntime"}, {"backend": "torch"}, {"backend": "onnxruntime"}, {}]
    assert backend_counts(described) == {"onnxruntime": 2, "torch": 1, "unknown": 1}
