"""An API process started before its Redis, on a host whose clock is 30 s behind (faketime): it reads Redis's clock
as soon as Redis is up, and no request is queued with a deadline stamped on the wrong clock (which workers would read
as long past: every text dropped as expired, 504s). The worker is simulated: the deadline is under test, not the
model."""

import asyncio
import time

import httpx
import pytest

from harness.service import live_workers
from tests.e2e.test_api_processes import assert_all_answered
from tests.e2e.test_reliability import FAKETIME_LIBRARY
from tests.e2e.test_service import fire
from tests.helpers import Process, RedisServer, free_port, python_env, report, sentences, wait_until

SAID = "this host's clock is 30.0 s behind the Redis server's"


@pytest.mark.skipif(not FAKETIME_LIBRARY.exists(), reason="needs libfaketime: apt-get install -y faketime")
def test_an_api_started_before_redis_on_a_host_clock_30s_behind_answers_once_redis_is_up(tmp_path):
    redis_port, api_port = free_port(), free_port()
    url = f"http://127.0.0.1:{api_port}"
    env = python_env(REDIS_URL=f"redis://127.0.0.1:{redis_port}/0", KEY_PREFIX="late-redis-clock", PORT=str(api_port),
                     BACKEND="simulated", SIMULATED_BATCH_MS="5", SIMULATED_TEXT_MS="0", LOG_LEVEL="INFO",
                     IDLE_BLOCK_S="0.5")
    api = Process.python("api", {**env, "LD_PRELOAD": str(FAKETIME_LIBRARY), "FAKETIME": "-30s",
                                 "FAKETIME_DONT_FAKE_MONOTONIC": "1"}, tmp_path / "api.log")
    late, worker = None, None
    try:
        wait_until(lambda: live_workers(url) == 0, 60, "the API to answer (not ready: no Redis)", 0.1)
        assert httpx.post(f"{url}/predict", json={"text": "too early"}, timeout=5).status_code == 503
        late = RedisServer.on_port(redis_port, tmp_path)
        up = time.monotonic()
        wait_until(lambda: SAID in api.output(), 10, "the API to read Redis's clock", 0.05)
        clock_read_s = time.monotonic() - up
        worker = Process.python("worker", env, tmp_path / "worker.log")
        wait_until(lambda: live_workers(url) == 1, 60, "the worker to be live", 0.1)
        outcomes = asyncio.run(fire(url, sentences(40, seed=23)))
        report("api_before_redis", clock_read_s=round(clock_read_s, 2), requests=len(outcomes),
               answered=sum(r.status_code == 200 for _, r in outcomes))
        assert clock_read_s < 2.0
        assert_all_answered(outcomes)  # every one 200: none stamped on the host's clock (no 504)
    finally:
        for proc in (api, worker):
            if proc is not None:
                proc.stop()
        if late is not None:
            late.stop()
