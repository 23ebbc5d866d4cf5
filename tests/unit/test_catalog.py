"""The API's view of the model its live workers serve (api/catalog.py): what they answer with is known only while
they all agree, and the response cache is off while they do not (a rollout under way)."""

import asyncio
import dataclasses

import pytest

from api.cache import ResponseCache
from api.catalog import view_of
from common.model_card import BACKEND_CHOICE_FIELD, ModelCard
from common.options import Query
from common.protocol import Prediction
from tests.unit.api_harness import CARD, KEYS, running, settings
from tests.unit.test_api_shapes import ready

# Workers whose answers can differ from CARD's: other weights, another token limit, another backend, another
# precision or kind of device of the same backend.
DISAGREEING = [dataclasses.replace(CARD, fingerprint="e" * 64),
               dataclasses.replace(CARD, max_tokens=CARD.max_tokens + 1),
               dataclasses.replace(CARD, backend="openvino-bf16"),
               dataclasses.replace(CARD, precision="float16"),
               dataclasses.replace(CARD, device_type="cuda")]
DISAGREEING_IDS = ["fingerprint", "token-limit", "backend", "precision", "device"]


def heartbeat(card: ModelCard, worker: str) -> dict[str, str]:
    return {"worker_id": worker, **card.fields(), "max_batch_size": "64", "max_batch_tokens": "512"}


@pytest.mark.parametrize("other", DISAGREEING, ids=DISAGREEING_IDS)
@pytest.mark.parametrize("order", ["card-first", "other-first"])
def test_live_workers_that_disagree_name_no_answers(other, order):
    cards = [CARD, other] if order == "card-first" else [other, CARD]
    view = view_of([heartbeat(card, f"w{i}") for i, card in enumerate(cards)])
    assert view.workers == 2 and view.answers is None


def test_live_workers_that_agree_name_their_shared_answers():
    view = view_of([heartbeat(CARD, "w1"), heartbeat(ModelCard.from_fields(CARD.fields()), "w2")])
    assert view.workers == 2 and view.answers == CARD.answers
    # The same files under another MODEL setting (a hub id and its local copy) answer the same.
    renamed = dataclasses.replace(CARD, model="/models/fake-model")
    assert view_of([heartbeat(CARD, "w1"), heartbeat(renamed, "w2")]).answers == CARD.answers


def test_a_worker_without_a_readable_card_is_counted_not_described():
    """A worker of an older version (or one whose card fields are cut short) must not turn the model unknown or
    mixed for the others: /info and the cache go by the cards that can be read."""
    old = {"worker_id": "w2", "max_batch_size": "64", "max_batch_tokens": "512"}
    view = view_of([heartbeat(CARD, "w1"), old])
    assert view.workers == 2 and view.cards == (CARD,) and view.answers == CARD.answers


@pytest.mark.parametrize("other,served_from_cache", [*[(card, False) for card in DISAGREEING],
                                                     (ModelCard.from_fields(CARD.fields()), True)],
                         ids=[*DISAGREEING_IDS, "agreeing"])
def test_the_cache_is_off_while_live_workers_disagree(other, served_from_cache):
    async def scenario():
        seen = []
        async with running(settings(cache_ttl_s=60), seen=seen) as (http, client):
            await ready(http)
            # A second live worker, serving ``other`` (it pops nothing: the fake worker answers every item).
            await client.hset(KEYS.heartbeat("fake-2"), mapping=heartbeat(other, "fake-2"))
            await client.hset(KEYS.workers, "fake-2", "incarnation-2")
            # An answer to "good" is cached for each worker's card, so either would be a hit if the cache were on.
            cached = [Prediction("POSITIVE", 0.99), Prediction("NEGATIVE", 0.01)]
            await ResponseCache(client, KEYS, ttl_s=60).store([(card.answers, Query("good"), cached)
                                                               for card in (CARD, other)])
            readyz = await http.get("/readyz")  # the API reads the live workers' cards again
            assert readyz.status_code == 200 and readyz.json()["workers"] == 2
            r = await http.post("/predict", json={"text": "good"})
            assert r.status_code == 200
            return r.headers["x-cache"], r.json(), len(seen)

    x_cache, answer, queued = asyncio.run(scenario())
    if served_from_cache:
        assert (x_cache, answer, queued) == ("hit", {"label": "POSITIVE", "score": 0.99}, 0)
    else:  # answered by a worker
        assert (x_cache, answer, queued) == ("miss", {"label": "POSITIVE", "score": 0.5}, 1)


