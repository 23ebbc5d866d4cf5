"""The response cache's keys (api/cache.py): the same question to the same model is one entry; anything that can
change the answer is another."""

import asyncio

import fakeredis
import pytest

from api.cache import ResponseCache, cache_digest
from common.options import Options, Query
from common.protocol import Prediction
from tests.unit.api_harness import KEYS

BASE = ("model-a", Query("a fine film"))


@pytest.mark.parametrize("other", [
    ("model-b", Query("a fine film")),  # another model, token limit or backend
    ("model-a", Query("a fine film ")),
    ("model-a", Query("a fine film", "")),  # an empty pair is a pair
    ("model-a", Query("a fine", " film")),  # the same characters split otherwise
    ("model-a", Query("a fine film", None, Options(top_k=2))),
    ("model-a", Query("a fine film", None, Options(top_k=None))),
    ("model-a", Query("a fine film", None, Options(function="softmax"))),  # the default named: kept apart too
    ("model-a", Query("a fine film", None, Options(truncate=False))),
    ("model-a", Query("a fine film", None, Options(truncation_side="left"))),
], ids=["model", "text", "empty-pair", "split", "top-k", "all-labels", "function", "truncate", "side"])
def test_anything_that_can_change_the_answer_is_another_entry(other):
    assert cache_digest(*other) != cache_digest(*BASE)


def test_the_same_question_to_the_same_model_is_one_entry():
    assert cache_digest("model-a", Query("a fine film", None, Options())) == cache_digest(*BASE)
    assert len(cache_digest(*BASE)) == 64


def test_entries_round_trip_expire_and_unreadable_ones_are_misses():
    async def scenario():
        client = fakeredis.FakeAsyncRedis()
        cache = ResponseCache(client, KEYS, ttl_s=30)
        ranked = [Prediction("POSITIVE", 0.75), Prediction("NEGATIVE", 0.25)]
        queries = [Query("one"), Query("two")]
        assert await cache.lookup("m", queries) == [None, None]
        await cache.store([("m", queries[0], ranked)])
        assert await cache.lookup("m", queries) == [ranked, None]
        assert await cache.lookup("other-model", queries) == [None, None]
        key = KEYS.cached(cache_digest("m", queries[0]))
        assert 0 < await client.ttl(key) <= 30
        await client.set(key, b"\xc1 not an entry")
        assert await cache.lookup("m", queries) == [None, None]

    asyncio.run(scenario())
