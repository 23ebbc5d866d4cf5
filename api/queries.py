"""From a validated request body (api/schemas.py) to what the model is asked — one ``Query`` per text — and from the
model's ranked labels back to the answer in the body's own shape. Shared by the API and the naive server, so both
speak the same API.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from common.options import DEFAULT_OPTIONS, NONE, RIGHT, Options, Query
from common.protocol import Prediction


class Form(enum.Enum):
    """The shape of a request, which decides the shape of its answer."""

    ONE = "one"  # {"text"}: {"label", "score"}, or with top_k the ranked list
    BATCH = "batch"  # {"texts"}: {"results": [...]}, each as ONE
    TEI = "tei"  # {"inputs": text or pair}: the ranked list of every label
    TEI_BATCH = "tei_batch"  # {"inputs": [[text], [text, pair], ...]}: a ranked list per input
    INFERENCE_API = "inference_api"  # {"inputs", "parameters"}: [a ranked list per input], even for one


@dataclass(slots=True)  # not frozen: built per request, and a frozen dataclass's __init__ costs ~3x
class Job:
    queries: list[Query]
    form: Form
    ranked: bool  # answer each text with its ranked labels (top_k was given), not its top label alone

    @property
    def options(self) -> Options:
        return self.queries[0].options  # one request, one set of options


def job_of(body: BaseModel) -> Job:
    """The queries a validated /predict or /predict/batch body asks for."""
    fields = type(body).__pydantic_fields__  # the class's own dict (model_fields is a computed property)
    if "inputs" in fields:
        return _tei_job(body)
    b: Any = body
    options = _options(b.top_k, b.function_to_apply, b.truncate, b.truncation_direction)
    ranked = "top_k" in body.model_fields_set
    if "texts" in fields:
        queries = [Query(t, None, options) if isinstance(t, str) else Query(t.text, t.text_pair, options)
                   for t in b.texts]
        return Job(queries, Form.BATCH, ranked)
    return Job([Query(b.text, b.text_pair, options)], Form.ONE, ranked)


def _options(top_k: int | None, function: str | None, truncate: bool, direction: str) -> Options:
    if top_k == 1 and function is None and truncate and direction == RIGHT:
        return DEFAULT_OPTIONS  # the common request: nothing to build or check
    return Options(top_k=top_k, function=function, truncate=truncate, truncation_side=direction.lower())


def _tei_job(body: Any) -> Job:
    """TEI's body, or the Hugging Face Inference API's (the same ``inputs``, with ``parameters``)."""
    truncate = True if body.truncate is None else body.truncate
    parameters = body.parameters
    top_k, function = None, NONE if body.raw_scores else None
    if parameters is not None:
        top_k, function = parameters.top_k, parameters.function_to_apply or function
    options = _options(top_k, function, truncate, body.truncation_direction)
    inputs = body.inputs
    if isinstance(inputs, str):
        queries, form = [Query(inputs, None, options)], Form.TEI
    elif all(isinstance(part, str) for part in inputs):  # [text] or [text, text_pair]
        queries, form = [_tei_query(inputs, options)], Form.TEI
    else:
        queries, form = [_tei_query(sequence, options) for sequence in inputs], Form.TEI_BATCH
    return Job(queries, Form.INFERENCE_API if parameters is not None else form, True)


def _tei_query(sequence: Sequence[str], options: Options) -> Query:
    return Query(sequence[0], sequence[1] if len(sequence) == 2 else None, options)


def _labels(ranked: list[Prediction]) -> list[dict[str, Any]]:
    return [{"label": p.label, "score": p.score} for p in ranked]


def _top(ranked: list[Prediction]) -> dict[str, Any]:
    return {"label": ranked[0].label, "score": ranked[0].score}


def answer(job: Job, answers: Sequence[list[Prediction]]) -> Any:
    """The JSON body answering ``job``: each text's ranked labels in the shape the request came in."""
    if job.form is Form.TEI:
        return _labels(answers[0])
    if job.form in (Form.TEI_BATCH, Form.INFERENCE_API):
        return [_labels(ranked) for ranked in answers]
    each = _labels if job.ranked else _top
    return each(answers[0]) if job.form is Form.ONE else {"results": [each(ranked) for ranked in answers]}
