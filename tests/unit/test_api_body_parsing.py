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


# MAX_BATCH_TEXTS=300 lets ~1,200 JSON values through the count before parsing (fields.check_json_values): enough
# for bodies the parser itself gives up on.
ROOMY = dict(max_batch_texts=300, max_queue_depth=1000, max_in_flight=600, max_body_bytes=65536)
PARSER_LIMITS = [b"[" * 1000 + b"]" * 1000, b'{"text": "a", "top_k": ' + b"9" * 4400 + b"}"]


def plain_route(limits):
    """POST /plain: the same body model as POST /predict, parsed and validated by FastAPI itself."""
    models = request_models(limits)

    async def plain(body: models.predict, request: Request):  # type: ignore[valid-type]
        return await classify(models.job_of(body), request)

    def add(app: FastAPI) -> None:
        app.router.add_api_route("/plain", plain, methods=["POST"], response_model=None)

    return add


async def compare(http, bodies, content_type):
    headers = {"content-type": content_type} if content_type else {}
    for body in bodies:
        ours = await http.post("/predict", content=body, headers=headers)
        plain = await http.post("/plain", content=body, headers=headers)
        assert ours.status_code == plain.status_code, (body[:80], content_type, ours.text, plain.text)
        assert ours.json() == plain.json(), (body[:80], content_type)
        assert ours.status_code < 500, body[:80]


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "application/vnd.x+json", "application/a/b+json", "text/plain", None])
def test_every_body_gets_the_answer_fastapi_itself_gives(content_type):
    async def scenario():
        async with running(settings(), extend=plain_route(settings())) as (http, _):
            await compare(http, [*BODIES, b""], content_type)

    run(scenario())


def test_bodies_the_json_parser_gives_up_on_get_fastapi_s_answer_not_a_500():
    async def scenario():
        async with running(settings(**ROOMY), extend=plain_route(settings(**ROOMY))) as (http, _):
            await compare(http, PARSER_LIMITS, "application/json")

    run(scenario())
