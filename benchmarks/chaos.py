"""``python -m benchmarks.chaos``: load against Redis + API + workers while a scheduler SIGKILLs, freezes
(SIGSTOP/SIGCONT), gracefully restarts workers and restarts Redis (empty, as after a crash), all with default
settings. Every request is accounted for: answered correctly, or a documented fast error — 503 while Redis is
down (or its clients' waits were cut by the restart), 429 under overload — never a wrong answer, a 500, a 504 or
a hang.

Workers run ``BACKEND=simulated`` (a 20 ms + 1 ms/text pass, slept: the queueing system under test, not the
model; its score is a function of the text, so every answer is checked against its own text).

    python -m benchmarks.chaos                 # 180 s, random events (seeded), results in benchmarks/results/
    python -m benchmarks.chaos --quick         # 25 s, one event of each kind (the test suite runs this)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from benchmarks.environment import cpu_model, git_commit
from harness.corpus import load_sentences
from harness.processes import RedisServer
from harness.service import Service, start_service
from worker.simulated import SIMULATED_LABEL, simulated_score

RESULTS = Path(__file__).resolve().parent / "results"
WORKER_ENV = dict(BACKEND="simulated", SIMULATED_BATCH_MS="20", SIMULATED_TEXT_MS="1", LOG_LEVEL="INFO")
REDIS_GRACE_S = 2.0  # a request ending this long after Redis came back may still carry the outage's 503
HANG_S = 30.0  # a request without an answer after this long is a hang (the API's own deadline is 10 s)
COUNTERS = ("texts", "cancelled", "expired", "reclaimed", "failed", "malformed")


class Chaos:
    def __init__(self, workdir: Path, workers: int, clients: int, seed: int) -> None:
        self.workdir, self.size, self.clients = workdir, workers, clients
        self.rng = random.Random(seed)
        self.redis = RedisServer(workdir)
        self.service: Service = start_service(self.redis.url, workdir, workers=workers, env=WORKER_ENV)
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

    async def kill(self) -> None:
        self.rng.choice(self.live()).signal(signal.SIGKILL)
        await asyncio.sleep(1.0)
        self.replace_dead()

    async def freeze(self, seconds: float) -> None:
        victim = self.rng.choice(self.live())
        victim.signal(signal.SIGSTOP)
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
        self.events[kind] += 1
        if kind == "sigkill":
            await self.kill()
        elif kind == "sigstop":
            await self.freeze(self.rng.uniform(3, 15))
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
            right = [(r["label"], r["score"]) == (SIMULATED_LABEL, simulated_score(t)) for t, r in zip(texts, results)]
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

    async def run(self, seconds: float, schedule: list[tuple[float, str]]) -> None:
        sentences, _ = load_sentences()
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


def random_schedule(seconds: float, rng: random.Random) -> list[tuple[float, str]]:
    """An event every 3-8 s until 20 s before the end (the last ones drain), kinds at random."""
    schedule, at = [], 5.0
    while at < seconds - 20:
        schedule.append((at, rng.choice(["sigkill", "sigkill", "sigstop", "restart", "redis"])))
        at += rng.uniform(3, 8)
    return schedule


QUICK_SCHEDULE = [(3.0, "sigkill"), (6.0, "sigstop"), (12.0, "restart"), (15.0, "redis")]


def recoveries(logs: Path) -> Counter[str]:
    """What the workers' logs say they took back from others (worker/recovery.py's messages)."""
    found: Counter[str] = Counter()
    for log in logs.glob("*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if "is gone (no connection to Redis)" in line:
                found["windows of killed workers re-queued"] += 1
            elif "stalled holding" in line:
                found["windows of frozen workers re-queued"] += 1
            elif "held its window past its lease" in line:
                found["resumed workers that dropped a window taken back"] += 1
    return found


def report(chaos: Chaos, args: argparse.Namespace, seconds: float) -> dict:
    counts = chaos.counted + chaos.worker_counts()
    return {
        "cpu": cpu_model(), "commit": git_commit(), "seconds": seconds, "workers": args.workers,
        "clients": args.clients, "seed": args.seed, "settings": "defaults (BACKEND=simulated, 20 ms + 1 ms/text)",
        "events": dict(chaos.events), "outcomes": dict(chaos.outcomes), "requests": sum(chaos.outcomes.values()),
        "texts_answered": chaos.texts_answered, "worker_counts": dict(counts),
        # Texts run beyond those answered: re-runs of taken-back windows whose first answer also went out (the API
        # keeps the first), plus texts whose clients got a 503 when Redis restarted.
        "texts_run_beyond_answered": counts["texts"] - chaos.texts_answered,
        "recoveries": dict(recoveries(chaos.workdir)), "unacceptable": chaos.bad, "ok": not chaos.bad,
    }


def markdown(result: dict) -> str:
    rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(result["outcomes"].items()))
    counts = ", ".join(f"{k} {v}" for k, v in sorted(result["worker_counts"].items()))
    recovered = ", ".join(f"{k}: {v}" for k, v in sorted(result["recoveries"].items())) or "none"
    events = ", ".join(f"{k} {v}" for k, v in sorted(result["events"].items()))
    return (f"# Chaos soak ({result['seconds']:.0f} s)\n\nCPU: {result['cpu']}; commit {result['commit']}; "
            f"{result['workers']} workers, {result['clients']} closed-loop clients, seed {result['seed']}; "
            f"{result['settings']}.\n\nEvents: {events}.\n\n| outcome | requests |\n|---|---|\n{rows}\n\n"
            f"Texts answered: {result['texts_answered']}. Worker counters (summed over Redis lifetimes): {counts}; "
            f"texts run beyond those answered: {result['texts_run_beyond_answered']}.\n\n"
            f"Recoveries (from the workers' logs): {recovered}.\n\n"
            f"Unacceptable outcomes: {len(result['unacceptable'])}.\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="25 s, one event of each kind")
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS, help="where chaos[-quick].{json,md} go")
    args = parser.parse_args(argv)
    seconds = 25.0 if args.quick else args.seconds
    rng = random.Random(args.seed)
    schedule = QUICK_SCHEDULE if args.quick else random_schedule(seconds, rng)
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        chaos = Chaos(Path(tmp), args.workers, args.clients, args.seed)
        try:
            asyncio.run(chaos.run(seconds, schedule))
            result = report(chaos, args, seconds)
        finally:
            chaos.stop()
    name = "chaos-quick" if args.quick else "chaos"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{name}.md").write_text(markdown(result))
    print(markdown(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
