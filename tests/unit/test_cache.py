"""The response cache's keys (api/cache.py): the same question to the same model is one entry; anything that can
change the answer is another."""

import asyncio
import dataclasses
import logging

import fakeredis
import pytest

from api.cache import ResponseCache, cache_digest
from common.model_card import ModelCard
from common.options import Options, Query
from common.protocol import Prediction
from tests.unit.api_harness import CARD, KEYS, running, settings
from tests.unit.fakes import DownRedis
from tests.unit.test_api_shapes import ready

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


def test_an_unreadable_entry_is_logged_with_the_reason_and_missed(caplog):
    async def scenario():
        client = fakeredis.FakeAsyncRedis()
        await client.set(KEYS.cached(cache_digest("m", Query("one"))), b"\xc1 not an entry")
        return await ResponseCache(client, KEYS, ttl_s=30).lookup("m", [Query("one")])

    with caplog.at_level(logging.WARNING, logger="api.cache"):
        assert asyncio.run(scenario()) == [None]
    assert caplog.messages == ["ignoring an unreadable response-cache entry: not a msgpack message: FormatError"]


def test_a_failing_cache_redis_is_counted_and_logged_as_a_read_or_a_write_with_its_error(caplog):
    errors = []

    async def scenario():
        cache = ResponseCache(DownRedis(), KEYS, ttl_s=30, on_error=lambda: errors.append(1))
        found = await cache.lookup("m", [Query("one"), Query("two")])
        await cache.store([("m", Query("one"), [Prediction("POSITIVE", 0.75)])])  # does not raise either
        return found

    with caplog.at_level(logging.WARNING, logger="api.cache"):
        assert asyncio.run(scenario()) == [None, None]
    assert len(errors) == 2
    assert caplog.messages == ["response cache read failed (answered by the workers instead): cache Redis is down",
                               "response cache write failed (answered by the workers instead): cache Redis is down"]


# Cards of workers whose answers can differ from CARD's: other weights, another token limit, another backend, the
# same backend in another precision or on another kind of device (BACKEND=torch: fp32 on a CPU, fp16 on a GPU).
OTHER_CARDS = [dataclasses.replace(CARD, fingerprint="e" * 64),
               dataclasses.replace(CARD, max_tokens=CARD.max_tokens + 1),
               dataclasses.replace(CARD, backend="openvino-bf16"),
               dataclasses.replace(CARD, precision="float16"),
               dataclasses.replace(CARD, device_type="cuda")]
OTHER_IDS = ["fingerprint", "token-limit", "backend", "precision", "device"]


@pytest.mark.parametrize("other", OTHER_CARDS, ids=OTHER_IDS)
def test_cards_that_can_answer_differently_name_different_answers(other):
    assert other.answers != CARD.answers


def test_equal_cards_name_the_same_answers():
    twin = ModelCard.from_fields(CARD.fields())  # another worker's heartbeat of the same card
    assert twin == CARD and twin is not CARD and twin.answers == CARD.answers


@pytest.mark.parametrize("other", OTHER_CARDS, ids=OTHER_IDS)
def test_a_cached_answer_of_one_card_is_a_miss_for_another(other):
    async def scenario():
        cache = ResponseCache(fakeredis.FakeAsyncRedis(), KEYS, ttl_s=30)
        ranked = [Prediction("POSITIVE", 0.75)]
        await cache.store([(CARD.answers, Query("good"), ranked)])
        twin = ModelCard.from_fields(CARD.fields())
        return await cache.lookup(other.answers, [Query("good")]), await cache.lookup(twin.answers, [Query("good")])

    assert asyncio.run(scenario()) == ([None], [[Prediction("POSITIVE", 0.75)]])


@pytest.mark.parametrize("card,served_from_cache", [*[(card, False) for card in OTHER_CARDS],
                                                    (ModelCard.from_fields(CARD.fields()), True)],
                         ids=[*OTHER_IDS, "same-card"])
def test_the_api_serves_no_cached_answer_once_its_worker_serves_another_card(card, served_from_cache):
    async def scenario():
        seen = []
        async with running(settings(cache_ttl_s=60), seen=seen) as (http, client):
            await ready(http)
            first = await http.post("/predict", json={"text": "good"})
            assert first.headers["x-cache"] == "miss" and len(seen) == 1  # now cached under CARD's answers
            # The worker restarts with another card (a rollout: new weights, token limit or backend).
            await client.hset(KEYS.heartbeat("fake-1"), mapping=card.fields())
            assert (await http.get("/readyz")).status_code == 200  # the API reads the live workers' cards again
            again = await http.post("/predict", json={"text": "good"})
            assert again.status_code == 200
            return again.headers["x-cache"], len(seen)

    assert asyncio.run(scenario()) == (("hit", 1) if served_from_cache else ("miss", 2))


def test_a_card_of_an_older_worker_says_no_precision_nor_device_and_shares_no_entries():
    older = {k: v for k, v in CARD.fields().items() if k not in ("precision", "device_type")}
    card = ModelCard.from_fields(older)
    assert card is not None and (card.precision, card.device_type) == ("", "") and card.answers != CARD.answers
