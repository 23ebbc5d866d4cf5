"""Our JSON: ``{"text"}`` (one text, or a pair with ``text_pair``) and ``{"texts": [...]}`` (a batch, also on
``POST /predict/batch``), with the Hugging Face pipeline's options (``top_k``, ``function_to_apply``) and the
truncation options. Answered with the top label, or with ``top_k`` the ranked labels; a batch as ``{"results"}``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, create_model

from api.protocols.fields import DIRECTIONS, PredictionOut, Ranked, integer, labels_of, options, top_k_maximum, top_of
from api.protocols.spec import BodyRoute, Build, Job, Protocol, Shape
from common.keys import MODEL_NAME_MAX, MODEL_NAME_PATTERN
from common.options import FUNCTIONS, Query
from common.protocol import Prediction

ONE, BATCH = "text", "texts"  # the keys that tell the two bodies apart

PAIR_HELP = ("The second text of a pair (e.g. premise and hypothesis), tokenized with the first as one sequence. "
             "A model not trained on pairs still answers: it reads the two joined by its separator token.")


class BatchPredictionOut(BaseModel):
    results: list[PredictionOut | Ranked] = Field(
        description="One answer per input text, in input order: its top label, or with top_k its ranked labels.")


def _options_fields(max_top_k: int | None) -> dict[str, Any]:
    """The pipeline's options, the truncation options and the model, as fields of a request model."""
    return {
        "model": (Annotated[str, StringConstraints(pattern=MODEL_NAME_PATTERN, max_length=MODEL_NAME_MAX)] | None,
                  Field(None, description=(
                      "The served model to ask (SERVED_MODEL_NAME of its workers; GET /v2/models lists them), at the "
                      "highest version with a live worker. Absent: the API's default model. Never served: 404; "
                      "no live worker: 503."), examples=["sentimentalyzer"])),
        "top_k": (integer(ge=1, le=top_k_maximum(max_top_k)) | None, Field(1, description=(
            "Answer this many labels, best first, as a list (null: every label). Absent: the top label alone, as "
            "an object (the pipeline's default). More than the model's labels: 422 (GET /info lists them)."),
            examples=[2])),
        "function_to_apply": (Literal[FUNCTIONS] | None, Field(None, description=(  # type: ignore[valid-type]
            "What turns logits into scores: softmax, sigmoid or none (raw logits). Absent or null: the model's "
            "default, as the pipeline picks it: none for regression, sigmoid for multi-label models and models "
            "with one output, else softmax."))),
        "truncate": (StrictBool, Field(True, description=(
            "Cut a text longer than the model's token limit (GET /info: max_input_length). false: such a text "
            "is refused with 422 instead."))),
        "truncation_direction": (Literal[DIRECTIONS], Field("right", description=(  # type: ignore[valid-type]
            "Which end of a long text is cut."))),
    }


def _one_model(build: Build) -> type[BaseModel]:
    text = build.text
    return create_model(
        "PredictRequest",
        __config__=ConfigDict(extra="forbid", json_schema_extra={"examples": [
            {"text": "a charming and often affecting journey"},
            {"text": "a charming and often affecting journey", "function_to_apply": "softmax"},
            {"text": "A man is playing a guitar.", "text_pair": "Someone makes music."}]}),
        text=(text, Field(examples=["a charming and often affecting journey"])),
        text_pair=(text | None, Field(None, description=PAIR_HELP)),
        **_options_fields(build.max_top_k),
        **build.added.get(ONE, {}),
    )


def _batch_model(build: Build) -> type[BaseModel]:
    text = build.text
    pair = create_model(
        "TextPair",
        __config__=ConfigDict(extra="forbid"),
        text=(text, ...),
        text_pair=(text | None, Field(None, description=PAIR_HELP)),
    )
    return create_model(
        "PredictBatchRequest",
        __config__=ConfigDict(extra="forbid", json_schema_extra={"examples": [
            {"texts": ["great", "awful"]},
            {"texts": ["great", {"text": "A man plays.", "text_pair": "Nobody plays."}], "top_k": 2}]}),
        texts=(
            list[text | pair],  # type: ignore[valid-type]
            Field(min_length=1, max_length=build.limits.max_batch_texts,
                  description="Texts (or {text, text_pair} pairs) to classify; answers come in the same order."),
        ),
        **_options_fields(build.max_top_k),
        **build.added.get(BATCH, {}),
    )


# The four answers, chosen when the body is parsed. With top_k (even top_k=1) each text gets its ranked labels as a
# list, as the pipeline answers; without, its top label as an object.
def _top(answers: Sequence[list[Prediction]]) -> Any:
    return top_of(answers[0])


def _ranked(answers: Sequence[list[Prediction]]) -> Any:
    return labels_of(answers[0])


def _batch_top(answers: Sequence[list[Prediction]]) -> Any:
    return {"results": [top_of(ranked) for ranked in answers]}


def _batch_ranked(answers: Sequence[list[Prediction]]) -> Any:
    return {"results": [labels_of(ranked) for ranked in answers]}


def one_job(body: Any) -> Job:
    o = options(body.top_k, body.function_to_apply, body.truncate, body.truncation_direction)
    ranked = "top_k" in body.model_fields_set
    return Job([Query(body.text, body.text_pair, o)], _ranked if ranked else _top, model=body.model)


def batch_job(body: Any) -> Job:
    o = options(body.top_k, body.function_to_apply, body.truncate, body.truncation_direction)
    queries = [Query(t, None, o) if isinstance(t, str) else Query(t.text, t.text_pair, o) for t in body.texts]
    return Job(queries, _batch_ranked if "top_k" in body.model_fields_set else _batch_top, model=body.model)


def shapes(build: Build) -> tuple[Shape, ...]:
    return (Shape(ONE, "'text' (one text or pair)", _one_model(build), one_job),
            Shape(BATCH, "'texts' (a batch)", _batch_model(build), batch_job))


PROTOCOL = Protocol(
    name="ours",
    shapes=shapes,
    answers=(PredictionOut, Ranked, BatchPredictionOut),
    answers_doc="Ours: the top label, or with top_k the ranked labels; a batch (texts): {results}",
    body_routes=(BodyRoute("/predict/batch", BATCH, "Classify many texts (answers in input order)",
                           BatchPredictionOut, "One answer per text, in input order"),),
)
