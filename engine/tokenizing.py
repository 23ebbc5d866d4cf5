"""Tokenize once: a window's texts are tokenized together, their lengths plan the forward passes, and each
pass pads the token ids it was given into the arrays a runtime takes. No text is tokenized twice.

Texts that asked for the same tokenization (pair or not, truncated or not, from which side) go in one call: the
common window, where nobody asked for anything, is one call. A text pair becomes one sequence (``[CLS] a [SEP] b
[SEP]`` for BERT-style models, with segment ids where the model takes them) and counts its tokens like any text.

Padding is done here (numpy), not by the tokenizer: a pass is a subset of the window, padded to its own
longest text, and every runtime (torch, ONNX Runtime, OpenVINO) takes the same int64 arrays.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from common.options import QueryLike

# The inputs a sequence classifier's graph takes, in the order the exported graphs declare them.
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(slots=True)
class Encoding:
    """One text's token ids (special tokens included, truncated to the model's limit); ``type_ids`` only for
    models that take segment ids (BERT-style)."""

    ids: list[int]
    type_ids: list[int] | None = None

    def __len__(self) -> int:
        return len(self.ids)


class Tokenizer:
    """A Hugging Face fast tokenizer used the way the worker needs it: encode without padding, pad per pass."""

    def __init__(self, hf_tokenizer: Any, max_length: int) -> None:
        self.hf = hf_tokenizer
        self.max_length = max_length
        self.takes_type_ids = "token_type_ids" in hf_tokenizer.model_input_names
        self.input_names = tuple(n for n in INPUT_NAMES if n != "token_type_ids" or self.takes_type_ids)
        self.pad_id = hf_tokenizer.pad_token_id if hf_tokenizer.pad_token_id is not None else 0
        self.pad_left = hf_tokenizer.padding_side == "left"
        # Per truncation side, the tokenizer that cuts from it: the model's own, and a copy made when first asked for.
        self._by_side: dict[str, Any] = {hf_tokenizer.truncation_side: hf_tokenizer}

    def encode(self, queries: Sequence[QueryLike]) -> list[Encoding]:
        """Each query's encoding, in order. A query with ``truncate=False`` keeps all its tokens: over
        ``max_length``, the caller refuses it (common.options.refusal)."""
        groups: dict[tuple[bool, str, bool], list[int]] = {}
        for i, query in enumerate(queries):
            how = (query.options.truncate, query.options.truncation_side, query.text_pair is not None)
            groups.setdefault(how, []).append(i)
        encodings: list[Encoding] = [Encoding([])] * len(queries)
        for (truncate, side, paired), indices in groups.items():
            texts = [queries[i].text for i in indices]
            pairs = [queries[i].text_pair for i in indices] if paired else None
            for i, encoding in zip(indices, self._encode(texts, pairs, truncate, side)):
                encodings[i] = encoding
        return encodings

    def _encode(self, texts: list[str], pairs: list[str | None] | None, truncate: bool, side: str) -> list[Encoding]:
        # verbose=False: an untruncated text over the limit is refused by the caller, not logged by transformers.
        limits: dict[str, Any] = ({"truncation": True, "max_length": self.max_length} if truncate
                                  else {"truncation": False, "verbose": False})
        encoded = self._side(side)(texts, pairs, return_token_type_ids=self.takes_type_ids,
                                   return_attention_mask=False, **limits)
        type_ids = encoded["token_type_ids"] if self.takes_type_ids else [None] * len(texts)
        return [Encoding(ids, types) for ids, types in zip(encoded["input_ids"], type_ids)]

    def _side(self, side: str) -> Any:
        """The tokenizer that truncates from ``side``. A copy rather than flipping the shared one's
        ``truncation_side`` per call: the naive server tokenizes from several threads at once."""
        tokenizer = self._by_side.get(side)
        if tokenizer is None:
            tokenizer = copy.deepcopy(self.hf)
            tokenizer.truncation_side = side
            self._by_side[side] = tokenizer
        return tokenizer

    def pad(self, encodings: Sequence[Encoding]) -> dict[str, np.ndarray]:
        """The pass's inputs: int64 arrays of shape (texts, longest), padding masked out."""
        rows, width = len(encodings), max(len(e) for e in encodings)
        ids = np.full((rows, width), self.pad_id, dtype=np.int64)
        mask = np.zeros((rows, width), dtype=np.int64)
        types = np.zeros((rows, width), dtype=np.int64) if self.takes_type_ids else None
        for row, encoding in enumerate(encodings):
            n = len(encoding)
            span = slice(width - n, width) if self.pad_left else slice(0, n)
            ids[row, span] = encoding.ids
            mask[row, span] = 1
            if types is not None and encoding.type_ids is not None:
                types[row, span] = encoding.type_ids
        inputs = {"input_ids": ids, "attention_mask": mask}
        if types is not None:
            inputs["token_type_ids"] = types
        return inputs
