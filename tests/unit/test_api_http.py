"""HTTP conventions clients expect: 415 for a JSON route's body not sent as JSON, CORS for the origins allowed
(CORS_ALLOW_ORIGINS) and none without, text-embeddings-inference's GET /health, and every new status documented."""

import pytest

from api.cors import EXPOSED_HEADERS
from tests.unit.api_harness import KEYS, run, running, settings
from tests.unit.test_api_shapes import ready

BODY = b'{"text": "good"}'
ORIGIN = "https://app.example.com"
OIP_INFER = "/v2/models/sentimentalyzer/infer"


def preflight(method: str = "POST", headers: str = "content-type,authorization") -> dict[str, str]:
    return {"Origin": ORIGIN, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers}


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
def test_a_json_body_not_sent_as_json_is_415_naming_the_fix(path, content_type):
    """curl -d sends the form type; no Content-Type at all is refused too (api/errors.py says why)."""

    async def scenario():
        async with running(settings()) as (http, client):
            headers = {"content-type": content_type} if content_type else {}
            r = await http.post(path, content=BODY, headers=headers)
            assert r.status_code == 415, r.text
            error = r.json()["error"]
            assert error["type"] == "unsupported_media_type"
            assert error["message"].endswith("send Content-Type: application/json")
            assert (repr(content_type) if content_type else "without a Content-Type") in error["message"]
            assert await client.llen(KEYS.requests) == 0
            assert (await http.post("/predict", json={"text": "good"})).status_code == 200

    run(scenario())


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON", "application/vnd.api+json"])
def test_json_content_types_with_parameters_or_a_json_suffix_are_json(content_type):
    async def scenario():
        async with running(settings()) as (http, _):
            r = await http.post("/predict", content=BODY, headers={"content-type": content_type})
            assert r.status_code == 200 and r.json()["label"] == "POSITIVE"

    run(scenario())


def test_json_errors_stay_422_and_an_empty_body_of_another_type_is_a_missing_body():
    async def scenario():
        async with running(settings()) as (http, _):
            r = await http.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
            assert r.status_code == 422 and r.json()["error"]["message"] == "request body is not valid JSON"
            r = await http.post("/predict", content=b"", headers={"content-type": "text/plain"})
            assert r.status_code == 422 and r.json()["error"]["type"] == "validation"
            assert (await http.post("/predict", json={"text": "good"})).status_code == 200

    run(scenario())


def test_open_inference_protocol_infer_keeps_taking_binary_bodies_of_any_type():
    async def scenario():
        async with running(settings()) as (http, _):
            body = b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["good"]}]}'
            for content_type in ("application/octet-stream", "application/json", None):
                headers = {"content-type": content_type} if content_type else {}
                r = await http.post(OIP_INFER, content=body, headers=headers)
                assert r.status_code == 200 and r.json()["outputs"][0]["data"] == ["POSITIVE"], content_type

    run(scenario())


@pytest.mark.parametrize("origins,allowed", [(ORIGIN, ORIGIN), (f"http://localhost:3000, {ORIGIN}", ORIGIN),
                                             ("*", "*")])
def test_cors_answers_preflights_and_marks_answers_for_the_origins_allowed(origins, allowed):
    async def scenario():
        async with running(settings(cors_allow_origins=origins, api_key="k")) as (http, _):
            headers = "content-type,authorization,x-request-id,inference-header-content-length,content-encoding"
            r = await http.options("/predict", headers=preflight(headers=headers))
            assert r.status_code == 200
            assert r.headers["access-control-allow-origin"] == allowed
            assert r.headers["access-control-allow-methods"] == "GET, POST"
            r = await http.post("/predict", json={"text": "good"},
                                headers={"Origin": ORIGIN, "Authorization": "Bearer k"})
            assert r.status_code == 200 and r.headers["access-control-allow-origin"] == allowed
            assert r.headers["access-control-expose-headers"] == ", ".join(EXPOSED_HEADERS)
            refused = await http.post("/predict", content=BODY, headers={"Origin": ORIGIN})  # errors: readable too
            assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == allowed

    run(scenario())


