"""``python -m benchmarks.api_cpu``: the API process's CPU per request in the real service, checkouts side by side.

benchmarks.overhead measures the request path's Python in-process, one request at a time, with Redis stubbed out.
This measures what it costs served: the API process (uvicorn, the app, redis-py, the sockets) under wrk's closed
loop, with a real Redis and worker and a hundred requests in flight, in CPU microseconds per answered request.
Give it several checkouts (each with its own ``.venv``) and it measures them in alternating rounds, so that a
shared VM's drift weighs on each alike:

    python -m benchmarks.api_cpu                                  # this checkout
    python -m benchmarks.api_cpu --checkouts ../before . --rounds 3
    python -m benchmarks.api_cpu --env ACCESS_LOG=false           # any setting, as served
    python -m benchmarks.api_cpu --floor      # and a bare FastAPI route beside it: the framework's own share

Each checkout's own code runs (its harness starts its API and worker; this file is run there as a child).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
FLOOR = "floor: a bare FastAPI route (benchmarks/api_floor.py)"


def sentences() -> list[str]:
    from harness.corpus import load_sentences

    texts, _ = load_sentences()
    random.Random(0).shuffle(texts)
    return texts


def measure(url: str, texts: list[str], connections: int, duration_s: int, api_pid: int,
            redis_pid: int | None = None) -> dict:
    """One settling run, then one measured wrk run against ``url``: the CPU per answered request of ``api_pid`` (and
    of ``redis_pid``, where there is one)."""
    from benchmarks.wrk import run_wrk
    from harness.processes import cpu_seconds

    # Settle: the first connections' pools (and a worker's shapes); its end (wrk hangs up mid-request) is not in the
    # measured run.
    run_wrk(url, texts, connections, 3)
    time.sleep(1)
    api0, began = cpu_seconds(api_pid), time.perf_counter()
    redis0 = cpu_seconds(redis_pid) if redis_pid is not None else 0.0
    result = run_wrk(url, texts, connections, duration_s)
    answered = result.rps * (time.perf_counter() - began)
    redis_us = 1e6 * (cpu_seconds(redis_pid) - redis0) / answered if redis_pid is not None else 0.0
    return {"rps": result.rps, "errors": result.errors, "api_us": 1e6 * (cpu_seconds(api_pid) - api0) / answered,
            "redis_us": redis_us}


def child(env: dict[str, str], duration_s: int, connections: int) -> dict:
    """In a checkout: its service on a private Redis, warmed up, then one measured wrk run."""
    from benchmarks.systems import warm_up
    from harness.processes import RedisServer
    from harness.service import start_service

    texts = sentences()
    with tempfile.TemporaryDirectory(prefix="api-cpu-") as logs:
        redis = RedisServer(Path(logs))
        service = start_service(redis.url, Path(logs), workers=1, env=env, ready_timeout=600)
        try:
            warm_up(service.url, texts, 100)
            return measure(f"{service.url}/predict", texts, connections, duration_s, service.api.pid, redis.pid)
        finally:
            service.stop()
            redis.stop()


def serve_floor(duration_s: int, connections: int, delay_s: float) -> dict:
    """benchmarks.api_floor served as the API is, answering after ``delay_s``, measured as child() measures the API."""
    from harness.processes import Process, free_port, python_env, wait_while_alive

    port = free_port()
    command = ["benchmarks.api_floor:app", "--port", str(port), "--loop", "uvloop", "--http", "httptools",
               "--no-access-log", "--log-level", "warning"]
    server = Process.python("uvicorn", python_env(API_FLOOR_DELAY_S=str(delay_s)), None, *command, name="floor")
    try:
        wait_while_alive(server, lambda: server.listens_on(port), 60, "the floor server to listen")
        return measure(f"http://127.0.0.1:{port}/predict", sentences(), connections, duration_s, server.pid)
    finally:
        server.stop()


def run_in(checkout: Path, env: dict[str, str], duration_s: int, connections: int, *,
           floor_delay_s: float | None = None) -> dict:
    """One measured run in ``checkout``: its API, or with ``floor_delay_s`` the floor answering after that long."""
    python = checkout / ".venv" / "bin" / "python"
    what = ["--child", json.dumps(env)] if floor_delay_s is None else ["--floor-child"]
    tail = [] if floor_delay_s is None else [str(floor_delay_s)]
    done = subprocess.run([str(python if python.exists() else sys.executable), str(HERE), *what,
                           str(duration_s), str(connections), *tail], cwd=checkout, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(checkout)})
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the run in {checkout} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        print(json.dumps(child(json.loads(argv[1]), int(argv[2]), int(argv[3]))))
        return 0
    if argv[:1] == ["--floor-child"]:
        print(json.dumps(serve_floor(int(argv[1]), int(argv[2]), float(argv[3]))))
        return 0
    from benchmarks.__main__ import ensure_model
    from benchmarks.environment import cpu_model, git_commit
    from benchmarks.report import save_report
    from engine.cpu import cpu_bf16_support

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkouts", type=Path, nargs="+", default=[HERE.parent.parent])
    parser.add_argument("--model", help="model directory (default: models/bench)")
    parser.add_argument("--backend", help="the worker's BACKEND (default: torch-bf16 where the CPU has bf16, else "
                                          "torch): a fast worker loads the API most")
    parser.add_argument("--env", nargs="*", default=[], metavar="KEY=VALUE", help="more settings, as served")
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--floor", action="store_true",
                        help="also measure, in each round, a bare FastAPI route on uvicorn (benchmarks/api_floor.py) "
                             "answering at the first checkout's rate")
    parser.add_argument("--quick", action="store_true", help="smoke run: one round of 2 s")
    parser.add_argument("--name", default="api-cpu")
    parser.add_argument("--out", type=Path, default=HERE.parent / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration = 1, 2
    model, model_note = ensure_model(args.model)
    bf16 = cpu_bf16_support()
    env = {"MODEL": model, "BACKEND": args.backend or ("torch-bf16" if bf16 else "torch"), "REQUEST_TIMEOUT_S": "60",
           "MAX_QUEUE_DEPTH": "100000", **dict(pair.split("=", 1) for pair in args.env)}
    checkouts = [c.resolve() for c in args.checkouts]
    runs: dict[str, list[dict]] = {str(c): [] for c in checkouts}
    if args.floor:
        runs[FLOOR] = []
    for _ in range(args.rounds):
        for checkout in checkouts:
            measured = run_in(checkout, env, args.duration, args.connections)
            runs[str(checkout)].append(measured)
            print(f"{checkout}: {json.dumps(measured)}", flush=True)
        if args.floor:  # at the first checkout's latency this round: as many requests in flight, at its rate
            delay_s = args.connections / max(runs[str(checkouts[0])][-1]["rps"], 1.0)
            measured = run_in(HERE.parent.parent, {}, args.duration, args.connections, floor_delay_s=delay_s)
            runs[FLOOR].append(measured)
            print(f"{FLOOR}: {json.dumps(measured)}", flush=True)
    rows = [{"checkout": name, "commit": git_commit(HERE.parent.parent if name == FLOOR else Path(name)),
             "runs": measured,
             **{k: statistics.median(r[k] for r in measured) for k in ("rps", "api_us", "redis_us")}}
            for name, measured in runs.items()]
    result = {"model": model, "model_note": model_note, "env": {k: v for k, v in env.items() if k != "MODEL"},
              "connections": args.connections, "duration_s": args.duration, "rounds": args.rounds,
              "cpu_model": cpu_model(), "bf16": bf16, "date": dt.datetime.now().isoformat(timespec="seconds"),
              "rows": rows}
    save_report(args.out / args.name, result, markdown(result))
    return 0


def markdown(result: dict) -> str:
    settings = ", ".join(f"{k}={v}" for k, v in result["env"].items())
    lines = [f"# The API process's CPU per request, served ({result['connections']} wrk connections, "
             f"{result['duration_s']} s x {result['rounds']} alternating rounds, medians)", "",
             f"{result['model_note']}; {settings}; {result['cpu_model']} (bf16: {result['bf16'] or 'none'}); "
             f"{result['date']}.", "",
             "| checkout | commit | RPS | API CPU us / request | Redis CPU us / request | runs (API us) |",
             "|---|---|---|---|---|---|"]
    for row in result["rows"]:
        api_runs = ", ".join(f"{r['api_us']:.0f}" for r in row["runs"])
        redis_us = "—" if row["checkout"] == FLOOR else f"{row['redis_us']:.0f}"  # the floor has no Redis
        lines.append(f"| {row['checkout']} | `{row['commit']}` | {row['rps']:.1f} | {row['api_us']:.0f} | {redis_us} | "
                     f"{api_runs} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
