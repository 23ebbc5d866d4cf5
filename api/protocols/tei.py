"""text-embeddings-inference's ``POST /predict``: ``{"inputs": ...}``, a text, a pair ``[text, text_pair]`` or a batch
of ``[text]`` and ``[text, text_pair]``, answered with every label, ranked (a list per input for a batch). Its clients
(and TEI's own tests' bodies) work against the service unchanged."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, create_model

from api.protocols.fields import DIRECTIONS, Ranked, labels_of, options
from api.protocols.spec import Build, Job, Protocol, Shape
from common.options import NONE, Options, Query
from common.protocol import Prediction

KEY = "inputs"


def _model(build: Build) -> type[BaseModel]:
    text = build.text
    sequence = Annotated[list[text], Field(min_length=1, max_length=2)]  # [text] or [text, text_pair]
    return create_model(
        "TeiPredictRequest",
        __config__=ConfigDict(extra="forbid", json_schema_extra={"examples": [
            {"inputs": "I like you."}, {"inputs": [["I like you."], ["Who am I?", "A pair."]], "raw_scores": True},
            {"inputs": "I like you.", "parameters": {"top_k": 1}}]}),
        inputs=(text | sequence | Annotated[list[sequence], Field(  # type: ignore[valid-type]
            min_length=1, max_length=build.limits.max_batch_texts)], Field(description=(
                "text-embeddings-inference's input: a text, a pair [text, text_pair], or a batch of [text] and "
                "[text, text_pair]. Answered with every label, sorted by score (a list per input for a batch)."))),
        raw_scores=(StrictBool, Field(False, description="Logits instead of the model's default function.")),
        truncate=(StrictBool | None, Field(None, description=(
            "Cut a text longer than the model's limit; false: refuse it with 422. Absent or null: cut, as TEI "
            "started with --auto-truncate."))),
        truncation_direction=(Literal[DIRECTIONS], Field("right")),  # type: ignore[valid-type]
        **build.added.get(KEY, {}),
    )


def queries_of(body: Any, top_k: int | None, function: str | None) -> tuple[list[Query], bool]:
    """The queries of a body in this shape with these pipeline options (also the Hugging Face Inference API's, whose
    body this is plus ``parameters``), and whether its inputs are a batch."""
    truncate = True if body.truncate is None else body.truncate  # absent: cut, as TEI with --auto-truncate
    o = options(top_k, function, truncate, body.truncation_direction)
    inputs = body.inputs
    if isinstance(inputs, str):
        return [Query(inputs, None, o)], False
    if all(isinstance(part, str) for part in inputs):  # [text] or [text, text_pair]
        return [_query(inputs, o)], False
    return [_query(sequence, o) for sequence in inputs], True


def _query(sequence: Sequence[str], o: Options) -> Query:
    return Query(sequence[0], sequence[1] if len(sequence) == 2 else None, o)


def ranked_one(answers: Sequence[list[Prediction]]) -> Any:
    return labels_of(answers[0])


def ranked_each(answers: Sequence[list[Prediction]]) -> Any:
    return [labels_of(ranked) for ranked in answers]


def job_of(body: Any) -> Job:
    queries, batch = queries_of(body, None, NONE if body.raw_scores else None)  # every label
    return Job(queries, ranked_each if batch else ranked_one)


def shapes(build: Build) -> tuple[Shape, ...]:
    return (Shape(KEY, "'inputs' (text-embeddings-inference's shape)", _model(build), job_of),)


PROTOCOL = Protocol(
    name="text-embeddings-inference",
    shapes=shapes,
    answers=(Ranked, list[Ranked]),
    answers_doc="text-embeddings-inference's (inputs): every label ranked, a list per input for a batch",
)
