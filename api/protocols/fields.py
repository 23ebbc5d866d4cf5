"""What the protocols' request models share: the text type with its checks, the truncation directions, the options
a body's fields turn into, and the labels every answer is made of."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, StrictStr

from common.options import DEFAULT_OPTIONS, RIGHT, TRUNCATION_SIDES, Options
from common.protocol import Prediction
from common.settings import InputLimits

# What counts as whitespace, spelled out once for both the check and the OpenAPI pattern: every character Python's
# str.isspace() accepts (U+0085 and U+001C-U+001F included, which JSON Schema's ECMA-262 \s lacks) plus U+FEFF
# (which \s has). Regex engines then agree on what the pattern means, so the schema says exactly what is enforced.
WHITESPACE = "\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
HAS_NON_WHITESPACE = f"[^{WHITESPACE}]"
_HAS_NON_WHITESPACE = re.compile(HAS_NON_WHITESPACE)
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


def text_type(limits: InputLimits) -> Any:
    """The type of one text under these limits (every protocol's texts, the Open Inference Protocol's BYTES elements
    included): the limit is in the type, so that OpenAPI states it and FastAPI enforces it before any queueing."""
    return Annotated[
        StrictStr,
        Field(min_length=1, max_length=limits.max_text_chars,
              description="Text to classify: at least one character that is not whitespace.",
              json_schema_extra={"pattern": HAS_NON_WHITESPACE}),
        AfterValidator(check_text),
    ]


def options(top_k: int | None, function: str | None, truncate: bool, direction: str) -> Options:
    """The pipeline's options a body asks for, whatever its protocol spells them as."""
    if top_k == 1 and function is None and truncate and direction == RIGHT:
        return DEFAULT_OPTIONS  # the common request: nothing to build or check
    return Options(top_k=top_k, function=function, truncate=truncate, truncation_side=direction.lower())


class PredictionOut(BaseModel):
    label: str = Field(description="A label, from the model's id2label (e.g. POSITIVE).", examples=["POSITIVE"])
    score: float = Field(description="Its score: a probability with softmax or sigmoid (the defaults of "
                         "classifiers), the raw logit with function_to_apply=none.", examples=[0.9987])


Ranked = list[PredictionOut]


# Answers are built as plain dicts, not PredictionOut (which only documents them): this runs for every text answered.
def labels_of(ranked: list[Prediction]) -> list[dict[str, Any]]:
    """A text's ranked labels, as answered."""
    return [{"label": p.label, "score": p.score} for p in ranked]


def top_of(ranked: list[Prediction]) -> dict[str, Any]:
    """A text's top label, as answered."""
    return {"label": ranked[0].label, "score": ranked[0].score}
