"""Request and response bodies. Request models are built from the configured input limits, so the
OpenAPI schema states the real limits and FastAPI enforces them before anything reaches the queue.

``POST /predict`` takes three shapes, told apart by which one of their keys the body has: ``text`` (one text, or
a pair with ``text_pair``), ``texts`` (a batch, as ``/predict/batch``) and ``inputs`` (text-embeddings-inference's
``/predict``). The pipeline's options (``top_k``, ``function_to_apply``) and truncation options come with ours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    Tag,
    create_model,
)

from common.options import FUNCTIONS, TRUNCATION_SIDES
from common.settings import InputLimits

# What counts as whitespace, spelled out once for both the check and the OpenAPI pattern: every character Python's
# str.isspace() accepts (U+0085 and U+001C-U+001F included, which JSON Schema's ECMA-262 \s lacks) plus U+FEFF
# (which \s has). Regex engines then agree on what the pattern means, so the schema says exactly what is enforced.
WHITESPACE = "\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
HAS_NON_WHITESPACE = f"[^{WHITESPACE}]"
_HAS_NON_WHITESPACE = re.compile(HAS_NON_WHITESPACE)
# The body keys that say which shape a /predict body is.
SHAPE_KEYS = ("text", "texts", "inputs")
# text-embeddings-inference spells the directions "Left" / "Right"; both spellings are taken.
DIRECTIONS = (*TRUNCATION_SIDES, *(side.capitalize() for side in TRUNCATION_SIDES))


def check_text(text: str) -> str:
    if not _HAS_NON_WHITESPACE.search(text):
        raise ValueError("text must contain at least one non-whitespace character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # JSON can carry lone surrogates ("\ud800") that no UTF-8 text can hold.
        raise ValueError("text is not valid Unicode (it contains a lone surrogate)") from None
    return text


class PredictionOut(BaseModel):
    label: str = Field(description="A label, from the model's id2label (e.g. POSITIVE).", examples=["POSITIVE"])
    score: float = Field(description="Its score: a probability with softmax or sigmoid (the defaults of "
                         "classifiers), the raw logit with function_to_apply=none.", examples=[0.9987])


Ranked = list[PredictionOut]


class BatchPredictionOut(BaseModel):
    results: list[PredictionOut | Ranked] = Field(
        description="One answer per input text, in input order: its top label, or with top_k its ranked labels.")


# Documented answers of /predict: ours (one text, or its ranked labels with top_k), the batch form's, TEI's.
PredictAnswer = PredictionOut | Ranked | BatchPredictionOut | list[Ranked]


def _options_fields(max_top_k: int | None) -> dict[str, Any]:
    """The pipeline's options and the truncation options, as fields of a request model."""
    return dict(
        top_k=(StrictInt | None, Field(1, ge=1, le=max_top_k, description=(
            "Answer this many labels, best first, as a list (null: every label). Absent: the top label alone, as "
            "an object (the pipeline's default). More than the model's labels: 422 (GET /info lists them)."),
            examples=[2])),
        function_to_apply=(Literal[FUNCTIONS] | None, Field(None, description=(  # type: ignore[valid-type]
            "What turns logits into scores: softmax, sigmoid or none (raw logits). Absent or null: the model's "
            "default, as the pipeline picks it: none for regression, sigmoid for multi-label models and models "
            "with one output, else softmax."))),
        truncate=(StrictBool, Field(True, description=(
            "Cut a text longer than the model's token limit (GET /info: max_input_length). false: such a text "
            "is refused with 422 instead."))),
        truncation_direction=(Literal[DIRECTIONS], Field("right", description=(  # type: ignore[valid-type]
            "Which end of a long text is cut."))),
    )


@dataclass(frozen=True)
class RequestModels:
    text: Any  # the type of one text (also the elements of the Open Inference Protocol's BYTES inputs)
    single: type[BaseModel]  # {"text"}
    batch: type[BaseModel]  # {"texts"}
    tei: type[BaseModel]  # {"inputs"}
    predict: Any  # what POST /predict takes: exactly one of the three (a tagged union)