def test_cors_refuses_other_origins_methods_and_headers():
    async def scenario():
        async with running(settings(cors_allow_origins=ORIGIN)) as (http, _):
            other = await http.options("/predict", headers={**preflight(), "Origin": "https://evil.example"})
            assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
            assert (await http.options("/predict", headers=preflight(method="DELETE"))).status_code == 400
            assert (await http.options("/predict", headers=preflight(headers="x-secret"))).status_code == 400
            r = await http.post("/predict", json={"text": "good"}, headers={"Origin": "https://evil.example"})
            assert r.status_code == 200 and "access-control-allow-origin" not in r.headers

    run(scenario())


def test_without_cors_origins_a_preflight_is_405_and_answers_carry_no_cors_headers():
    async def scenario():
        async with running(settings()) as (http, _):
            r = await http.options("/predict", headers=preflight())
            assert r.status_code == 405 and r.headers["allow"] == "POST"
            r = await http.post("/predict", json={"text": "good"}, headers={"Origin": ORIGIN})
            assert r.status_code == 200 and not any(h.startswith("access-control") for h in r.headers)

    run(scenario())


def test_cors_origins_must_be_origins():
    from pydantic import ValidationError

    for bad in ("https://app.example.com/", "app.example.com", f"{ORIGIN},,", "https://a.com/path"):
        with pytest.raises(ValidationError):
            settings(cors_allow_origins=bad)
    assert settings(cors_allow_origins="").cors_allow_origins is None  # compose's empty: unset


def test_health_is_text_embeddings_inferences_an_empty_200_while_a_worker_can_answer():
    async def scenario():
        async with running(settings()) as (http, _):
            await ready(http)  # the fake worker's first heartbeat
            r = await http.get("/health")
            assert r.status_code == 200 and r.content == b""
        async with running(settings(), worker=False) as (http, _):
            r = await http.get("/health")
            assert r.status_code == 503 and r.json()["error"]["type"] == "unavailable"
            assert r.headers["retry-after"] == "1"

    run(scenario())


def test_openapi_documents_the_new_statuses_and_routes():
    async def scenario():
        async with running(settings()) as (http, _):
            paths = (await http.get("/openapi.json")).json()["paths"]
            for path in ("/predict", "/predict/batch", "/v2/models/{model}/infer"):
                responses = paths[path]["post"]["responses"]
                assert {"413", "415", "422"} <= set(responses), path
            health = paths["/health"]["get"]["responses"]
            assert set(health) == {"200", "503"} and "content" not in health["200"]

    run(scenario())


def test_the_naive_server_takes_gzip_bodies_and_answers_415_alike():
    import gzip

    import httpx

    from naive.app import create_naive_app
    from naive.settings import NaiveSettings
    from tests.unit.fakes import FakePredictor

    async def scenario():
        app = create_naive_app(NaiveSettings(max_body_bytes=4096), FakePredictor())
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://naive") as http:
            plain = await http.post("/predict", content=BODY, headers={"content-type": "application/json"})
            zipped = await http.post("/predict", content=gzip.compress(BODY),
                                     headers={"content-type": "application/json", "content-encoding": "gzip"})
            assert plain.status_code == zipped.status_code == 200 and zipped.json() == plain.json()
            r = await http.post("/predict", content=BODY, headers={"content-type": "text/plain"})
            assert r.status_code == 415 and r.json()["error"]["type"] == "unsupported_media_type"
            responses = (await http.get("/openapi.json")).json()["paths"]["/predict"]["post"]["responses"]
            assert "415" in responses and "404" in responses
            # One model: the default name or none; any other name is no model of it.
            named = await http.post("/predict", json={"text": "good", "model": "sentimentalyzer"})
            assert named.status_code == 200 and named.json() == plain.json()
            other = await http.post("/predict", json={"text": "good", "model": "alpha"})
            assert other.status_code == 404 and "no model 'alpha' here" in other.json()["error"]["message"]

    run(scenario())
