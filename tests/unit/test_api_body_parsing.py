"""The body routes parse and validate a JSON body themselves (api/protocols/predict.py: no per-request dependency
solving): every body gets the answer FastAPI's own route for the same request model gives it."""

# No `from __future__ import annotations`: FastAPI resolves the plain route's body model from its signature.

import pytest
from fastapi import FastAPI, Request

from api.handling import classify
from api.protocols import request_models
from tests.unit.api_harness import run, running, settings

TOO_LONG = "x" * 101  # settings(): MAX_TEXT_CHARS=100
BODIES = [
    b'{"text": "good"}',
    b'{"text": "good", "top_k": 2, "function_to_apply": "sigmoid"}',
    b'{"texts": ["good", {"text": "a", "text_pair": "b"}], "top_k": null}',
    b'{"inputs": "good"}',
    b'{"inputs": ["good", "bad"], "parameters": {"top_k": 2}}',
    b'{"text": 5}', b'{"text": ""}', b'{"text": "' + TOO_LONG.encode() + b'"}', b'{"text": null}',
    b'{"texts": []}', b'{"texts": [1]}', b'{"texts": ["a", "b", "c", "d", "e", "f"]}',
    b'{"text": "a", "texts": ["b"]}', b'{}', b'[]', b'"good"', b'null', b'3',
    b'{"text": "a", "top_k": 0}', b'{"text": "a", "unknown": 1}', b'{"text": "a", "truncate": "yes"}',
    b'{"text": "a", "function_to_apply": "tanh"}', b'{"text": "good", "text_pair": 7}',
    b'{', b'{"text": "a"', b'{"text": "a"} x', b'\xef\xbb\xbf{"text": "good"}', b'{"text": "\xff"}',
    b'\xff\xfe{\x00}\x00', b'{"text": "\\ud800"}', b'{"text": NaN}',
]


def with_plain_route(app: FastAPI) -> None:
    """POST /plain: the same body model as POST /predict, parsed and validated by FastAPI itself."""
    models = request_models(settings())

    async def plain(body: models.predict, request: Request):  # type: ignore[valid-type]
        return await classify(models.job_of(body), request)

    app.router.add_api_route("/plain", plain, methods=["POST"], response_model=None)


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8"])
def test_every_body_gets_the_answer_fastapi_itself_gives(content_type):
    async def scenario():
        async with running(settings(), extend=with_plain_route) as (http, _):
            for body in BODIES:
                ours = await http.post("/predict", content=body, headers={"content-type": content_type})
                plain = await http.post("/plain", content=body, headers={"content-type": content_type})
                assert ours.status_code == plain.status_code, (body, ours.text, plain.text)
                assert ours.json() == plain.json(), body
                assert ours.status_code < 500, body

    run(scenario())