def request_models(limits: InputLimits, *, max_top_k: int | None = None) -> RequestModels:
    """The request bodies for these limits; ``max_top_k``: the model's labels, where known."""
    text = Annotated[
        StrictStr,
        Field(min_length=1, max_length=limits.max_text_chars,
              description="Text to classify: at least one character that is not whitespace.",
              json_schema_extra={"pattern": HAS_NON_WHITESPACE}),
        AfterValidator(check_text),
    ]
    strict = ConfigDict(extra="forbid", json_schema_extra=None)
    pair_help = ("The second text of a pair (e.g. premise and hypothesis), tokenized with the first as one sequence. "
                 "A model not trained on pairs still answers: it reads the two joined by its separator token.")
    pair = create_model(
        "TextPair",
        __config__=strict,
        text=(text, ...),
        text_pair=(text | None, Field(None, description=pair_help)),
    )
    single = create_model(
        "PredictRequest",
        __config__=ConfigDict(extra="forbid", json_schema_extra={"examples": [
            {"text": "a charming and often affecting journey"},
            {"text": "a charming and often affecting journey", "top_k": None, "function_to_apply": "softmax"},
            {"text": "A man is playing a guitar.", "text_pair": "Someone makes music."}]}),
        text=(text, Field(examples=["a charming and often affecting journey"])),
        text_pair=(text | None, Field(None, description=pair_help)),
        **_options_fields(max_top_k),
    )
    batch = create_model(
        "PredictBatchRequest",
        __config__=ConfigDict(extra="forbid", json_schema_extra={"examples": [
            {"texts": ["great", "awful"]},
            {"texts": ["great", {"text": "A man plays.", "text_pair": "Nobody plays."}], "top_k": 2}]}),
        texts=(
            list[text | pair],  # type: ignore[valid-type]
            Field(min_length=1, max_length=limits.max_batch_texts,
                  description="Texts (or {text, text_pair} pairs) to classify; answers come in the same order."),
        ),
        **_options_fields(max_top_k),
    )
    tei_sequence = Annotated[list[text], Field(min_length=1, max_length=2)]  # [text] or [text, text_pair]
    inference_parameters = create_model(
        "InferenceParameters",
        __config__=strict,
        top_k=(StrictInt | None, Field(None, ge=1, le=max_top_k, description="Labels per input, best first; "
                                       "absent or null: every label.")),
        function_to_apply=(Literal[FUNCTIONS] | None, Field(None)),  # type: ignore[valid-type]
    )
    tei = create_model(
        "TeiPredictRequest",
        __config__=ConfigDict(extra="forbid", json_schema_extra={"examples": [
            {"inputs": "I like you."}, {"inputs": [["I like you."], ["Who am I?", "A pair."]], "raw_scores": True},
            {"inputs": "I like you.", "parameters": {"top_k": 1}}]}),
        inputs=(text | tei_sequence | Annotated[list[tei_sequence], Field(  # type: ignore[valid-type]
            min_length=1, max_length=limits.max_batch_texts)], Field(description=(
                "text-embeddings-inference's input: a text, a pair [text, text_pair], or a batch of [text] and "
                "[text, text_pair]. Answered with every label, sorted by score (a list per input for a batch)."))),
        raw_scores=(StrictBool, Field(False, description="Logits instead of the model's default function.")),
        truncate=(StrictBool | None, Field(None, description=(
            "Cut a text longer than the model's limit; false: refuse it with 422. Absent or null: cut, as TEI "
            "started with --auto-truncate."))),
        truncation_direction=(Literal[DIRECTIONS], Field("right")),  # type: ignore[valid-type]
        parameters=(inference_parameters | None, Field(None, description=(
            "The Hugging Face Inference API's task parameters (what huggingface_hub's "
            "InferenceClient.text_classification sends): with them, the answer is that API's, a list holding a "
            "ranked list per input ([[...]] for one text)."))),
    )
    predict = Annotated[
        Annotated[single, Tag("text")] | Annotated[batch, Tag("texts")] | Annotated[tei, Tag("inputs")],
        Discriminator(_shape, custom_error_type="body_shape",
                      custom_error_message="the body needs exactly one of 'text' (one text or pair), 'texts' (a "
                                           "batch) or 'inputs' (text-embeddings-inference's shape)"),
    ]
    return RequestModels(text=text, single=single, batch=batch, tei=tei, predict=predict)


def _shape(body: Any) -> str | None:
    """Which of the /predict shapes ``body`` is: the one of SHAPE_KEYS it has (None: not exactly one). Runs on
    every /predict, hence the plain code."""
    if isinstance(body, BaseModel):  # already validated (e.g. when FastAPI re-checks a parsed body)
        body = body.model_fields_set
    elif not isinstance(body, dict):
        return None
    found = None
    for key in SHAPE_KEYS:
        if key in body:
            if found is not None:
                return None
            found = key
    return found
