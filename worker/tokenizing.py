"""Tokenize once: a window's texts are tokenized in one call, their lengths plan the forward passes, and each
pass pads the token ids it was given into the arrays a runtime takes. No text is tokenized twice.

Padding is done here (numpy), not by the tokenizer: a pass is a subset of the window, padded to its own
longest text, and every runtime (torch, ONNX Runtime, OpenVINO) takes the same int64 arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

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

    def encode(self, texts: Sequence[str]) -> list[Encoding]:
        if not texts:
            return []
        encoded = self.hf(list(texts), truncation=True, max_length=self.max_length,
                          return_token_type_ids=self.takes_type_ids, return_attention_mask=False)
        type_ids = encoded["token_type_ids"] if self.takes_type_ids else [None] * len(texts)
        return [Encoding(ids, types) for ids, types in zip(encoded["input_ids"], type_ids)]

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
