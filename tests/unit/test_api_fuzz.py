"""Property-based fuzzing of the HTTP API: whatever a client sends, the answer is 200 or a documented 4xx
with the error shape, never a 5xx."""

import asyncio
import json

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from tests.unit.api_harness import running, settings

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    json_values.map(lambda v: json.dumps({"text": v}).encode()),
    json_values.map(lambda v: json.dumps({"texts": v}).encode()),
    st.lists(st.text(max_size=200), max_size=8).map(lambda t: json.dumps({"texts": t}).encode()),
    st.text(max_size=300).map(lambda t: json.dumps({"text": t}).encode()),
    st.binary(max_size=300),
)
DOCUMENTED = {200, 413, 415, 422}  # 415: a body sent as text/plain


@pytest.fixture(scope="module")
def api():
    runner = asyncio.Runner()
    context = running(settings(max_text_chars=100, max_batch_texts=5, max_body_bytes=4096))
    http, _ = runner.run(context.__aenter__())
    yield runner, http
    runner.run(context.__aexit__(None, None, None))
    runner.close()


@hyp_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, route=st.sampled_from(["/predict", "/predict/batch"]),
       content_type=st.sampled_from(["application/json", "text/plain", "application/json; charset=latin-1"]))
def test_any_body_gets_200_or_a_documented_4xx(api, body, route, content_type):
    runner, http = api
    response = runner.run(http.post(route, content=body, headers={"content-type": content_type}))
    assert response.status_code in DOCUMENTED, (response.status_code, response.text)
    payload = response.json()
    if response.status_code == 200:
        assert "label" in payload or "results" in payload
    else:
        assert set(payload) == {"error"} and payload["error"]["message"] and payload["error"]["type"]
