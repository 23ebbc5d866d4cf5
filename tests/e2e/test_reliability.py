"""Failures around the workers, with real processes: clients that hang up, a worker host's clock off, Redis going
away or starting late, garbage on the queue, overload, the API draining. Each test prints its figures: run with -s
to see them. (Workers themselves failing: test_worker_failures.py.)"""

import asyncio
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

from common.keys import DEFAULT_MODEL_NAME, Keys
from common.protocol import WorkItem, encode_item, new_request_id
from tests.e2e.conftest import start_service
from tests.e2e.test_service import assert_correct, fire, worker_id_of
from tests.helpers import Process, RedisServer, free_port, python_env, report, sentences, wait_until


def test_clients_that_hang_up_free_their_slots_at_once_and_their_texts_are_skipped(redis_server, tiny_model, tmp_path):
    """MAX_IN_FLIGHT=4 (a small API, as a user would size one): 4 clients post 64 texts each to a busy worker and
    hang up after 0.5 s. The next client is served, not refused with 429, and the texts nobody waits for any more
    are skipped by the worker instead of computed. The clients share one address, so the per-client share is lifted
    (MAX_CLIENT_SHARE=1): the process's own slots are under test."""
    svc = start_service(redis_server.url, tiny_model, tmp_path, workers=1, worker_module="tests.e2e.faulty_worker",
                        FAULT_SLOW_S="0.2", MAX_BATCH_SIZE="16", MAX_IN_FLIGHT="4", MAX_CLIENT_SHARE="1")
    client = redis.Redis.from_url(svc.redis_url)
    try:
        async def scenario():
            async with httpx.AsyncClient(base_url=svc.url, timeout=0.5) as impatient:
                async def hang_up(i):
                    texts = [f"impatient {i} text {j}" for j in range(64)]
                    try:
                        await impatient.post("/predict/batch", json={"texts": texts})
                        return "answered"
                    except httpx.TimeoutException:
                        return "hung up"

                gone = await asyncio.gather(*(hang_up(i) for i in range(4)))
            await asyncio.sleep(0.3)  # the API notices the closed connections
            async with httpx.AsyncClient(base_url=svc.url, timeout=30) as patient:
                return gone, await patient.post("/predict", json={"text": "a patient client"})

        gone, patient = asyncio.run(scenario())
        wait_until(lambda: client.llen(svc.keys.requests) == 0, 30, "the queue to drain")
        stats = {k.decode(): int(v) for k, v in client.hgetall(svc.keys.stats).items()}
        report("hang_up", hung_up=gone.count("hung up"), texts_sent=256, cancelled_unrun=stats.get("cancelled", 0),
               texts_run=stats.get("texts", 0), patient_status=patient.status_code)
        assert gone == ["hung up"] * 4 and patient.status_code == 200
        assert stats.get("cancelled", 0) >= 128  # most of the 256 were skipped, not computed
        assert stats.get("texts", 0) + stats.get("cancelled", 0) <= 256 + 1
    finally:
        svc.stop()


FAKETIME_LIBRARY = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")  # Debian's faketime package


@pytest.mark.skipif(not FAKETIME_LIBRARY.exists(), reason="needs libfaketime: apt-get install -y faketime")
@pytest.mark.parametrize("skew", ["+30s", "-30s"], ids=["worker-ahead", "worker-behind"])
def test_deadlines_hold_when_the_worker_hosts_clock_is_wrong(redis_server, tiny_model, tiny_predictor, tmp_path, skew):
    """The worker's clock 30 s off the API's (a host without time sync): compared on each host's own clock, a
    worker ahead would drop every text as expired (504s) and one behind would run texts long given up on. Both
    stamp and compare on Redis's clock instead."""
    svc = start_service(redis_server.url, tiny_model, tmp_path, workers=0)
    try:
        # BACKEND=torch, as a user may set it: under this libfaketime (Debian's, with FAKETIME_DONT_FAKE_MONOTONIC: a
        # skewed host's wall clock, its monotonic clock true) every time.sleep in the process fails with EINVAL, and
        # BACKEND=auto's decision lock polls with time.sleep while another test's worker holds it. torch reads no
        # decision; the clocks are what this test is about.
        svc.env.update(LD_PRELOAD=str(FAKETIME_LIBRARY), FAKETIME=skew, FAKETIME_DONT_FAKE_MONOTONIC="1",
                       BACKEND="torch")
        svc.start_worker("skewed")
        svc.wait_ready(1)
        outcomes = asyncio.run(fire(svc.url, sentences(60, seed=41)))
        client = redis.Redis.from_url(svc.redis_url)
        offset = float(client.hget(svc.keys.heartbeat(worker_id_of(svc, svc.workers[0].pid)), "clock_offset_s"))
        report("clock_skew", skew=skew, requests=len(outcomes), answered=sum(r.status_code == 200 for _, r in outcomes),
               measured_offset_s=offset, expired=int(client.hget(svc.keys.stats, "expired") or 0))
        assert abs(abs(offset) - 30) < 1 and (offset < 0) == skew.startswith("+")
        assert_correct(outcomes, tiny_predictor)
        assert "clock is 30.0 s" in svc.workers[0].output()  # said loudly: the host's time sync is broken
    finally:
        svc.stop()


