"""``POST /predict`` and the other body routes, for every registered protocol: the request models built per app, the
tagged union of the /predict bodies, and the routes, which hand each body's job to the server's way of answering
(the API's queue, or the naive server's model in-process)."""

# No `from __future__ import annotations`: FastAPI must resolve the request models, which are built per app from
# the configured limits, from the route signatures at definition time.

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any, Union

from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Discriminator, Tag

from api.errors import ErrorKind, error_responses
from api.protocols.direct import DirectBodyRoutes, JsonAnswer, is_json
from api.protocols.fields import check_json_values, json_values_limit, text_type
from api.protocols.spec import Answer, BodyRoute, Build, Job, Protocol, Shape
from common.settings import InputLimits

PREDICT_SUMMARY = "Classify a text, a pair or a batch (ours or TEI's shape)"


@dataclass(frozen=True)
class RequestModels:
    text: Any  # the type of one text (also the elements of the Open Inference Protocol's BYTES inputs)
    shapes: dict[str, Shape]  # POST /predict's bodies by their key, in registration order, dialects parsed
    predict: Any  # what POST /predict takes: exactly one of the shapes (a tagged union)
    job_of: Callable[[BaseModel], Job]  # a validated body of any shape -> its job
    answer_type: Any  # POST /predict's answers, for OpenAPI
    answers_doc: str
    routes: tuple[BodyRoute, ...]
    max_texts: int  # MAX_BATCH_TEXTS: what bounds a body's JSON values before it is parsed


def request_models(protocols: Sequence[Protocol], limits: InputLimits,
                   max_top_k: int | None = None) -> RequestModels:
    """The request bodies of ``protocols`` for these limits; ``max_top_k``: the model's labels, where known."""
    build = Build(limits, max_top_k, text_type(limits))
    dialects = [p.dialect for p in protocols if p.dialect is not None]
    added: dict[str, dict[str, Any]] = {}
    for dialect in dialects:
        added.setdefault(dialect.key, {}).update(dialect.fields(build))
    build = replace(build, added=added)
    shapes: dict[str, Shape] = {}
    for shape in (s for p in protocols if p.shapes is not None for s in p.shapes(build)):
        if shape.key in shapes:
            raise ValueError(f"two protocols' /predict bodies have the key {shape.key!r}")
        parsers = [d.job_of for d in dialects if d.key == shape.key]
        shapes[shape.key] = replace(shape, job_of=_with_dialects(shape.job_of, parsers))
    if not set(added) <= set(shapes):
        raise ValueError(f"a dialect extends a /predict body no protocol has: {sorted(set(added) - set(shapes))}")
    by_model = {shape.model: shape.job_of for shape in shapes.values()}
    answers = tuple(answer for p in protocols for answer in p.answers)
    return RequestModels(
        text=build.text, shapes=shapes, predict=_tagged_union(list(shapes.values())),
        job_of=lambda body: by_model[type(body)](body),  # the model FastAPI validated the body as says its shape
        answer_type=Union[answers],  # noqa: UP007 (a union of a tuple of types needs Union[])
        answers_doc="; ".join(p.answers_doc for p in protocols if p.answers_doc),
        routes=tuple(route for p in protocols for route in p.body_routes),
        max_texts=limits.max_batch_texts,
    )


def _with_dialects(job_of: Callable[[Any], Job], dialects: list[Callable[[Any], Job | None]]) -> Callable[[Any], Job]:
    """A body's parser: the first dialect that claims it, else its own protocol."""
    if not dialects:
        return job_of

    def parse(body: Any) -> Job:
        for dialect in dialects:
            job = dialect(body)
            if job is not None:
                return job
        return job_of(body)

    return parse


def _tagged_union(shapes: list[Shape]) -> Any:
    """Exactly one of ``shapes``, told apart by their keys, with an error that names them all."""
    helps = [shape.help for shape in shapes]
    listed = f"{', '.join(helps[:-1])} or {helps[-1]}" if len(helps) > 1 else helps[0]
    tagged = tuple(Annotated[shape.model, Tag(shape.key)] for shape in shapes)
    return Annotated[Union[tagged],  # noqa: UP007
                     Discriminator(_shape_of(tuple(shape.key for shape in shapes)), custom_error_type="body_shape",
                                   custom_error_message=f"the body needs exactly one of {listed}")]


def _shape_of(keys: tuple[str, ...]) -> Callable[[Any], str | None]:
    def shape(body: Any) -> str | None:
        """Which of the /predict shapes ``body`` is: the one of ``keys`` it has (None: not exactly one). Runs on
        every /predict, hence the plain code."""
        if isinstance(body, BaseModel):  # already validated (e.g. when FastAPI re-checks a parsed body)
            body = body.model_fields_set
        elif not isinstance(body, dict):
            return None
        found = None
        for key in keys:
            if key in body:
                if found is not None:
                    return None
                found = key
        return found

    return shape


