"""The access log and request ids: one line per request, whatever its route or status, and the X-Request-ID a
client sends kept (when well-formed) on the response, in the line and in the work items of its texts."""

import logging
import re

import pytest

from api.access import client_identity, identity_header
from tests.unit.api_harness import run, running, settings

HEX_ID = re.compile(r"[0-9a-f]{32}")


def access_lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "api.access"]


def test_a_prediction_is_one_line_with_its_method_path_status_duration_id_texts_and_client(caplog):
    async def scenario():
        async with running(settings()) as (http, _):
            with caplog.at_level(logging.INFO, logger="api.access"):
                single = await http.post("/predict", json={"text": "good"})
                batch = await http.post("/predict/batch", json={"texts": ["a", "b", "c"]})
        return single, batch

    single, batch = run(scenario())
    first, second = access_lines(caplog)
    rid = single.headers["X-Request-ID"]
    assert HEX_ID.fullmatch(rid)  # no id of its own from the client: the one its texts were queued under
    assert re.fullmatch(rf"POST /predict 200 \d+\.\dms id={rid} texts=1 client=127\.0\.0\.1", first.message)
    assert (first.method, first.path, first.status, first.request_id, first.texts, first.client) == (
        "POST", "/predict", 200, rid, 1, "127.0.0.1")
    assert first.duration_ms >= 0 and first.levelno == logging.INFO
    assert (second.path, second.texts, second.request_id) == ("/predict/batch", 3, batch.headers["X-Request-ID"])


@pytest.mark.parametrize("method,path,body,status", [
    ("GET", "/no/such/route", None, 404),
    ("POST", "/predict", {"text": ""}, 422),
    ("POST", "/predict/batch", {"texts": []}, 422),
    ("GET", "/predict", None, 405),
    ("GET", "/healthz", None, 200),
])
def test_every_route_and_status_has_its_line_and_an_id(caplog, method, path, body, status):
    async def scenario():
        async with running(settings(), worker=False) as (http, _):
            with caplog.at_level(logging.INFO, logger="api.access"):
                return await http.request(method, path, json=body)

    r = run(scenario())
    line, = access_lines(caplog)
    assert r.status_code == status == line.status
    assert HEX_ID.fullmatch(r.headers["X-Request-ID"]) and line.request_id == r.headers["X-Request-ID"]
    assert line.message.startswith(f"{method} {path} {status} ") and "texts=" not in line.message
    assert not hasattr(line, "texts")  # nothing was asked of the model


def test_a_well_formed_client_id_is_echoed_logged_and_carried_by_the_work_items_never_used_as_the_key(caplog):
    seen: list = []

    async def scenario():
        async with running(settings(), seen=seen) as (http, _):
            with caplog.at_level(logging.INFO, logger="api.access"):
                ok = await http.post("/predict/batch", json={"texts": ["a", "b"]},
                                     headers={"X-Request-ID": "checkout-7.retry:2_A"})
                missing = await http.get("/nowhere", headers={"X-Request-ID": "probe-1"})
        return ok, missing

    ok, missing = run(scenario())
    assert ok.headers["X-Request-ID"] == "checkout-7.retry:2_A" and missing.headers["X-Request-ID"] == "probe-1"
    assert [line.request_id for line in access_lines(caplog)] == ["checkout-7.retry:2_A", "probe-1"]
    assert [item.client_request_id for item in seen] == ["checkout-7.retry:2_A"] * 2
    assert all(HEX_ID.fullmatch(item.request_id) for item in seen)  # the reply key's id: the server's own
    assert len(ok.headers.get_list("X-Request-ID")) == 1


@pytest.mark.parametrize("given", ["", "x" * 65, "has space", "new\nline", "quote\"", "semi;colon", "ünïcode",
                                   "a/b"])
def test_a_malformed_client_id_is_replaced_by_a_fresh_one_never_refused(caplog, given):
    seen: list = []

    async def scenario():
        async with running(settings(), seen=seen) as (http, _):
            with caplog.at_level(logging.INFO, logger="api.access"):
                return await http.post("/predict", json={"text": "good"},
                                       headers=[(b"X-Request-ID", given.encode())])

    r = run(scenario())
    assert r.status_code == 200
    rid = r.headers["X-Request-ID"]
    assert HEX_ID.fullmatch(rid) and access_lines(caplog)[0].request_id == rid
    item, = seen
    assert item.client_request_id is None and item.request_id == rid


