"""Redis high availability with Sentinel, real processes: a master, its replica and a Sentinel (Debian's
redis-server and redis-sentinel); the API and a worker find the master through the Sentinel (REDIS_SENTINELS, what
a user sets). The master is killed under load: requests fail fast with 503 while the Sentinel elects the replica,
then answers resume, without restarting anything. The Sentinel's own timings (down-after 1 s) are its
configuration, not the service's.

The worker is ``BACKEND=simulated`` (20 ms per pass, no model): this is about the Redis path."""

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass

import httpx
import pytest

from engine.simulated import simulated_score
from harness.sentinel import MASTER_NAME, SentinelSet, sentinel_binary
from tests.e2e.conftest import start_service
from tests.helpers import sentences, wait_until

pytestmark = pytest.mark.skipif(sentinel_binary() is None,
                                reason="redis-sentinel not installed (apt-get install -y redis-sentinel; .ci/run does)")

CLIENTS = 8


@dataclass(frozen=True)
class Sent:
    started: float
    ended: float
    status: int  # 0: no HTTP answer
    right: bool  # a 200 with this text's own answer


class Load:
    """CLIENTS clients sending /predict back to back, in a thread, until stopped."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sent: list[Sent] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="load")
        self._thread.start()

    async def _run(self) -> None:
        texts = sentences(100, seed=5)
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as client:
            async def one_client(k: int) -> None:
                i = k
                while not self._stop.is_set():
                    text, started = texts[i % len(texts)], time.monotonic()
                    try:
                        r = await client.post("/predict", json={"text": text})
                        status, right = r.status_code, r.status_code == 200 and r.json()["score"] == pytest.approx(
                            simulated_score(text))
                    except httpx.HTTPError:
                        status, right = 0, False
                    self.sent.append(Sent(started, time.monotonic(), status, right))
                    if status != 200:
                        await asyncio.sleep(0.05)  # as a client backing off on 503 would
                    i += CLIENTS

            await asyncio.gather(*(one_client(k) for k in range(CLIENTS)))

    def stop(self) -> list[Sent]:
        self._stop.set()
        self._thread.join(60)
        return self.sent


def test_a_master_killed_under_load_gives_fast_503s_then_answers_resume_on_the_new_master(tmp_path):
    ha = SentinelSet(tmp_path / "redis")
    svc = None
    try:
        svc = start_service("redis://unused:1/0", "/no/model/needed", tmp_path, workers=1, BACKEND="simulated",
                            SIMULATED_BATCH_MS="20", REDIS_SENTINELS=ha.address, REDIS_SENTINEL_MASTER=MASTER_NAME)
        pids = [svc.api.pid, *(w.pid for w in svc.workers)]
        load = Load(svc.url)
        time.sleep(3)
        killed_at = time.monotonic()
        ha.master.process.signal(9)  # SIGKILL: no goodbye, whatever it had not replicated is gone
        wait_until(lambda: ha.master_port() == ha.replica.port, 30, "the Sentinel to promote the replica")
        promoted_at = time.monotonic()
        wait_until(lambda: any(s.status == 200 and s.started > promoted_at for s in load.sent), 30,
                   "answers from the new master")
        resumed_at = min(s.ended for s in load.sent if s.status == 200 and s.started > promoted_at)
        time.sleep(3)
        sent = load.stop()
        assert all(p.alive() for p in [svc.api, *svc.workers]) and pids == [svc.api.pid, *(w.pid for w in svc.workers)]
        before = [s for s in sent if s.ended < killed_at]
        in_flight = [s for s in sent if s.started < killed_at <= s.ended]
        during = [s for s in sent if killed_at <= s.started < resumed_at]
        after = [s for s in sent if s.started >= resumed_at]
        worst_refusal = max((s.ended - s.started for s in during if s.status == 503), default=0.0)
        print(f"\nfailover: Sentinel promoted the replica {promoted_at - killed_at:.1f} s after the kill, answers "
              f"resumed {resumed_at - killed_at:.1f} s after; before {Counter(s.status for s in before)}; in flight at "
              f"the kill {Counter(s.status for s in in_flight)}; during {Counter(s.status for s in during)} (slowest "
              f"503 {worst_refusal * 1000:.0f} ms); after {Counter(s.status for s in after)}")
        assert before and all(s.right for s in before)
        # Nothing in flight is answered wrongly or left hanging: answered right, or refused (503) / timed out (504).
        assert all(s.right or s.status in (503, 504) for s in in_flight)
        # During the failover: fast refusals, never a wrong answer nor a 500.
        assert all(s.status in (200, 503, 504) for s in during) and all(s.right for s in during if s.status == 200)
        assert worst_refusal < 3.0
        assert resumed_at - promoted_at < 10
        # After: the service is whole again on the new master.
        assert len(after) > 20 and all(s.right for s in after)
        assert ha.replica.client.info("replication")["role"] == "master"
        assert ha.replica.client.llen(svc.keys.requests) == 0  # nothing stranded in the new master's queue
    finally:
        if svc is not None:
            svc.stop()
        ha.stop()
