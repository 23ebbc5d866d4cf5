"""Tokenize once, pad per pass (engine/tokenizing.py), with a fake Hugging Face tokenizer."""

import copy

import numpy as np
import pytest

from common.options import Options, Query
from engine.tokenizing import Encoding, Tokenizer


class FakeHfTokenizer:
    """Each word is a token id (its length); [CLS]=101 a [SEP]=102 (b [SEP]) ; truncation at max_length from its
    ``truncation_side`` (of the words: enough for these tests). Records every call, in every copy."""

    def __init__(self, *, type_ids: bool = False, side: str = "right", pad_token_id: int | None = 0) -> None:
        self.model_input_names = ["input_ids", "attention_mask"] + (["token_type_ids"] if type_ids else [])
        self.padding_side = side
        self.truncation_side = "right"
        self.pad_token_id = pad_token_id
        self.calls: list[tuple[str, list[str], list[str] | None, bool]] = []
        self.copies: list[FakeHfTokenizer] = []

    def __deepcopy__(self, memo):
        twin = copy.copy(self)  # shares .calls and .copies: one record of all calls and copies
        self.copies.append(twin)
        return twin

    def __call__(self, texts, pairs=None, *, return_token_type_ids, return_attention_mask, truncation,
                 max_length=None, verbose=True):
        # The masks are made per pass (Tokenizer.pad): the tokenizer must not build them too (None would ask for
        # them, as the model's inputs name them). An untruncated call logs nothing.
        assert return_attention_mask is False and (truncation or not verbose)
        self.calls.append((self.truncation_side, texts, pairs, truncation))
        ids, types = [], []
        for i, text in enumerate(texts):
            words = [len(w) for w in text.split()]
            second = [len(w) for w in pairs[i].split()] if pairs else None
            room = max_length - 2 - (1 if second is not None else 0) if truncation else None
            if room is not None and len(words) + len(second or []) > room:
                keep = room - len(second or [])
                words = words[:keep] if self.truncation_side == "right" else words[len(words) - keep:]
            row = [101, *words, 102] + ([*second, 102] if second is not None else [])
            ids.append(row)
            types.append([0] * (len(words) + 2) + [1] * (len(row) - len(words) - 2))
        out = {"input_ids": ids}
        if return_token_type_ids:
            out["token_type_ids"] = types
        return out


def queries(*texts, **options):
    return [Query(t, None, Options(**options)) for t in texts]


def test_encode_is_one_call_and_keeps_each_texts_own_length():
    hf = FakeHfTokenizer()
    encodings = Tokenizer(hf, max_length=4).encode(queries("a bb", "a bb ccc dddd eeeee", "x"))
    assert hf.calls == [("right", ["a bb", "a bb ccc dddd eeeee", "x"], None, True)]
    assert [e.ids for e in encodings] == [[101, 1, 2, 102], [101, 1, 2, 102], [101, 1, 102]]  # truncated to 4
    assert [len(e) for e in encodings] == [4, 4, 3] and encodings[0].type_ids is None
    assert Tokenizer(hf, max_length=4).encode([]) == []


def test_a_window_asking_for_different_tokenizations_is_one_call_per_kind_in_its_own_order():
    hf = FakeHfTokenizer(type_ids=True)
    long = "a bb ccc dddd eeeee"
    window = [Query(long, None, Options(truncate=False)),  # kept whole: 7 tokens
              Query(long),  # cut to 6 from the right
              Query(long, None, Options(truncation_side="left")),  # cut to 6 from the left
              Query("a", "bb ccc"),  # a pair: both segments, with segment ids
              Query("x y")]
    encodings = Tokenizer(hf, max_length=6).encode(window)
    assert [e.ids for e in encodings] == [[101, 1, 2, 3, 4, 5, 102], [101, 1, 2, 3, 4, 102], [101, 2, 3, 4, 5, 102],
                                          [101, 1, 102, 2, 3, 102], [101, 1, 1, 102]]
    assert encodings[3].type_ids == [0, 0, 0, 1, 1, 1]
    assert sorted((side, texts, truncation) for side, texts, _, truncation in hf.calls) == [
        ("left", [long], True), ("right", ["a"], True), ("right", [long], False), ("right", [long, "x y"], True)]
    assert hf.truncation_side == "right"  # the shared tokenizer is never flipped: left cuts come from a copy


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


@pytest.mark.parametrize("pad_token_id,padded_with", [(3, 3), (None, 0)])
def test_passes_are_padded_with_the_tokenizers_pad_token_or_0_where_it_has_none(pad_token_id, padded_with):
    tokenizer = Tokenizer(FakeHfTokenizer(pad_token_id=pad_token_id), max_length=8)
    inputs = tokenizer.pad([Encoding([101, 5, 102]), Encoding([101, 102])])
    assert inputs["input_ids"].tolist() == [[101, 5, 102], [101, 102, padded_with]]
    assert inputs["input_ids"].dtype == np.int64


def test_the_tokenizer_for_the_other_truncation_side_is_copied_once_and_the_models_own_never():
    hf = FakeHfTokenizer()
    tokenizer = Tokenizer(hf, max_length=4)
    for _ in range(3):
        tokenizer.encode(queries("a bb ccc dddd", "x"))
        tokenizer.encode(queries("a bb ccc dddd", truncation_side="left"))
    assert len(hf.copies) == 1 and hf.copies[0].truncation_side == "left"
    assert [side for side, *_ in hf.calls] == ["right", "left"] * 3