def test_the_longest_accepted_client_id_is_64_characters(caplog):
    async def scenario():
        async with running(settings(), worker=False) as (http, _):
            return await http.get("/healthz", headers={"X-Request-ID": "a" * 64})

    assert run(scenario()).headers["X-Request-ID"] == "a" * 64


def test_access_log_off_writes_no_line_but_ids_are_still_echoed(caplog):
    async def scenario():
        async with running(settings(access_log=False), worker=False) as (http, _):
            with caplog.at_level(logging.DEBUG):
                return await http.get("/healthz", headers={"X-Request-ID": "mine"})

    assert run(scenario()).headers["X-Request-ID"] == "mine"
    assert access_lines(caplog) == []


def test_the_client_is_what_the_trusted_proxy_appended_and_paths_cannot_forge_lines(caplog):
    async def scenario():
        async with running(settings(client_id_header="X-Forwarded-For"), worker=False) as (http, _):
            with caplog.at_level(logging.INFO, logger="api.access"):
                # The client sent the first value itself; the one proxy in front of the API appended the second.
                await http.get("/healthz", headers={"X-Forwarded-For": "203.0.113.9, 10.0.0.1"})
                await http.get("/a%0Afake%20line")  # a newline, once the path is percent-decoded

    run(scenario())
    first, second = access_lines(caplog)
    assert first.client == "10.0.0.1"
    assert "\n" not in second.message and second.path == "/a\\nfake line"


def scope(*headers: tuple[bytes, bytes], peer: str | None = "192.0.2.1") -> dict:
    return {"headers": list(headers), "client": (peer, 40000) if peer else None}


XFF = b"x-forwarded-for"


@pytest.mark.parametrize("values,hops,client", [
    ([b"203.0.113.9"], 1, "203.0.113.9"),  # one proxy, a client that sent nothing
    ([b"1.2.3.4, 5.6.7.8,203.0.113.9"], 1, "203.0.113.9"),  # whatever the client put in front is ignored
    ([b"1.2.3.4, 203.0.113.9, 10.0.0.2"], 2, "203.0.113.9"),  # two proxies: the outer one's value
    ([b"203.0.113.9, 10.0.0.2"], 2, "203.0.113.9"),  # exactly as many values as proxies
    ([b"10.0.0.2"], 2, "192.0.2.1"),  # fewer: it did not come through both proxies, the peer it is
    ([b"1.2.3.4", b"203.0.113.9"], 1, "203.0.113.9"),  # a proxy's own line counts as appended
    ([b"1.2.3.4, 5.6.7.8", b"203.0.113.9, 10.0.0.2"], 2, "203.0.113.9"),
    ([b"1.2.3.4, "], 1, "192.0.2.1"),  # an empty value names nobody: the peer
    ([], 1, "192.0.2.1"),  # no header: the peer
])
def test_the_client_identity_is_the_value_the_outermost_trusted_proxy_appended(values, hops, client):
    assert client_identity(scope(*[(XFF, v) for v in values], (b"x-other", b"9.9.9.9")), XFF, hops) == client


def test_without_a_header_configured_the_client_is_the_peer_and_none_when_unknown():
    assert client_identity(scope((XFF, b"203.0.113.9")), None, 1) == "192.0.2.1"
    assert client_identity(scope(peer=None), XFF, 1) is None
    assert identity_header("X-Forwarded-For") == XFF and identity_header(None) is None


def test_in_json_the_lines_fields_are_keys_of_their_own():
    import io
    import json

    from common.logs import JsonFormatter

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter("api"))
    access = logging.getLogger("api.access")
    access.addHandler(handler)  # this logger only: the process's logging is left as it is
    level = access.level
    access.setLevel(logging.INFO)

    async def scenario():
        async with running(settings()) as (http, _):
            await http.post("/predict/batch", json={"texts": ["a", "b"]}, headers={"X-Request-ID": "json-1"})

    try:
        run(scenario())
    finally:
        access.removeHandler(handler)
        access.setLevel(level)
    entry, = map(json.loads, out.getvalue().splitlines())
    assert {k: v for k, v in entry.items() if k not in ("time", "duration_ms", "message")} == {
        "level": "INFO", "process": "api", "logger": "api.access", "method": "POST", "path": "/predict/batch",
        "status": 200, "request_id": "json-1", "texts": 2, "client": "127.0.0.1"}
    assert isinstance(entry["duration_ms"], float) and entry["message"].startswith("POST /predict/batch 200 ")