def test_a_mixed_cluster_is_logged_with_what_tells_its_cards_apart(caplog):
    """GPU (fp16) and CPU (fp32) workers of one model and backend: the warning says which is which."""
    import logging

    from api.catalog import Catalog

    gpu = dataclasses.replace(CARD, precision="float16", device_type="cuda")
    older = dataclasses.replace(CARD, precision="", device_type="")  # a worker that does not say

    class Cluster:
        live = [[heartbeat(CARD, "w1")], [heartbeat(CARD, "w1"), heartbeat(gpu, "w2")],
                [heartbeat(CARD, "w1"), heartbeat(gpu, "w2")], [heartbeat(older, "w3")]]

        async def described_workers(self):
            return self.live.pop(0)

    async def refreshes(catalog: Catalog) -> list:
        return [await catalog.refresh() for _ in range(4)]

    with caplog.at_level(logging.WARNING, logger="api.catalog"):
        views = asyncio.run(refreshes(Catalog(Cluster())))
    assert views[1].answers is None
    # Once, when the mix appears: not for one model, not again while it stays the same mix.
    assert caplog.messages == ["live workers serve 2 different models or backends (a rollout?): fake-model (fake "
                               "float32 on cpu, ffffffffffff), fake-model (fake float16 on cuda, ffffffffffff)"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="api.catalog"):
        Cluster.live = [[heartbeat(CARD, "w1"), heartbeat(older, "w3")]]
        asyncio.run(Catalog(Cluster()).refresh())
    assert caplog.messages[0].endswith("fake-model (fake ? on ?, ffffffffffff)")


def test_the_models_keep_refreshing_through_redis_outages_and_failures(caplog, monkeypatch):
    """The background task (api/models.py): a 503 (Redis away) is a debug line, anything else a logged traceback,
    and either way it reads again a REFRESH_INTERVAL_S later, for as long as the process runs."""
    import logging

    import redis

    import api.models
    from api.catalog import Catalog
    from api.models import ModelRouter, ModelVersion
    from common.keys import Keys

    outcomes = [redis.ConnectionError("gone"), RuntimeError("boom"), {b"m/1"}]
    waits: list[float] = []

    class Client:
        connection_pool = None

        async def smembers(self, key):
            outcome = outcomes.pop(0)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

    class Cluster:
        async def described_workers(self):
            return [heartbeat(CARD, "w1")]

    async def no_wait(seconds):
        waits.append(seconds)
        if not outcomes:
            raise asyncio.CancelledError

    def build(name, version, keys):
        return ModelVersion(name, version, keys, None, None, Catalog(Cluster()))

    monkeypatch.setattr(api.models.asyncio, "sleep", no_wait)
    router = ModelRouter(Client(), Keys("k"), "m", build)
    with caplog.at_level(logging.DEBUG, logger="api.models"), pytest.raises(asyncio.CancelledError):
        asyncio.run(router.keep_fresh())
    assert router.pick("m").catalog.view.cards == (CARD,) and waits == [api.models.REFRESH_INTERVAL_S] * 3
    assert [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records
            if r.name == "api.models"] == [
        ("DEBUG", "could not read the models: the request queue is unavailable; retry later", False),
        ("ERROR", "reading the models failed; trying again", True),
        ("INFO", "model m version 1: now routed to (queue k:{m}:v1:requests)", False)]


def test_the_backend_choice_is_the_first_live_worker_that_made_one_and_empty_if_none_did():
    assert view_of([heartbeat(CARD, "w1"), heartbeat(CARD, "w2")]).backend_choice == ""
    chose = {**heartbeat(CARD, "w2"), BACKEND_CHOICE_FIELD: '{"chosen": "onnxruntime"}'}
    assert view_of([heartbeat(CARD, "w1"), chose]).backend_choice == '{"chosen": "onnxruntime"}'
