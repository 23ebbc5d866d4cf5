"""Workers that fail under load, with default settings: killed mid-batch, frozen, started twice under one id,
crashed by a poison message, restarted under their old id. Each test prints its figures: run with -s to see
them."""

import asyncio
import json
import signal
import time

import httpx
import redis

from common.keys import DEFAULT_MODEL_NAME, Keys
from common.protocol import ErrorCode, WorkItem, decode_reply, encode_item, new_request_id
from common.scripts import digest
from tests.e2e.conftest import start_service
from tests.e2e.test_service import assert_correct, fire, worker_id_of
from tests.helpers import Process, python_env, report, sentences, wait_until


def two_workers_and_a_victim(redis_url, model, logs):
    """2 workers whose passes take >= 50 ms (so a signal lands while one holds a window); the first is the victim:
    the service, a Redis client, the victim's process and its worker id."""
    svc = start_service(redis_url, model, logs, workers=2, worker_module="tests.e2e.faulty_worker",
                        FAULT_SLOW_S="0.05", MAX_BATCH_SIZE="16")
    victim = svc.workers[0]
    return svc, redis.Redis.from_url(svc.redis_url), victim, worker_id_of(svc, victim.pid)


def test_sigkill_mid_batch_loses_nothing(redis_server, tiny_model, tiny_predictor, tmp_path):
    svc, client, victim, victim_id = two_workers_and_a_victim(redis_server.url, tiny_model, tmp_path)
    keys = svc.keys
    try:

        async def scenario():
            load = asyncio.create_task(fire(svc.url, sentences(300, seed=21)))
            # Kill the victim while it holds a batch (its in-flight list is not empty), after it answered some:
            # what it published must not come back from its in-flight list.
            def answered_some_and_holds_a_batch() -> bool:
                answered = int(client.hget(keys.heartbeat(victim_id), "texts") or 0)
                return answered >= 16 and client.llen(keys.inflight(victim_id)) > 0

            # Stopped first, so that what it holds is read with nothing moving (a worker killed right after a publish
            # holds nothing: a flaky "held 0"), then killed; the survivor takes the window back only once the lease
            # runs out or the dead connection is seen.
            while True:
                await asyncio.to_thread(wait_until, answered_some_and_holds_a_batch, 20,
                                        "the victim to answer some and hold a batch", 0.005)
                victim.signal(signal.SIGSTOP)
                held = client.llen(keys.inflight(victim_id))
                if held:
                    break
                victim.signal(signal.SIGCONT)  # it published between the check and the stop: try again
            victim.signal(signal.SIGKILL)
            await asyncio.to_thread(victim.wait, 10)
            return held, await load

        held, outcomes = asyncio.run(scenario())
        texts_sent = sum(len(texts) for texts, _ in outcomes)
        ok = [r for _, r in outcomes if r.status_code == 200]
        processed = int(client.hget(keys.stats, "texts"))
        report("sigkill", requests=len(outcomes), texts=texts_sent, held_by_killed_worker=held, answered=len(ok),
               failed=len(outcomes) - len(ok), texts_run=processed, texts_run_twice=processed - texts_sent)
        assert held > 0
        assert_correct(outcomes, tiny_predictor)  # every request answered, correctly
        # Every text ran to a published answer exactly once: the killed worker's window was re-run by the survivor,
        # and nothing it had published was re-queued (publish and release are one MULTI).
        assert processed == texts_sent
        assert client.exists(keys.inflight(victim_id)) == 0  # recovered by the survivor
        assert not client.hexists(keys.workers, victim_id)
    finally:
        svc.stop()


async def steady_load(url: str, texts: list[str], *, clients: int, seconds: float):
    """``clients`` closed-loop clients posting ``texts`` round-robin for ``seconds``: every (texts, response)."""
    outcomes = []
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=60,
                                 limits=httpx.Limits(max_connections=clients)) as http:
        async def client(c: int):
            i = c
            while time.monotonic() < deadline:
                text = texts[i % len(texts)]
                outcomes.append(([text], await http.post("/predict", json={"text": text})))
                i += clients

        await asyncio.gather(*(client(c) for c in range(clients)))
    return outcomes


