"""No secret printed, ever: REDIS_URL's password and API_KEY appear in no log record, no formatted line and no print
of the API, a worker or ``sentimentalyzer serve``, on the paths that show URLs or settings (Redis away, a wrong key,
errors). The e2e JSON-logs test checks the same of real processes on a Redis with a password."""

import logging
import threading

from common.logs import JsonFormatter, TextFormatter
from common.redis_factory import async_client, sync_client
from common.settings import SharedSettings
from tests.helpers import free_port
from tests.unit.api_harness import run, running, settings

PASSWORD = "hunter2-redis-pw"
API_KEY = "sk-very-secret-api-key"


def everything_printed(caplog, capsys) -> str:
    """Every record as both formats write it (message, fields, tracebacks), and whatever went to stdout/stderr. The
    test's own HTTP client (httpx, which logs the URLs it asks for) is not the service."""
    ours = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    lines = [f.format(r) for r in ours for f in (TextFormatter("api"), JsonFormatter("api"))]
    captured = capsys.readouterr()
    return "\n".join([*lines, captured.out, captured.err])


def test_the_api_never_shows_the_redis_password_or_the_api_key(caplog, capsys):
    s = settings(redis_url=f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0", api_key=API_KEY,
                 redis_connect_timeout_s=0.5)

    async def scenario():
        client = async_client(s, longest_block_s=s.request_timeout_s, max_connections=8)
        async with running(s, worker=False, client=client) as (http, _):
            good, wrong = {"Authorization": f"Bearer {API_KEY}"}, {"Authorization": "Bearer nope"}
            statuses = [(await http.post("/predict", json={"text": "hi"}, headers=good)).status_code,
                        (await http.post("/predict", json={"text": "hi"}, headers=wrong)).status_code,
                        (await http.get(f"/predict?api_key={API_KEY}", headers=good)).status_code,
                        (await http.get("/readyz")).status_code, (await http.get("/metrics", headers=good)).status_code]
        await client.aclose()
        return statuses

    with caplog.at_level(logging.DEBUG):
        statuses = run(scenario())
    assert statuses[:4] == [503, 401, 405, 503]  # Redis away: it was asked, and its failures were logged
    assert any("Redis unavailable" in r.getMessage() for r in caplog.records)
    assert any(r.name == "api.access" for r in caplog.records)
    printed = everything_printed(caplog, capsys)
    assert PASSWORD not in printed and API_KEY not in printed
    assert PASSWORD not in repr(s) and API_KEY not in repr(s)  # a settings object in a log line or traceback


def test_a_worker_waiting_for_redis_never_shows_the_password(caplog, capsys):
    from worker.main import wait_for_redis

    class OneTry(threading.Event):
        def wait(self, timeout=None):  # the back-off after the first failure: stop there
            self.set()
            return True

    client = sync_client(SharedSettings(redis_url=f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"),
                         longest_block_s=1)
    with caplog.at_level(logging.DEBUG):
        assert wait_for_redis(client, OneTry()) is False
    assert "Redis not reachable" in caplog.text
    assert PASSWORD not in everything_printed(caplog, capsys)


def test_serve_says_which_redis_it_uses_without_its_password(monkeypatch, capsys):
    from sentimentalyzer import serve

    remote = SharedSettings(redis_url=f"redis://user:{PASSWORD}@redis.example:6379/0")
    monkeypatch.setattr(serve, "redis_answers", lambda url: False)
    assert serve.start_redis_if_needed(remote) == (False, None)
    monkeypatch.setattr(serve, "redis_answers", lambda url: True)
    assert serve.start_redis_if_needed(remote) == (True, None)
    out = capsys.readouterr().out
    assert out.count("redis://user:***@redis.example:6379/0") == 2 and PASSWORD not in out
