"""The tokenizer that cuts texts from the other side (engine/tokenizing.py) on a real Hugging Face fast tokenizer: it
shares no state with the model's own, which the naive server's threads tokenize with at the same time."""

from __future__ import annotations

import pytest

from common.options import LEFT, Options, Query
from engine.tokenizing import Tokenizer

pytestmark = pytest.mark.model


def test_a_left_cut_leaves_the_models_own_tokenizer_as_it_was(tiny_model):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(tiny_model)
    tokenizer = Tokenizer(hf, max_length=5)
    long = "good bad " * 6
    right = tokenizer.encode([Query(long)])[0].ids
    cut_right = hf.backend_tokenizer.truncation
    left = tokenizer.encode([Query(long, None, Options(truncation_side=LEFT))])[0].ids
    # The backend (Rust) tokenizer holds the truncation each call sets: shared between the model's tokenizer and a
    # shallow copy, a right cut in one thread and a left cut in another would each cut from either side.
    assert cut_right["direction"] == "right" and hf.backend_tokenizer.truncation == cut_right
    assert hf.truncation_side == "right"
    assert len(left) == len(right) == 5 and left[1:-1] != right[1:-1]
    assert left[1:-1] == hf(long, add_special_tokens=False)["input_ids"][-3:]