def test_redis_outage_gives_fast_503s_and_everything_recovers(tiny_model, tiny_predictor, tmp_path):
    own_redis = RedisServer(tmp_path)
    svc = start_service(own_redis.url, tiny_model, tmp_path, workers=1, REDIS_CONNECT_TIMEOUT_S="0.5")
    pids = [svc.api.pid, svc.workers[0].pid]
    try:
        before = asyncio.run(fire(svc.url, sentences(50, seed=1)))
        assert_correct(before, tiny_predictor)
        own_redis.stop()
        during = []
        with httpx.Client(base_url=svc.url, timeout=10) as http:
            for text in sentences(20, seed=2):
                started = time.monotonic()
                r = http.post("/predict", json={"text": text})
                during.append((r.status_code, time.monotonic() - started))
            readyz = http.get("/readyz").status_code
        # Same port, empty memory: as after a Redis crash or failover.
        own_redis = RedisServer.on_port(own_redis.port, tmp_path)
        wait_until(lambda: svc.live_workers() == 1, 30, "the worker to re-announce itself", 0.2)
        after = asyncio.run(fire(svc.url, sentences(100, seed=3)))
        report("redis_outage", during_sent=len(during), during_503=sum(s == 503 for s, _ in during),
               slowest_503_s=round(max(t for _, t in during), 3), after_sent=len(after),
               after_answered=sum(r.status_code == 200 for _, r in after))
        assert all(status == 503 for status, _ in during) and max(t for _, t in during) < 1.5
        assert readyz == 503
        assert_correct(after, tiny_predictor)
        assert [svc.api.alive(), svc.workers[0].alive()] == [True, True] and [svc.api.pid, svc.workers[0].pid] == pids
    finally:
        svc.stop()
        own_redis.stop()


def test_garbage_on_the_queue_under_load_harms_nobody(service, tiny_predictor):
    client = redis.Redis.from_url(service.redis_url)
    keys = service.keys
    rid = new_request_id()
    garbage = [b"\x00\xff\xfe garbage", b"\xc1" * 3, encode_item(WorkItem(rid, 0, "x", 1e12, 0.0))[:-3],
               b"\x81\xa1v\x01",  # {"v": 1}, nothing else
               b"\xdb" + (50_000_000).to_bytes(4, "big") + b"truncated huge string", b"z" * 3_000_000]

    async def scenario():
        load = asyncio.create_task(fire(service.url, sentences(150, seed=9)))
        await asyncio.sleep(0.2)
        client.rpush(keys.requests, *garbage)
        return await load

    malformed_before = int(client.hget(keys.stats, "malformed") or 0)
    outcomes = asyncio.run(scenario())
    wait_until(lambda: int(client.hget(keys.stats, "malformed") or 0) - malformed_before == len(garbage), 10,
               "the garbage to be skipped")
    report("garbage", garbage_messages=len(garbage), requests=len(outcomes),
           answered=sum(r.status_code == 200 for _, r in outcomes))
    assert_correct(outcomes, tiny_predictor)
    assert all(w.alive() for w in service.workers)


def test_a_request_sent_while_the_api_is_paused_on_a_kept_alive_connection_is_answered(service):
    """A client reuses its idle connection while the API process is stopped (SIGSTOP) for longer than uvicorn's own
    keep-alive default, 5 s. On waking, the due keep-alive timer closes the connection with the request unread in it,
    which is reset (httpx: ReadError, connection reset by peer): seen with KEEP_ALIVE_S=5. Its default outlasts such
    a stop."""
    with httpx.Client(base_url=service.url, timeout=30) as client:
        assert client.post("/predict", json={"text": "kept alive"}).status_code == 200
        service.api.signal(signal.SIGSTOP)
        try:
            with ThreadPoolExecutor(1) as pool:
                sent = pool.submit(client.post, "/predict", json={"text": "sent during the stall"})
                time.sleep(6)
                service.api.signal(signal.SIGCONT)
                assert sent.result().status_code == 200
        finally:
            service.api.signal(signal.SIGCONT)


