"""API_KEY: every route but the probes and the docs needs it, a caller without it gets 401 before anything looks at
its request, the OpenAPI document says so route by route, and a key no client could send is refused at start."""

import gzip
import re
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.routing import Mount, Route

from api.app import create_app
from api.auth import document_api_key
from api.errors import ErrorResponse, OipErrorResponse
from api.settings import ApiSettings
from common.settings import error_lines
from tests.unit.api_harness import run, running, settings

KEY = "s3cret"
GOOD = {"Authorization": f"Bearer {KEY}"}
# What the docs (docs/http-api.md, API_KEY's description) name as open: the probes and the documentation pages.
PROBES = {"/healthz", "/readyz", "/health", "/v2/health/live", "/v2/health/ready"}
DOCS = {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/static-offline-docs"}
INFER = "/v2/models/sentimentalyzer/infer"
HTTP_API_DOC = Path(__file__).parents[2] / "docs" / "http-api.md"


def requests_for_every_route(app) -> list[tuple[str, str, str]]:
    """(method, the route's path as registered, a path that reaches it) for every route and method of ``app``."""
    served = {"model": "sentimentalyzer", "version": "1"}
    calls = []
    for route in app.routes:
        if isinstance(route, Mount):  # the docs' assets
            calls.append(("GET", route.path, f"{route.path}/swagger-ui.css"))
        elif isinstance(route, APIRoute | Route):
            path = re.sub(r"\{(\w+)\}", lambda m: served[m.group(1)], route.path)
            calls.extend((method, route.path, path) for method in sorted(route.methods - {"HEAD"}))
        else:  # a kind of route this test does not know how to call: teach it
            raise AssertionError(f"unexpected route {route!r}")
    return calls


def test_every_route_but_the_probes_and_docs_needs_the_key():
    # Every route the app has, as registered: a route added later without the key's guard fails here.
    async def scenario():
        async with running(settings(api_key=KEY)) as (http, _):
            opened, guarded = set(), set()
            for method, route, path in requests_for_every_route(create_app(settings(api_key=KEY))):
                without = await http.request(method, path, content=b"{", headers={"Content-Type": "application/json"})
                assert (without.status_code == 401) == (route not in PROBES | DOCS), (method, path, without.status_code)
                (guarded if without.status_code == 401 else opened).add(route)
                with_key = await http.request(method, path, content=b"{}",
                                              headers={**GOOD, "Content-Type": "application/json"})
                assert with_key.status_code != 401, (method, path)
            assert opened == PROBES | DOCS  # each documented open route exists (a renamed one is noticed)
            assert {"/predict", "/info", "/metrics", "/v2", "/v2/models/{model}", "/v2/models/{model}/config",
                    "/v2/models/{model}/versions/{version}", "/v2/models/{model}/ready"} <= guarded

    run(scenario())


def test_the_docs_name_exactly_the_open_routes():
    text = HTTP_API_DOC.read_text()
    paragraph = next(part for part in text.split("\n\n") if part.startswith("With `API_KEY` set"))
    named = set(re.findall(r"`(/[^`\s]*)`", paragraph.split("Every other route")[0]))  # what it calls open
    assert named == PROBES | DOCS - {"/docs/oauth2-redirect", "/static-offline-docs"}, named


# Bodies each route would refuse with 422, 413 or 415 after reading them: without the key, 401 comes first.
BAD_BODIES = [
    ("/predict", b'{"text": "go', {}),  # malformed JSON: ours
    ("/predict", b'{"inputs": ["a", "b"', {}),  # TEI's shape
    ("/predict", b'{"inputs": "a", "parameters": {"top_k": 1e400', {}),  # the Inference API's
    ("/predict", b'{"inputs": "a", "parameters": {"top_k": "many"}}', {}),  # well-formed, schema-invalid
    ("/predict/batch", b'{"texts": [' + b"1," * 300 + b"1]}", {}),  # more JSON values than any call holds
    ("/predict", b"not gzip", {"Content-Encoding": "gzip"}),
    ("/predict", gzip.compress(b'{"text": "good"}'), {"Content-Encoding": "br"}),  # a coding not read: 415
    ("/predict", b'{"text": "good"}', {"Content-Type": "text/plain"}),  # not JSON: 415
    ("/predict", b"x" * 5000, {}),  # over MAX_BODY_BYTES (4096 here): 413
    (INFER, b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"', {}),
    (INFER, b'{"inputs": []}' + b"\0" * 8, {"Inference-Header-Content-Length": "99"}),  # a binary header that lies
    ("/v2/models/sentimentalyzer/versions/1/infer", b"[", {"Content-Type": "application/octet-stream"}),
]


@pytest.mark.parametrize("path,body,headers", BAD_BODIES, ids=[f"{p}-{i}" for i, (p, _, _) in enumerate(BAD_BODIES)])
def test_a_caller_without_the_key_gets_401_before_its_body_is_looked_at(path, body, headers):
    async def scenario():
        async with running(settings(api_key=KEY)) as (http, _):
            sent = {"Content-Type": "application/json", **headers}
            for auth in ({}, {"Authorization": "Bearer wrong"}):
                r = await http.post(path, content=body, headers={**sent, **auth})
                assert r.status_code == 401, (auth, r.status_code, r.text[:200])
                assert r.headers["WWW-Authenticate"] == "Bearer"
                message = "missing or wrong API key (Authorization: Bearer <key>)"
                assert r.json() == ({"error": message} if path.startswith("/v2") else
                                    {"error": {"type": "unauthorized", "message": message}})
            r = await http.post(path, content=body, headers={**sent, **GOOD})
            assert r.status_code in (413, 415, 422), r.status_code  # the key held: the body's own refusal

    run(scenario())


@pytest.mark.parametrize("authorization,status", [("Bearer s3cret", 200), ("bearer s3cret", 200),
                                                  ("Bearer  s3cret ", 200), ("Basic s3cret", 401), ("s3cret", 401),
                                                  ("Bearer s3cre", 401), ("Bearer s3cret!", 401),
                                                  ("Bearer s 3cret", 401), ("Bearer", 401), ("", 401)])
def test_the_key_is_the_bearer_token_exactly(authorization, status):
    async def scenario():
        async with running(settings(api_key=KEY)) as (http, _):
            r = await http.post("/predict", json={"text": "good"}, headers={"Authorization": authorization})
            assert r.status_code == status

    run(scenario())


def _operations(openapi):
    for path, item in openapi["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def _refs(node):
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_the_openapi_document_states_the_key_on_every_guarded_operation():
    async def scenario():
        async with running(settings(api_key=KEY), worker=False) as (http, _):
            openapi = (await http.get("/openapi.json")).json()
        assert openapi["components"]["securitySchemes"] == {"HTTPBearer": {"type": "http", "scheme": "bearer"}}
        for path, method, operation in _operations(openapi):
            if path in PROBES:
                assert "security" not in operation and "401" not in operation["responses"], path
                continue
            assert operation["security"] == [{"HTTPBearer": []}], (method, path)
            shape = "OipErrorResponse" if path.startswith("/v2") else "ErrorResponse"
            schema = operation["responses"]["401"]["content"]["application/json"]["schema"]
            assert schema == {"$ref": f"#/components/schemas/{shape}"}, (method, path)
        schemas = openapi["components"]["schemas"]
        assert all(ref.removeprefix("#/components/schemas/") in schemas for ref in _refs(openapi))

    run(scenario())


def test_the_key_is_stated_with_its_error_schemas_even_where_no_other_response_uses_them():
    openapi = {"openapi": "3.1.0", "paths": {"/healthz": {"get": {"responses": {}}},
                                             "/v2/models/{model}": {"get": {"responses": {}}},
                                             "/info": {"get": {"responses": {}}}}}
    document_api_key(openapi)
    schemas = openapi["components"]["schemas"]
    assert {"ErrorResponse", "OipErrorResponse", "ErrorBody", "ErrorKind"} <= set(schemas)
    assert schemas["OipErrorResponse"]["properties"] == OipErrorResponse.model_json_schema()["properties"]
    assert set(schemas["ErrorResponse"]["properties"]) == set(ErrorResponse.model_fields)
    assert "security" not in openapi["paths"]["/healthz"]["get"]
    assert openapi["paths"]["/info"]["get"]["security"] == [{"HTTPBearer": []}]


@pytest.mark.parametrize("key", ["clé-secrète", "s3cret\u00a0", "パスワード", "two words", "tab\tkey", "nul\0",
                                 "del\x7f", " leading"])
def test_a_key_no_client_could_send_is_refused_at_start_with_the_fix(key):
    with pytest.raises(ValidationError) as refused:
        ApiSettings(api_key=key)
    [line] = error_lines(ApiSettings, refused.value)
    assert line.startswith("invalid setting API_KEY=<hidden>: ")
    assert "visible ASCII characters (! to ~" in line and "Fix: set API_KEY to such a key" in line
    assert key not in line


@pytest.mark.parametrize("key", ["s3cret", "A-Za-z0-9._~+/=", "!\"#$%&'()*,:;<>?@[\\]^`{|}"])
def test_a_key_of_visible_ascii_is_taken_and_works(key):
    assert ApiSettings(api_key=key).api_key == key

    async def scenario():
        async with running(settings(api_key=key)) as (http, _):
            r = await http.post("/predict", json={"text": "good"}, headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200

    run(scenario())


def test_the_guard_keeps_the_errors_json_shape_for_other_verbs():
    async def scenario():
        async with running(settings(api_key=KEY)) as (http, _):
            r = await http.delete("/predict")  # wrong method too: the key first (405 with it)
            assert r.status_code == 401 and r.json()["error"]["type"] == "unauthorized"
            assert (await http.delete("/predict", headers=GOOD)).status_code == 405
            assert (await http.get("/nowhere")).status_code == 401  # no route map for callers without the key
            assert (await http.get("/nowhere", headers=GOOD)).json()["error"]["type"] == "not_found"

    run(scenario())
