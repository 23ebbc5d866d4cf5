"""What the protocols' request models share: the text type with its checks, the integer type and top_k's maximum,
the truncation directions, the options a body's fields turn into, the labels every answer is made of, and the count
of a JSON body's values that refuses a hostile one before it is parsed."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, StrictInt, StrictStr

from api.errors import ErrorKind, ServiceError
from common.options import DEFAULT_OPTIONS, MAX_TOP_K, RIGHT, TRUNCATION_SIDES, Options
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


def _integral(value: Any) -> Any:
    """A float without a fraction (``1.0``) as the integer it is; anything else as it came, for StrictInt to judge."""
    return int(value) if type(value) is float and value.is_integer() else value


def integer(*, ge: int | None = None, le: int | None = None) -> Any:
    """An integer from ``ge`` to ``le`` as JSON Schema counts integers (what the OpenAPI document's "integer"
    means): 1.0 is one, 1.5, "1" and true are not. Every integer a request body carries has this type, so that the
    schema and the behaviour agree. (The bounds go inside: on the outside pydantic cannot state them in the schema.)"""
    return Annotated[StrictInt, Field(ge=ge, le=le), BeforeValidator(_integral)]


def top_k_maximum(max_top_k: int | None) -> int:
    """top_k's maximum in a schema: the model's labels where known when the app is built, never above MAX_TOP_K."""
    return min(max_top_k or MAX_TOP_K, MAX_TOP_K)


# From the start of a JSON text (or just past a comma or an opening bracket) to the next comma or opening bracket
# outside a string: whole strings (escapes included) and runs of other bytes, skipped without building anything.
# Possessive (*+, ++): a body that never gets there costs one pass, not one per byte.
_TO_NEXT_SEPARATOR = re.compile(rb'(?:"[^"\\]*+(?:\\.[^"\\]*+)*+"|[^"\[{,]++)*+', re.DOTALL)


def json_values_limit(max_texts: int) -> int:
    """More commas and opening brackets than the JSON of any valid request of at most ``max_texts`` texts has,
    whatever its protocol: a batch of pairs or an infer request with two tensors is ~2 per text plus its options."""
    return 4 * max_texts + 64


def check_json_values(raw: bytes, max_texts: int) -> None:
    """Refuse (422) a JSON body with more values than any request of at most ``max_texts`` texts holds, counted as
    its commas and opening brackets outside strings by a scan that builds nothing and stops at the limit. Before
    parsing: a JSON parser builds a Python object per value first (a 1 MiB body of ``[""],`` is 200,000 lists, ~0.2 s
    and ~20 MB) and pydantic checks a list's length after that."""
    limit = json_values_limit(max_texts)
    if len(raw) <= limit or raw.count(b",") + raw.count(b"[") + raw.count(b"{") <= limit:  # upper bounds: done
        return
    at, end, found = 0, len(raw), 0
    while found <= limit:
        at = _TO_NEXT_SEPARATOR.match(raw, at).end()  # type: ignore[union-attr]  (it matches the empty string)
        if at >= end or raw[at] == 0x22:  # the end, or a string that never ends: the parser says what is wrong
            return
        found += 1
        at += 1
    raise ServiceError(ErrorKind.VALIDATION, f"request body could not be parsed as JSON within its limits: more than "
                       f"{limit} values (commas and opening brackets), more than any request of at most "
                       f"MAX_BATCH_TEXTS={max_texts} texts has")


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
