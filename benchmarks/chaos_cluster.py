"""The chaos soak's cluster (``benchmarks/chaos.py`` runs it): Redis + API + workers as real processes, the
events that break them, the closed-loop load, and the judgement of every answer."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx

from harness.processes import Process, RedisServer
from harness.service import Service, start_service

REDIS_GRACE_S = 2.0  # a request ending this long after Redis came back may still carry the outage's 503
HANG_S = 30.0  # a request without an answer after this long is a hang (the API's own deadline is 10 s)
HOLDER_WAIT_S = 5.0  # how long workers are stopped in turn to find one holding work (``holding_victims``)
COUNTERS = ("texts", "cancelled", "expired", "reclaimed", "failed", "malformed")

# Whether an answer (label, score) is the right one for a text.
Judge = Callable[[str, str, float], bool]


class Chaos:
    def __init__(self, workdir: Path, env: Mapping[str, str], *, workers: int, clients: int, seed: int,
                 right: Judge, holding_victims: bool = False) -> None:
        """``holding_victims`` (the quick run, one event of each kind): the kill and the freeze pick a worker that
        holds work at that moment, so that each really takes a window away and its recovery shows; otherwise any
        live worker (one idle in its blocking wait for the queue holds nothing)."""
        self.workdir, self.size, self.clients, self.right = workdir, workers, clients, right
        self.holding_victims = holding_victims
        self.rng = random.Random(seed)
        self.redis = RedisServer(workdir)
        self.service: Service = start_service(self.redis.url, workdir, workers=workers, env=env)
        self.outages: list[tuple[float, float]] = []  # Redis down: (stopped, answering again), monotonic
        self.events: Counter[str] = Counter()
        self.counted: Counter[str] = Counter()  # worker counters of Redis lifetimes that ended
        # (texts, started, ended, status or None for a hang, body): judged at the end
        self.answers: list[tuple[list[str], float, float, int | None, str]] = []
        self.outcomes: Counter[str] = Counter()
        self.texts_answered = 0
        self.bad: list[str] = []  # the first few unacceptable outcomes, described

    # -- the events -------------------------------------------------------------------------------------------
    def live(self) -> list:
        return [w for w in self.service.workers if w.alive()]

    def replace_dead(self) -> None:
        """A supervisor's job (compose restarts crashed containers): keep the pool at its size."""
        for worker in [w for w in self.service.workers if not w.alive()]:
            self.service.workers.remove(worker)
        while len(self.service.workers) < self.size:
            self.service.start_worker(f"worker-{sum(self.events.values())}-{len(self.service.workers)}")

    def holds_work(self, worker: Process) -> bool:
        """Whether ``worker`` (default WORKER_ID: <hostname>-<pid>) holds messages: its in-flight list."""
        return bool(self.redis.client.llen(self.service.keys.inflight(f"{socket.gethostname()}-{worker.pid}")))

    async def stopped_holder(self) -> Process:
        """A live worker at random, stopped (SIGSTOP) while it holds work: one stopped and checked at a time,
        resumed if it held none (under load most are mid-pass). Between tries the event loop runs (the load is its
        tasks: blocked, it would let the queue drain and every worker go idle). Past HOLDER_WAIT_S, the last one
        tried, stopped."""
        give_up = time.monotonic() + HOLDER_WAIT_S
        while True:
            victim = self.rng.choice(self.live())
            victim.signal(signal.SIGSTOP)
            while victim.alive() and process_state(victim.pid) not in ("T", "t"):  # the stop lands in microseconds
                pass
            if self.holds_work(victim) or time.monotonic() > give_up:
                return victim
            victim.signal(signal.SIGCONT)
            await asyncio.sleep(0.002)

    async def victim(self) -> Process:
        return await self.stopped_holder() if self.holding_victims else self.rng.choice(self.live())

    async def kill(self) -> None:
        (await self.victim()).signal(signal.SIGKILL)
        await asyncio.sleep(1.0)
        self.replace_dead()

    async def freeze(self, seconds: float) -> None:
        victim = await self.victim()
        victim.signal(signal.SIGSTOP)  # (a stopped holder: already)
        await asyncio.sleep(seconds)
        victim.signal(signal.SIGCONT)

    async def restart_worker(self) -> None:
        victim = self.rng.choice(self.live())
        await asyncio.to_thread(victim.stop)
        self.replace_dead()

    async def restart_redis(self) -> None:
        port = self.redis.port
        self.counted.update(self.worker_counts())  # then at once a crash: what is published in between is lost
        started = time.monotonic()
        self.redis.process.signal(signal.SIGKILL)
        await asyncio.to_thread(self.redis.stop)
        await asyncio.sleep(1.0)
        self.redis = await asyncio.to_thread(RedisServer.on_port, port, self.workdir)
        self.outages.append((started, time.monotonic()))

    async def run_event(self, kind: str) -> None:
        """``sigkill``, ``sigstop`` (3-15 s) or ``sigstop:<seconds>``, ``restart`` (a worker), ``redis``."""
        kind, _, seconds = kind.partition(":")
        self.events[kind] += 1
        if kind == "sigkill":
            await self.kill()
        elif kind == "sigstop":
            await self.freeze(float(seconds) if seconds else self.rng.uniform(3, 15))
        elif kind == "restart":
            await self.restart_worker()
        else:
            await self.restart_redis()

    def worker_counts(self) -> Counter[str]:
        raw = self.redis.client.hgetall(self.service.keys.stats)
        return Counter({k.decode(): int(v) for k, v in raw.items() if k.decode() in COUNTERS})

    # -- the load ---------------------------------------------------------------------------------------------
    def judge_all(self) -> None:
        """After the run: every outage is known by then (a 503 arrives while its outage is still going on)."""
        for answer in self.answers:
            self.judge(*answer)

    def judge(self, texts: list[str], started: float, ended: float, status: int | None, body: str) -> None:
        if status is None:
            outcome = "hang"
        elif status == 200:
            answer = json.loads(body)
            results = answer["results"] if "results" in answer else [answer]
            right = [self.right(t, r["label"], r["score"]) for t, r in zip(texts, results)]
            outcome = "200" if len(results) == len(texts) and all(right) else "wrong answer"
            self.texts_answered += len(texts)
        elif status == 503 and any(down <= ended and started <= up + REDIS_GRACE_S for down, up in self.outages):
            outcome = "503 (Redis down)"
        elif status == 429:
            outcome = "429"
        else:
            outcome = f"{status} (unexpected)"
        self.outcomes[outcome] += 1
        if outcome not in ("200", "503 (Redis down)", "429") and len(self.bad) < 10:
            self.bad.append(f"{outcome}: {texts[:1]} -> {body[:200]}")

    async def client(self, http: httpx.AsyncClient, sentences: list[str], until: float) -> None:
        while time.monotonic() < until:
            texts = self.rng.sample(sentences, self.rng.choice([1, 1, 1, 1, 3]))
            route, body = ("/predict", {"text": texts[0]}) if len(texts) == 1 else ("/predict/batch", {"texts": texts})
            started = time.monotonic()
            try:
                response = await http.post(route, json=body)
            except httpx.TimeoutException:
                self.answers.append((texts, started, time.monotonic(), None, ""))
                continue
            self.answers.append((texts, started, time.monotonic(), response.status_code, response.text))
            if response.status_code in (429, 503):
                await asyncio.sleep(float(response.headers.get("Retry-After", "1")))  # as a polite client does

    async def run(self, seconds: float, schedule: list[tuple[float, str]], sentences: list[str]) -> None:
        until = time.monotonic() + seconds
        limits = httpx.Limits(max_connections=self.clients)
        async with httpx.AsyncClient(base_url=self.service.url, timeout=HANG_S, limits=limits) as http:
            load = [asyncio.create_task(self.client(http, sentences, until)) for _ in range(self.clients)]
            began, pending = time.monotonic(), []
            for at, kind in schedule:
                await asyncio.sleep(max(0.0, began + at - time.monotonic()))
                pending.append(asyncio.create_task(self.run_event(kind)))
            await asyncio.gather(*load, *pending)
        self.replace_dead()
        self.judge_all()

    def stop(self) -> None:
        self.service.stop()
        self.redis.stop()


def process_state(pid: int) -> str:
    """The state letter of a live process (Linux /proc): R running, S sleeping, T stopped, ..."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"
