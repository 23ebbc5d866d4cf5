"""The Hugging Face Inference API's text classification (what huggingface_hub's
``InferenceClient.text_classification`` sends): text-embeddings-inference's ``{"inputs"}`` body plus
``"parameters": {"top_k", "function_to_apply"}``, answered with a list holding a ranked list per input (``[[...]]``
for one text). A dialect of api/protocols/tei.py: a body with ``parameters`` (not null) is this protocol's."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, create_model

from api.protocols import tei
from api.protocols.fields import Ranked, integer, top_k_maximum
from api.protocols.spec import Build, Dialect, Job, Protocol
from common.options import FUNCTIONS, NONE


def _fields(build: Build) -> dict[str, Any]:
    parameters = create_model(
        "InferenceParameters",
        __config__=ConfigDict(extra="forbid"),
        top_k=(integer(ge=1, le=top_k_maximum(build.max_top_k)) | None, Field(None, description=(
            "Labels per input, best first; absent or null: every label."))),
        function_to_apply=(Literal[FUNCTIONS] | None, Field(None)),  # type: ignore[valid-type]
    )
    return {"parameters": (parameters | None, Field(None, description=(
        "The Hugging Face Inference API's task parameters (what huggingface_hub's "
        "InferenceClient.text_classification sends): with them, the answer is that API's, a list holding a "
        "ranked list per input ([[...]] for one text).")))}


def job_of(body: Any) -> Job | None:
    parameters = body.parameters
    if parameters is None:
        return None  # text-embeddings-inference's own body
    function = parameters.function_to_apply or (NONE if body.raw_scores else None)
    queries, _ = tei.queries_of(body, parameters.top_k, function)
    return Job(queries, tei.ranked_each)  # a ranked list per input, even for one


PROTOCOL = Protocol(
    name="hugging face inference api",
    dialect=Dialect(tei.KEY, _fields, job_of),
    answers=(list[Ranked],),
)
