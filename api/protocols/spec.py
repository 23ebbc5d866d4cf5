"""What an HTTP protocol is to the service (as LitServe's "specs"): its bodies on ``POST /predict``, how a body
becomes the queries to classify, how their ranked labels become its answer, and its routes. Each protocol is one
module under api/protocols/ with one ``Protocol`` record; api/protocols/__init__.py registers them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from common.options import Options, Query
from common.protocol import Prediction
from common.settings import InputLimits

if TYPE_CHECKING:
    from fastapi import FastAPI, Request

    from api.settings import ApiSettings

# The texts' ranked labels, in query order -> the answer, in the request's protocol and shape.
Render = Callable[[Sequence[list[Prediction]]], Any]


@dataclass(slots=True)  # not frozen: built per request, and a frozen dataclass's __init__ costs ~3x
class Job:
    """What a request asks the model (one ``Query`` per text), and how to answer it."""

    queries: list[Query]
    render: Render  # chosen when the body is parsed: the protocol's, for this body's shape and options
    model: str | None = None  # the served name asked for (None: SERVED_MODEL_NAME, api/models.py)
    version: int | None = None  # the version asked for (None: the routing rule's), then the one it was routed to

    @property
    def options(self) -> Options:
        return self.queries[0].options  # one request, one set of options


# How a server answers a job on a body route: the API through the queue and the workers (api/handling.py), the
# naive server with its model in-process (naive/app.py).
Answer = Callable[[Job, "Request"], Awaitable[Any]]


@dataclass(frozen=True)
class Build:
    """What request models are built from, per app: the input limits (so that OpenAPI states them) and top_k's."""

    limits: InputLimits
    max_top_k: int | None  # the model's number of labels, where known when the app is built
    text: Any  # the type of one text under these limits (fields.text_type)
    added: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # dialects' fields, by the body's key


@dataclass(frozen=True)
class Shape:
    """One body ``POST /predict`` takes, told apart from the others by a key only it has."""

    key: str
    help: str  # how the error for a body of no shape names this one, e.g. "'texts' (a batch)"
    model: type[BaseModel]
    job_of: Callable[[Any], Job]  # a validated body -> its job


@dataclass(frozen=True)
class Dialect:
    """A protocol that speaks through another's /predict body, with fields of its own (the Hugging Face Inference
    API: text-embeddings-inference's body plus ``parameters``). The body's model gets its fields, and a body that
    sets them is this protocol's to parse."""

    key: str  # the body it extends
    fields: Callable[[Build], dict[str, Any]]  # pydantic field definitions, as create_model takes them
    job_of: Callable[[Any], Job | None]  # None: the body is not in this dialect (the other protocol parses it)


@dataclass(frozen=True)
class BodyRoute:
    """A POST route that takes one of its protocol's /predict bodies alone (ours: /predict/batch). The API and the
    naive server both serve it, each answering the job its own way."""

    path: str
    key: str  # the body: its Shape's key
    summary: str
    answer: Any  # the answer's type, for OpenAPI
    answer_doc: str


@dataclass(frozen=True)
class Protocol:
    name: str
    shapes: Callable[[Build], tuple[Shape, ...]] | None = None  # its bodies on POST /predict
    dialect: Dialect | None = None
    answers: tuple[Any, ...] = ()  # the types of its answers on POST /predict, for OpenAPI
    answers_doc: str = ""  # what they are, for OpenAPI ("": said by another's)
    body_routes: tuple[BodyRoute, ...] = ()
    # Routes of its own that only the API serves (they need its queue, e.g. the Open Inference Protocol's /v2).
    add_routes: Callable[[FastAPI, ApiSettings], None] | None = None
