"""The other entry points as processes: ``sentimentalyzer serve``, the naive baseline, start-up failures."""

import signal
import time

import httpx
import pytest

from common.options import Options, Query
from harness.processes import ProcessExited
from harness.service import ready, start_naive
from tests.answers import same_answer
from tests.helpers import Process, RedisServer, free_port, python_env, wait_until


def test_serve_starts_redis_api_and_workers_says_where_and_stops_them_all(tiny_model, tmp_path):
    redis_port, api_port = free_port(), free_port()
    env = python_env(REDIS_URL=f"redis://127.0.0.1:{redis_port}/0", PORT=str(api_port), MODEL=str(tiny_model),
                     TORCH_THREADS="1")
    launcher = Process.python("sentimentalyzer", env, tmp_path / "serve.log", "serve", "--workers", "2")
    url = f"http://127.0.0.1:{api_port}"
    try:
        wait_until(lambda: ready(url, workers=2), 90, "the service ready with 2 workers")
        wait_until(lambda: f"[serve] ready at {url}" in launcher.output(), 10, "serve to say where the service is")
        r = httpx.post(f"{url}/predict", json={"text": "works end to end"})
        assert r.status_code == 200 and r.json()["label"] in ("NEGATIVE", "POSITIVE")
    finally:
        launcher.signal(signal.SIGINT)  # Ctrl-C
        code = launcher.wait(timeout=60)
    output = launcher.output()
    assert code == 0, output[-3000:]
    for name in ("redis", "worker-1", "worker-2", "api"):
        assert f"[serve] {name} exited with 0" in output, output[-3000:]
    assert "[worker-1]" in output and "[api]" in output  # prefixed log streams
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/healthz", timeout=1)


def test_naive_baseline_serves_the_same_answers_and_errors(tiny_model, tiny_predictor, tmp_path):
    # MAX_SEQUENCE_TOKENS=32 (the texts below are shorter, but for the one that must be too long untruncated)
    naive = start_naive(tmp_path / "naive.log", env=dict(MODEL=str(tiny_model), TORCH_THREADS="1",
                                                         MAX_SEQUENCE_TOKENS="32"), ready_timeout=60)
    url = naive.url
    try:
        text = "a charming and often affecting journey"
        got = httpx.post(f"{url}/predict", json={"text": text}).json()
        expected = tiny_predictor.predict([text])[0]
        assert same_answer(got["label"], got["score"], expected)
        batch = httpx.post(f"{url}/predict/batch", json={"texts": [text, "bad"]}).json()["results"]
        bad_expected = tiny_predictor.predict(["bad"])[0]
        assert same_answer(batch[0]["label"], batch[0]["score"], expected)
        assert same_answer(batch[1]["label"], batch[1]["score"], bad_expected)
        assert not same_answer(batch[1]["label"], batch[1]["score"], expected)  # the check tells the two apart
        bad = httpx.post(f"{url}/predict", json={"text": "  "})
        assert bad.status_code == 422 and bad.json()["error"]["type"] == "validation"
        # The same options and shapes as the service (it shares the schemas), one forward pass per request.
        every, = tiny_predictor.classify([Query(text, None, Options(top_k=None))])
        ranked = httpx.post(f"{url}/predict", json={"text": text, "top_k": None}).json()
        assert [p["label"] for p in ranked] == [p.label for p in every]
        assert all(abs(g["score"] - w.score) <= 1e-5 for g, w in zip(ranked, every))
        assert httpx.post(f"{url}/predict", json={"inputs": text}).json() == ranked  # TEI's shape
        assert len(httpx.post(f"{url}/predict", json={"inputs": [[text], ["bad", "good"]]}).json()) == 2
        too_many = httpx.post(f"{url}/predict", json={"text": text, "top_k": 3})
        assert too_many.status_code == 422 and "top_k" in too_many.json()["error"]["message"]
        too_long = httpx.post(f"{url}/predict", json={"text": "good " * 40, "truncate": False})
        assert too_long.status_code == 422 and "at most 32" in too_long.json()["error"]["message"]
    finally:
        naive.stop()


def test_worker_with_an_unreachable_hub_model_exits_with_the_fix(tmp_path):
    worker = Process.python("worker", python_env(MODEL="no-such-org/no-such-model", HF_HUB_OFFLINE="1"),
                     tmp_path / "worker.log")
    assert worker.wait(timeout=120) == 2
    output = worker.output()
    assert "no-such-org/no-such-model" in output and "python -m engine.offline.make_model bench" in output
    assert "Traceback" not in output


def test_a_server_is_ready_only_on_the_port_it_holds_itself(tmp_path):
    """The harness picks a free port before the server binds it (a model loads first): if another process takes the
    port meanwhile, its answers must not pass for this server's readiness."""
    import socket
    import sys

    port = free_port()
    server = Process([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"], python_env(),
                     tmp_path / "http.log", name="http")
    with socket.socket() as foreign:
        foreign.bind(("127.0.0.1", 0))
        foreign.listen()
        try:
            wait_until(lambda: server.listens_on(port), 10, "the server to listen")
            assert not server.listens_on(foreign.getsockname()[1])
        finally:
            server.stop()
    assert not server.listens_on(port)


def test_a_naive_server_that_exits_while_starting_fails_at_once_with_its_log(tmp_path):
    """Readiness gives up when the server is gone (here: a model that cannot load), not after its 120 s timeout."""
    started = time.monotonic()
    with pytest.raises(AssertionError) as failure:
        start_naive(tmp_path / "naive.log", env={"MODEL": "no-such-org/no-such-model"}, ready_timeout=120)
    assert time.monotonic() - started < 60
    assert "naive exited with code" in str(failure.value) and "no-such-org/no-such-model" in str(failure.value)


def test_a_redis_server_whose_port_is_taken_is_not_taken_for_the_one_there(tmp_path):
    """The harness's private Redis is ready only when it answers on its own socket: on a taken port, the Redis
    already there answers, the new one exits, and the harness says so instead of handing out the other's URL."""
    first = RedisServer(tmp_path)
    try:
        with pytest.raises(ProcessExited, match="redis exited"):
            RedisServer(tmp_path, first.port)
        assert first.client.ping()
    finally:
        first.stop()