def test_a_frozen_worker_loses_nothing_with_default_settings(redis_server, tiny_model, tiny_predictor, tmp_path):
    """SIGSTOP a worker holding a window for 11 s (a frozen VM, a long pause: longer than the default 10 s deadline,
    so its clients could only be answered by another worker), then SIGCONT: its window runs on the other worker once
    its lease runs out, well inside the deadline; no client sees an error."""
    svc, client, victim, victim_id = two_workers_and_a_victim(redis_server.url, tiny_model, tmp_path)
    keys = svc.keys
    try:
        async def scenario():
            load = asyncio.create_task(steady_load(svc.url, sentences(400, seed=31), clients=24, seconds=15))
            await asyncio.to_thread(wait_until, lambda: client.llen(keys.inflight(victim_id)) > 0, 20,
                                    "the victim to hold a window", 0.002)
            victim.signal(signal.SIGSTOP)
            held = client.llen(keys.inflight(victim_id))
            await asyncio.sleep(11)
            victim.signal(signal.SIGCONT)
            return held, await load

        held, outcomes = asyncio.run(scenario())
        wait_until(lambda: svc.live_workers() == 2, 15, "the resumed worker to count again")
        processed = int(client.hget(keys.stats, "texts"))
        reclaimed = int(client.hget(keys.stats, "reclaimed") or 0)
        statuses = [r.status_code for _, r in outcomes]
        latencies = sorted(float(r.headers.get("X-Queue-Time", 0)) for _, r in outcomes if r.status_code == 200)
        report("sigstop", requests=len(outcomes), held_by_frozen_worker=held, non_200=sum(s != 200 for s in statuses),
               texts_run=processed, texts_run_twice=processed - len(outcomes), reclaimed_on_resume=reclaimed,
               max_queue_ms=latencies[-1])
        assert held > 0
        assert_correct(outcomes, tiny_predictor)  # every request 200, with its own text's answer
        assert "stalled holding" in svc.workers[1].output()  # the survivor took the window back
        assert victim.alive() and client.hexists(keys.workers, victim_id)  # it was never declared dead
        assert client.llen(keys.dead_letter) == 0  # no healthy text set aside
    finally:
        svc.stop()


def test_a_second_worker_under_a_live_workers_id_refuses_to_start(redis_server, tiny_model, tmp_path):
    keys = Keys(f"dup-{new_request_id()[:8]}").served(DEFAULT_MODEL_NAME, 1)  # the workers' keys
    env = python_env(REDIS_URL=redis_server.url, KEY_PREFIX=keys.prefix, WORKER_ID="same-host-1", MODEL=str(tiny_model),
                     TORCH_THREADS="1")
    first = Process.python("worker", env, tmp_path / "first.log")
    try:
        wait_until(lambda: redis_server.client.hexists(keys.workers, "same-host-1"), 60, "the first worker")
        second = Process.python("worker", env, tmp_path / "second.log")
        assert second.wait(timeout=60) == 1
        assert "worker id 'same-host-1' is in use by a live process" in second.output()
        assert first.alive() and redis_server.client.exists(keys.heartbeat("same-host-1"))
        report("duplicate_id", second_exit=1, first_alive=True)
    finally:
        assert first.stop() == 0


