"""What a client may ask of one classification besides the text: the Hugging Face ``text-classification``
pipeline's options (``top_k``, ``function_to_apply``, a ``text_pair``) and text-embeddings-inference's truncation
options. They travel with each work item (common/protocol.py); the worker applies them per text, so one forward
pass can mix requests that asked for different things.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# function_to_apply: what turns a text's logits into its scores (the pipeline's ClassificationFunction).
SOFTMAX, SIGMOID, NONE = "softmax", "sigmoid", "none"
FUNCTIONS = (SOFTMAX, SIGMOID, NONE)
# Which end of a text too long for the model is cut off.
RIGHT, LEFT = "right", "left"
TRUNCATION_SIDES = (RIGHT, LEFT)
# The most labels a request may ask for (top_k), whatever the model: every schema states it and refuses more before
# anything is queued, also while no worker has told the API how many labels its model has. As many as one reply may
# carry (common/protocol.py's MAX_LABELS); far above any classifier's labels, far below what msgpack can hold.
MAX_TOP_K = 16_384


@dataclass(frozen=True, slots=True)
class Options:
    top_k: int | None = 1  # labels to answer, best first; None: every label
    function: str | None = None  # one of FUNCTIONS; None: the model's default (see default_function)
    truncate: bool = True  # False: a text over the model's token limit is refused instead of cut
    truncation_side: str = RIGHT

    def __post_init__(self) -> None:
        if self.top_k is not None and (type(self.top_k) is not int or self.top_k < 1):
            raise ValueError(f"top_k must be a positive integer or None, got {self.top_k!r}")
        if self.top_k is not None and self.top_k > MAX_TOP_K:
            raise ValueError(f"top_k must be at most {MAX_TOP_K}, got {self.top_k}")
        if self.function is not None and self.function not in FUNCTIONS:
            raise ValueError(f"function must be one of {', '.join(FUNCTIONS)} or None, got {self.function!r}")
        if type(self.truncate) is not bool:
            raise ValueError(f"truncate must be a boolean, got {self.truncate!r}")
        if self.truncation_side not in TRUNCATION_SIDES:
            raise ValueError(f"truncation_side must be one of {', '.join(TRUNCATION_SIDES)}, "
                             f"got {self.truncation_side!r}")


DEFAULT_OPTIONS = Options()


class QueryLike(Protocol):
    """What a model is asked for one text: a work item (common/protocol.py) or a ``Query``."""

    @property
    def text(self) -> str: ...

    @property
    def text_pair(self) -> str | None: ...

    @property
    def options(self) -> Options: ...


@dataclass(slots=True)  # not frozen: built per text of every request (a frozen __init__ costs ~3x)
class Query:
    text: str
    text_pair: str | None = None  # the second text of a pair
    options: Options = DEFAULT_OPTIONS


def default_function(problem_type: str | None, num_labels: int) -> str:
    """The function a model's scores get when a client names none: the pipeline's rules (transformers'
    ``TextClassificationPipeline.postprocess``): none for regression, sigmoid for multi-label models and models
    with one output, else softmax."""
    if problem_type == "regression":
        return NONE
    if problem_type == "multi_label_classification" or num_labels == 1:
        return SIGMOID
    return SOFTMAX


def top_k_refusal(options: Options, num_labels: int) -> str | None:
    """Why a model of ``num_labels`` labels cannot answer with ``options``' top_k (None: it can)."""
    if options.top_k is not None and options.top_k > num_labels:
        return f"top_k is {options.top_k} but the model has {num_labels} label(s)"
    return None


def refusal(options: Options, tokens: int, *, max_tokens: int, num_labels: int) -> str | None:
    """Why a model cannot answer a text of ``tokens`` tokens with ``options`` (None: it can). Checked where the
    text is tokenized, by the worker and the naive server alike (the API checks top_k early where it knows the
    labels)."""
    if (why := top_k_refusal(options, num_labels)) is not None:
        return why
    if not options.truncate and tokens > max_tokens:
        return (f"the text is {tokens} tokens long and the model takes at most {max_tokens}; send truncate=true "
                "to cut it")
    return None
