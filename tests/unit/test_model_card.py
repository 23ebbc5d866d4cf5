"""A worker's model card as its heartbeat carries it (common/model_card.py): it reads back as it was written, and a
broken one reads as no card."""

import dataclasses
import json

import pytest

from common.model_card import ModelCard
from common.options import SIGMOID
from tests.unit.api_harness import CARD

# Every field away from its default: a round trip that dropped or misread one would show.
FULL = dataclasses.replace(CARD, problem_type="multi_label_classification", segment_ids=True, revision="abc123",
                           precision="bfloat16", device_type="cpu", default_function=SIGMOID)


@pytest.mark.parametrize("card", [CARD, FULL], ids=["defaults", "every-field-set"])
def test_a_card_reads_back_from_its_heartbeat_fields_as_it_was(card):
    assert ModelCard.from_fields(card.fields()) == card


@pytest.mark.parametrize("broken", [{"labels": "[]"}, {"labels": json.dumps({"0": "NEGATIVE"})},
                                    {"default_function": "no-such-function"}, {"max_tokens": "many"}],
                         ids=["no-labels", "labels-not-a-list", "unknown-function", "bad-number"])
def test_a_broken_card_reads_as_none(broken):
    assert ModelCard.from_fields({**CARD.fields(), **broken}) is None
