"""Logs of real processes, as an operator reads them: LOG_FORMAT=json makes every line of the API (its supervisor and
its two server processes, uvicorn's lines included) and of a worker (BACKEND=auto's measuring child included) one
JSON object; a client's X-Request-ID is on its access line and on the worker's line about the pass that ran its
texts; and REDIS_URL's password is in neither, though every process was given it."""

import json

import httpx

from harness.processes import RedisServer
from tests.e2e.conftest import start_service

PASSWORD = "e2e-Redis-pw-7f3a"


def json_lines(text: str, who: str) -> list[dict]:
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"line {number} of the {who}'s output is not JSON: {line!r}") from None
    return entries


def test_json_logs_name_the_clients_request_id_from_the_access_line_to_the_workers_pass(tmp_path, tiny_model):
    redis = RedisServer(tmp_path, password=PASSWORD)
    svc = start_service(redis.url, tiny_model, tmp_path, workers=1, LOG_FORMAT="json", LOG_LEVEL="DEBUG",
                        API_PROCESSES="2")
    try:
        with httpx.Client(base_url=svc.url, timeout=30) as client:
            tagged = client.post("/predict/batch", json={"texts": ["a good film", "a dull one"]},
                                 headers={"X-Request-ID": "e2e-order-42"})
            untagged = client.post("/predict", json={"text": "fine"})
            missing = client.get("/nowhere", headers={"X-Request-ID": "bad id with spaces"})
        assert tagged.status_code == 200 and tagged.headers["X-Request-ID"] == "e2e-order-42"
        assert untagged.status_code == 200 and missing.status_code == 404
    finally:
        svc.api.stop()
        [worker_code] = [w.stop() for w in svc.workers]
        redis.stop()
    assert worker_code == 0
    api = json_lines(svc.api.output(), "API")
    worker = json_lines(svc.workers[0].output(), "worker")

    access = {e["request_id"]: e for e in api if e["logger"] == "api.access"}
    assert {k: access["e2e-order-42"][k] for k in ("method", "path", "status", "texts")} == {
        "method": "POST", "path": "/predict/batch", "status": 200, "texts": 2}
    untagged_id = untagged.headers["X-Request-ID"]
    assert access[untagged_id]["path"] == "/predict"
    assert access[missing.headers["X-Request-ID"]]["status"] == 404  # the malformed id replaced by a fresh one
    assert any(e["logger"].startswith("uvicorn") for e in api)  # uvicorn's own lines, in JSON too
    assert {e["process"] for e in api} == {"api"} and {e["process"] for e in worker} == {"worker"}

    passes = [e for e in worker if e["logger"] == "worker.loop" and e["message"].startswith("pass of")]
    served = {rid: e for e in passes for rid in e["request_ids"]}
    assert "e2e-order-42" in served and untagged_id in served  # each request by the id its client was given
    assert sum(e["texts"] for e in passes) == 3 and served["e2e-order-42"]["level"] == "DEBUG"

    everything = svc.api.output() + svc.workers[0].output()
    assert PASSWORD not in everything
    print(f"\nan access line: {json.dumps(access['e2e-order-42'])}\na pass line: {json.dumps(served['e2e-order-42'])}")