def test_worker_started_before_redis_waits_instead_of_crash_looping(tiny_model, tmp_path):
    port = free_port()
    keys = Keys("late-redis").served(DEFAULT_MODEL_NAME, 1)  # the worker's keys
    worker = Process.python("worker", python_env(REDIS_URL=f"redis://127.0.0.1:{port}/0", MODEL=str(tiny_model),
                                                 TORCH_THREADS="1", KEY_PREFIX=keys.prefix), tmp_path / "worker.log")
    try:
        wait_until(lambda: "Redis not reachable" in worker.output(), 60, "the worker to notice Redis is down")
        assert worker.alive()
        late = RedisServer.on_port(port, tmp_path)
        try:
            wait_until(lambda: late.client.hlen(keys.workers) == 1, 30, "the worker to announce itself")
            report("redis_late", worker_restarts=0, announced=True)
        finally:
            assert worker.stop() == 0
            late.stop()
    finally:
        worker.stop()


def test_backpressure_bounds_the_latency_of_admitted_requests(redis_server, tiny_model, tmp_path):
    # A small queue (MAX_QUEUE_DEPTH=16) takes batch calls of at most 16 texts; the 300 requests come from one
    # address standing for a crowd, so the per-client share is lifted (MAX_CLIENT_SHARE=1): the queue's own limit
    # is under test here (tests/unit/test_admission.py tests the share).
    svc = start_service(redis_server.url, tiny_model, tmp_path, workers=1, worker_module="tests.e2e.faulty_worker",
                        FAULT_SLOW_S="0.05", MAX_BATCH_SIZE="8", MAX_QUEUE_DEPTH="16", MAX_BATCH_TEXTS="16",
                        MAX_CLIENT_SHARE="1", RETRY_AFTER_S="2")
    try:
        async def overload():
            async with httpx.AsyncClient(base_url=svc.url, timeout=60,
                                         limits=httpx.Limits(max_connections=400)) as http:
                async def one(i):
                    started = time.monotonic()
                    r = await http.post("/predict", json={"text": f"overload {i}"})
                    return r, time.monotonic() - started
                return await asyncio.gather(*(one(i) for i in range(300)))

        results = asyncio.run(overload())
        admitted = [r for r, _ in results if r.status_code == 200]
        rejected = [r for r, _ in results if r.status_code == 429]
        queue_ms = sorted(float(r.headers["X-Queue-Time"]) for r in admitted)
        report("backpressure", sent=len(results), answered=len(admitted), rejected_429=len(rejected),
               other=len(results) - len(admitted) - len(rejected), admitted_max_queue_ms=queue_ms[-1],
               admitted_max_end_to_end_s=round(max(t for r, t in results if r.status_code == 200), 2))
        assert len(admitted) + len(rejected) == len(results)
        assert rejected and all(r.headers["Retry-After"] == "2" for r in rejected)
        # At most 16 texts queued ahead, served in passes of <= 8 at >= 50 ms each: the time an admitted text
        # spends in the queue stays around 3 passes, however many clients pile on (the rest get 429 at once).
        assert queue_ms[-1] < 1500
    finally:
        svc.stop()


def test_sigterm_to_the_api_drains_admitted_requests(redis_server, tiny_model, tmp_path):
    svc = start_service(redis_server.url, tiny_model, tmp_path, workers=1, worker_module="tests.e2e.faulty_worker",
                        FAULT_SLOW_S="0.1", MAX_BATCH_SIZE="4")
    try:
        async def scenario():
            async with httpx.AsyncClient(base_url=svc.url, timeout=60) as http:
                tasks = [asyncio.create_task(http.post("/predict", json={"text": f"drain {i}"})) for i in range(40)]
                await asyncio.sleep(0.3)
                svc.api.signal(signal.SIGTERM)
                return await asyncio.gather(*tasks)

        responses = asyncio.run(scenario())
        code = svc.api.wait(timeout=30)
        report("api_drain", sent=len(responses), answered=sum(r.status_code == 200 for r in responses), api_exit=code)
        assert all(r.status_code == 200 for r in responses) and code == 0
    finally:
        svc.stop()
