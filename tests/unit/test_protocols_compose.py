"""The protocols as building blocks (api/protocols/): each one's bodies build without the others, and a /predict body
of no shape is told which shapes there are, in the registered order."""

import pytest

from api.protocols import PROTOCOLS
from api.protocols.predict import request_models as build_models
from tests.unit.api_harness import KEYS, run, running, settings

WITH_BODIES = [p for p in PROTOCOLS if p.shapes is not None]


@pytest.mark.parametrize("protocol", WITH_BODIES, ids=lambda p: p.name)
def test_a_protocols_bodies_build_and_parse_without_the_other_protocols(protocol):
    """Registering one protocol alone is a deployment choice: its bodies must not need another's dialect (TEI's
    body is the one the Inference API's dialect extends with ``parameters``)."""
    models = build_models((protocol,), settings())
    assert models.shapes
    for key, shape in models.shapes.items():
        assert "parameters" not in shape.model.model_json_schema()["properties"], key
        value = "good" if key in ("text", "inputs") else ["good"]
        assert models.job_of(shape.model(**{key: value})).queries[0].text == "good"


def test_a_body_of_no_shape_is_told_every_shape_in_the_registered_order():
    async def scenario():
        async with running(settings(), worker=False) as (http, client):
            r = await http.post("/predict", json={"txt": "a"})
            assert r.status_code == 422
            assert r.json()["error"]["message"] == (
                "body: the body needs exactly one of 'text' (one text or pair), 'texts' (a batch) or 'inputs' "
                "(text-embeddings-inference's shape)")
            assert await client.llen(KEYS.requests) == 0

    run(scenario())
