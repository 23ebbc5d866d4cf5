"""``API_PROCESSES=2``: two API server processes on one port (SO_REUSEPORT), supervised by ``python -m api``."""

import asyncio
import os
import signal
import socket
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from engine.simulated import simulated_score
from harness.processes import children
from tests.e2e.conftest import start_service
from tests.e2e.test_service import fire, results
from tests.helpers import sentences, wait_until


def api_servers(supervisor: int) -> set[int]:
    """The supervisor's server processes (multiprocessing's spawned children)."""
    return {pid for pid in children(supervisor)
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()}


def assert_all_answered(outcomes) -> None:
    for texts, response in outcomes:
        assert response.status_code == 200, response.text
        assert [r["score"] for r in results(response)] == [simulated_score(t) for t in texts]


def tier_totals(url: str, scrapes: int = 8) -> set[tuple[float, float]]:
    """(prediction requests answered 200, texts enqueued; of every model) as each of ``scrapes`` scrapes of /metrics
    reports them, each on a new connection (the kernel hands each to either server)."""
    seen = set()
    for _ in range(scrapes):
        families = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text)}
        answered = sum(s.value for s in families["sentimentalyzer_requests"].samples
                       if s.name.endswith("_total") and s.labels["route"].startswith("/predict")
                       and s.labels["status"] == "200")
        texts = sum(s.value for s in families["sentimentalyzer_texts"].samples if s.name.endswith("_total"))
        seen.add((answered, texts))
    return seen


def texts_in(outcomes) -> int:
    return sum(len(texts) for texts, _ in outcomes)


def test_two_api_processes_share_the_port_and_their_metrics_survive_a_crash_and_drain_on_sigterm(redis_server, tmp_path):
    from api.main import MIN_UPTIME_S

    svc = start_service(redis_server.url, "/no/model/needed", tmp_path, workers=1, BACKEND="simulated",
                        API_PROCESSES="2")
    try:
        first = api_servers(svc.api.pid)
        # Both servers run by now: from here, their uptime is at least the time elapsed. (Timed from before the start,
        # a slow start — imports on a loaded machine — left a server under MIN_UPTIME_S when killed below: the
        # supervisor then rightly stopped the API as a failed start.)
        started = time.monotonic()
        assert len(first) == 2
        before = asyncio.run(fire(svc.url, sentences(120, seed=3)))
        assert_all_answered(before)
        # Whichever server a scrape lands on, it answers for both (prometheus-client's multiprocess files).
        assert tier_totals(svc.url) == {(120, texts_in(before))}
        # A server that dies after it was up long enough is replaced; the port keeps answering meanwhile.
        time.sleep(max(0.0, MIN_UPTIME_S + 0.5 - (time.monotonic() - started)))
        os.kill(max(first), signal.SIGKILL)
        during = asyncio.run(fire(svc.url, sentences(40, seed=4)))
        assert_all_answered(during)
        wait_until(lambda: len(api_servers(svc.api.pid) - first) == 1, 30, "a replacement API process")
        after = asyncio.run(fire(svc.url, sentences(60, seed=5)))
        assert_all_answered(after)
        # The killed server's counts stay in the sums: the tier's counters never go back (no reset for rate()).
        assert tier_totals(svc.url) == {(220, texts_in(before) + texts_in(during) + texts_in(after))}
        # SIGTERM drains every server; the supervisor exits 0.
        svc.api.signal(signal.SIGTERM)
        assert svc.api.wait(timeout=30) == 0, svc.api.output()[-2000:]
        assert "starting another" in svc.api.output()
        assert not api_servers(svc.api.pid)
    finally:
        svc.stop()


def test_a_server_that_cannot_start_stops_the_api_instead_of_crash_looping(redis_server, tmp_path):
    from tests.helpers import Process, free_port, python_env

    port = free_port()
    with socket.socket() as blocker:  # the port is taken by a socket without SO_REUSEPORT
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        api = Process.python("api", python_env(REDIS_URL=redis_server.url, PORT=str(port), API_PROCESSES="2"),
                      tmp_path / "api.log")
        try:
            assert api.wait(timeout=60) == 1
        finally:
            api.stop()
    assert "stopping the others" in api.output()