def add_body_routes(app: FastAPI, models: RequestModels, answer: Answer, *, errors: Iterable[ErrorKind]) -> None:
    """POST /predict and the protocols' body routes, each handing its body's job to ``answer``, and the direct path
    to their JSON answers (api/protocols/direct.py). Added on the app itself: an included APIRouter adds a second
    layer of route matching to every request (FastAPI 0.165; seen in a profile of /predict)."""
    documented = error_responses(*errors)
    route_class = _bounded_route(models.max_texts)
    answers: dict[str, JsonAnswer] = {}

    def add(path: str, handler: Callable[..., Any], **kwargs: Any) -> None:
        # The router's add_api_route: it takes a route class.
        app.router.add_api_route(path, handler, methods=["POST"], response_model=None,
                                 route_class_override=route_class, **kwargs)
        answers[path] = app.router.routes[-1].json_answer  # type: ignore[attr-defined]

    add("/predict", _handler(models.predict, models.job_of, answer), name="predict", summary=PREDICT_SUMMARY,
        responses={200: {"description": models.answers_doc, "model": models.answer_type}, **documented})
    for route in models.routes:
        shape = models.shapes[route.key]
        add(route.path, _handler(shape.model, shape.job_of, answer), name=route.path.strip("/").replace("/", "_"),
            summary=route.summary,
            responses={200: {"model": route.answer, "description": route.answer_doc}, **documented})
    app.add_middleware(DirectBodyRoutes, answers=answers, exception_handlers=app.exception_handlers)


def _bounded_route(max_texts: int) -> type[APIRoute]:
    """Routes that parse and validate their JSON body themselves (``json_answer``), as FastAPI would without its
    per-request dependency solving. The same answer is what the direct path (api/protocols/direct.py) gives these
    routes' requests without going through FastAPI's router: the route itself answers what that path leaves to
    FastAPI."""

    class BoundedRoute(APIRoute):
        json_answer: JsonAnswer

        def get_route_handler(self) -> Callable[[Request], Any]:
            handle = super().get_route_handler()
            field, endpoint = self.body_field, self.endpoint
            if field is None or self.dependant.dependencies:
                # Dependencies (the app's or the route's) would be skipped by the JSON path.
                raise RuntimeError(f"{self.path}: a body route takes a body and no dependencies")
            self.json_answer = answer = json_answer(field, endpoint, max_texts)

            async def bounded(request: Request) -> Response:
                body = await request.body()  # read once: FastAPI's own read gets it from the request
                if is_json(request.headers.get("content-type")) and (response := await answer(request, body)):
                    return response
                return await handle(request)  # FastAPI's answers: its 415, its 422 for a missing body, ...

            return bounded

    return BoundedRoute


def json_answer(field: Any, endpoint: Callable[..., Any], max_texts: int) -> JsonAnswer:
    """What FastAPI does with a route's JSON body, without its per-request dependency solving (these routes take
    the body and the request, no dependencies): parse, validate as the body ``field``, the same errors, the
    ``endpoint``'s answer. First a body that holds more values than any request of at most ``max_texts`` texts is
    refused (fields.check_json_values): a JSON parser builds every value first, pydantic counts a list's items
    after. None: a body for FastAPI to answer (none at all, not UTF-8, nested deeper than the parser goes, ...)."""
    small = json_values_limit(max_texts)

    async def answer(request: Request, body: bytes) -> Response | None:
        if not body:
            return None
        if len(body) > small:  # a body of fewer bytes than values allowed needs no look
            check_json_values(body, max_texts)
        try:
            value = json.loads(body)
        except json.JSONDecodeError as error:
            raise RequestValidationError([{"type": "json_invalid", "loc": ("body", error.pos),
                                           "msg": "JSON decode error", "input": {},
                                           "ctx": {"error": error.msg}}], body=error.doc) from error
        except Exception:  # noqa: BLE001
            # FastAPI's own parse fails alike, and its answer is the documented one (api/errors.py), from the body
            # it reads again.
            return None
        parsed, errors = field.validate(value, {}, loc=("body",))
        if errors:
            raise RequestValidationError(errors, body=value)
        answered = await endpoint(parsed, request)
        # As FastAPI answers a route without a response model: a Response as it is, data as JSON.
        return answered if isinstance(answered, Response) else JSONResponse(jsonable_encoder(answered))

    return answer


def _handler(model: Any, job_of: Callable[[Any], Job], answer: Answer) -> Callable[..., Any]:
    async def handler(body: model, request: Request) -> Any:  # type: ignore[valid-type]
        return await answer(job_of(body), request)

    return handler
