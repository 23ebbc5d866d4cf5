"""Tokenize once, pad per pass (worker/tokenizing.py), with a fake Hugging Face tokenizer."""

import numpy as np
import pytest

from worker.tokenizing import Encoding, Tokenizer


class FakeHfTokenizer:
    """Each word is a token id (its length); [CLS]=101 and [SEP]=102 around; truncation at max_length."""

    pad_token_id = 0

    def __init__(self, *, type_ids: bool = False, side: str = "right") -> None:
        self.model_input_names = ["input_ids", "attention_mask"] + (["token_type_ids"] if type_ids else [])
        self.padding_side = side
        self.calls: list[list[str]] = []

    def __call__(self, texts, *, truncation, max_length, return_token_type_ids, return_attention_mask):
        assert truncation and not return_attention_mask
        self.calls.append(texts)
        ids = [([101] + [len(w) for w in t.split()] + [102])[:max_length] for t in texts]
        out = {"input_ids": ids}
        if return_token_type_ids:
            out["token_type_ids"] = [[0] * len(i) for i in ids]
        return out


def test_encode_is_one_call_and_keeps_each_texts_own_length():
    hf = FakeHfTokenizer()
    encodings = Tokenizer(hf, max_length=4).encode(["a bb", "a bb ccc dddd eeeee", "x"])
    assert hf.calls == [["a bb", "a bb ccc dddd eeeee", "x"]]
    assert [e.ids for e in encodings] == [[101, 1, 2, 102], [101, 1, 2, 3], [101, 1, 102]]  # truncated to 4
    assert [len(e) for e in encodings] == [4, 4, 3] and encodings[0].type_ids is None
    assert Tokenizer(hf, max_length=4).encode([]) == []


@pytest.mark.parametrize("side", ["right", "left"])
def test_a_pass_is_padded_to_its_own_longest_text_with_the_padding_masked(side):
    tokenizer = Tokenizer(FakeHfTokenizer(type_ids=True, side=side), max_length=16)
    assert tokenizer.input_names == ("input_ids", "attention_mask", "token_type_ids")
    encodings = [Encoding([101, 5, 102], [0, 0, 0]), Encoding([101, 102], [0, 1])]
    inputs = tokenizer.pad(encodings)
    assert set(inputs) == {"input_ids", "attention_mask", "token_type_ids"}
    assert all(a.dtype == np.int64 and a.shape == (2, 3) for a in inputs.values())
    if side == "right":
        assert inputs["input_ids"].tolist() == [[101, 5, 102], [101, 102, 0]]
        assert inputs["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
        assert inputs["token_type_ids"].tolist() == [[0, 0, 0], [0, 1, 0]]
    else:
        assert inputs["input_ids"].tolist() == [[101, 5, 102], [0, 101, 102]]
        assert inputs["attention_mask"].tolist() == [[1, 1, 1], [0, 1, 1]]


def test_models_without_segment_ids_get_no_such_input():
    tokenizer = Tokenizer(FakeHfTokenizer(), max_length=8)
    assert tokenizer.input_names == ("input_ids", "attention_mask")
    assert set(tokenizer.pad([Encoding([101, 102])])) == {"input_ids", "attention_mask"}
