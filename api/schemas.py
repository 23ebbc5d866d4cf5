"""Request and response bodies. Request models are built from the configured input limits, so the
OpenAPI schema states the real limits and FastAPI enforces them before anything reaches the queue."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr, create_model

from common.settings import InputLimits

# What counts as whitespace, spelled out once for both the check and the OpenAPI pattern: every character Python's
# str.isspace() accepts (U+0085 and U+001C-U+001F included, which JSON Schema's ECMA-262 \s lacks) plus U+FEFF
# (which \s has). Regex engines then agree on what the pattern means, so the schema says exactly what is enforced.
WHITESPACE = "\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
HAS_NON_WHITESPACE = f"[^{WHITESPACE}]"
_HAS_NON_WHITESPACE = re.compile(HAS_NON_WHITESPACE)


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
    label: str = Field(description="Top label, from the model's id2label (e.g. POSITIVE).", examples=["POSITIVE"])
    score: float = Field(description="Probability of that label (softmax).", ge=0, le=1, examples=[0.9987])


class BatchPredictionOut(BaseModel):
    results: list[PredictionOut] = Field(description="One result per input text, in input order.")


@dataclass(frozen=True)
class RequestModels:
    single: type[BaseModel]
    batch: type[BaseModel]


def request_models(limits: InputLimits) -> RequestModels:
    text = Annotated[
        StrictStr,
        Field(min_length=1, max_length=limits.max_text_chars,
              description="Text to classify: at least one character that is not whitespace.",
              json_schema_extra={"pattern": HAS_NON_WHITESPACE}),
        AfterValidator(check_text),
    ]
    strict = ConfigDict(extra="forbid", json_schema_extra=None)
    single = create_model(
        "PredictRequest",
        __config__=strict,
        text=(text, Field(examples=["a charming and often affecting journey"])),
    )
    batch = create_model(
        "PredictBatchRequest",
        __config__=strict,
        texts=(
            list[text],
            Field(min_length=1, max_length=limits.max_batch_texts,
                  description="Texts to classify; answers come in the same order."),
        ),
    )
    return RequestModels(single=single, batch=batch)