def test_poison_message_is_dead_lettered_and_its_batch_mates_answered(redis_server, tiny_model, tmp_path):
    # DEAD_LETTER_KEEP_TEXT: the operator wants to see what crashed the workers.
    svc = start_service(redis_server.url, tiny_model, tmp_path, workers=2, worker_module="tests.e2e.faulty_worker",
                        FAULT_CRASH_MARKER="POISON", FAULT_SLOW_S="0.05", MAX_DELIVERIES="3", DEAD_LETTER_KEEP_TEXT="1")
    client = redis.Redis.from_url(svc.redis_url)
    keys = svc.keys
    try:
        async def scenario():
            async with httpx.AsyncClient(base_url=svc.url, timeout=90) as http:
                normal = [http.post("/predict", json={"text": t}) for t in sentences(40, seed=5)]
                poison = http.post("/predict", json={"text": "this text is POISON for the model"})
                tasks = [asyncio.create_task(c) for c in [poison, *normal]]
                crashes = 0
                # A supervisor's job (compose restarts crashed containers): replace workers that die.
                while not all(t.done() for t in tasks):
                    await asyncio.sleep(0.1)
                    for worker in list(svc.workers):
                        if not worker.alive() and worker.proc.returncode == 86:
                            svc.workers.remove(worker)
                            crashes += 1
                            svc.start_worker(f"replacement-{crashes}")
                return [t.result() for t in tasks], crashes

        (poison_response, *normal), crashes = asyncio.run(scenario())
        report("poison", requests=1 + len(normal), answered=sum(r.status_code == 200 for r in normal),
               failed=sum(r.status_code != 200 for r in normal), poison_status=poison_response.status_code,
               worker_crashes=crashes, dead_letter=client.llen(keys.dead_letter))
        assert poison_response.status_code == 500
        assert poison_response.json()["error"]["message"] == ("this text was set aside: set aside after 3 workers "
                                                              "died processing it [poison_message]")
        assert all(r.status_code == 200 for r in normal), [r.text for r in normal if r.status_code != 200]
        record = json.loads(client.lindex(keys.dead_letter, 0))
        assert record["text"] == "this text is POISON for the model" and record["deaths"] == 3
        assert crashes == 3 and client.llen(keys.dead_letter) == 1
    finally:
        svc.stop()


def test_a_worker_restarted_under_its_old_id_counts_a_death_for_what_it_held(redis_server, tiny_model, tmp_path):
    """Containers restart with the same worker id (same hostname, PID 1): whatever the previous run held, it
    died holding. Default MAX_DELIVERIES (3): a message with two deaths on record gets its third and is set aside;
    the other held message is re-queued and answered."""
    keys = Keys(f"restart-{new_request_id()[:8]}").served(DEFAULT_MODEL_NAME, 1)  # the worker's keys
    client = redis_server.client
    now = time.time()
    poison_id, fresh_id = new_request_id(), new_request_id()
    poison = encode_item(WorkItem(poison_id, 0, "crashed two workers already", now + 60, now))
    fresh = encode_item(WorkItem(fresh_id, 0, "good", now + 60, now))
    client.rpush(keys.inflight("box-1"), poison, fresh)
    client.hset(keys.workers, "box-1", "the-previous-incarnation")
    client.hset(keys.deaths, digest(poison), 2)
    worker = Process.python("worker", python_env(REDIS_URL=redis_server.url, KEY_PREFIX=keys.prefix, WORKER_ID="box-1",
                                                 MODEL=str(tiny_model), TORCH_THREADS="1"), tmp_path / "worker.log")
    try:
        wait_until(lambda: client.llen(keys.reply(fresh_id)) == 1, 60, "the re-queued message to be answered")
        assert "previous run of box-1 died holding 2 message(s): 1 re-queued, 1 dead-lettered" in worker.output()
        record = json.loads(client.lindex(keys.dead_letter, 0))
        assert (record["request_id"], record["deaths"], client.llen(keys.dead_letter)) == (poison_id, 3, 1)
        assert "text" not in record  # by default no user text is kept in the dead-letter list
        poison_reply = decode_reply(client.lindex(keys.reply(poison_id), 0))
        assert poison_reply.error.code == ErrorCode.POISON and "after 3 workers died" in poison_reply.error.message
        assert decode_reply(client.lindex(keys.reply(fresh_id), 0)).predictions is not None
        assert client.hlen(keys.deaths) == 0  # the answered one's death was cleared, the poison's moved on
        report("restart_same_id", held=2, requeued=1, dead_lettered=1)
    finally:
        assert worker.stop() == 0
