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

from common.options import NONE, Options, Query
from common.protocol import Prediction


class Form(enum.Enum):
    """The shape of a request, which decides the shape of its answer."""

    ONE = "one"  # {"text"}: {"label", "score"}, or with top_k the ranked list
    BATCH = "batch"  # {"texts"}: {"results": [...]}, each as ONE
    TEI = "tei"  # {"inputs": text or pair}: the ranked list of every label
    TEI_BATCH = "tei_batch"  # {"inputs": [[text], [text, pair], ...]}: a ranked list per input
    INFERENCE_API = "inference_api"  # {"inputs", "parameters"}: [a ranked list per input], even for one


@dataclass(frozen=True, slots=True)
class Job:
    queries: list[Query]
    form: Form
    ranked: bool  # answer each text with its ranked labels (top_k was given), not its top label alone

    @property
    def options(self) -> Options:
        return self.queries[0].options  # one request, one set of options


def job_of(body: BaseModel) -> Job:
    """The queries a validated /predict or /predict/batch body asks for."""
    fields = body.model_dump()
    if "inputs" in fields:
        return _tei_job(fields)
    options = Options(top_k=fields["top_k"], function=fields["function_to_apply"], truncate=fields["truncate"],
                      truncation_side=fields["truncation_direction"].lower())
    ranked = "top_k" in body.model_fields_set
    if "texts" in fields:
        queries = [Query(t, None, options) if isinstance(t, str) else Query(t["text"], t["text_pair"], options)
                   for t in fields["texts"]]
        return Job(queries, Form.BATCH, ranked)
    return Job([Query(fields["text"], fields["text_pair"], options)], Form.ONE, ranked)


def _tei_job(fields: dict[str, Any]) -> Job:
    """TEI's body, or the Hugging Face Inference API's (the same ``inputs``, with ``parameters``)."""
    truncate = True if fields["truncate"] is None else fields["truncate"]
    parameters = fields["parameters"]
    top_k, function = None, NONE if fields["raw_scores"] else None
    if parameters is not None:
        top_k, function = parameters["top_k"], parameters["function_to_apply"] or function
    options = Options(top_k=top_k, function=function, truncate=truncate,
                      truncation_side=fields["truncation_direction"].lower())
    inputs = fields["inputs"]
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


def answer(job: Job, answers: Sequence[list[Prediction]]) -> Any:
    """The JSON body answering ``job``: each text's ranked labels in the shape the request came in."""
    if job.form is Form.TEI:
        return _labels(answers[0])
    if job.form in (Form.TEI_BATCH, Form.INFERENCE_API):
        return [_labels(ranked) for ranked in answers]
    each = ([_labels(ranked) for ranked in answers] if job.ranked
            else [{"label": ranked[0].label, "score": ranked[0].score} for ranked in answers])
    return each[0] if job.form is Form.ONE else {"results": each}
