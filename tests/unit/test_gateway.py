"""The gateway's reply handling and its boundaries, on fakeredis with a controlled clock: replies are put on the
request's reply key the moment its items are enqueued (``on_enqueued``), so each case is exact."""

import asyncio
import logging
from collections.abc import Callable

import fakeredis
import pytest

from api.cache import ResponseCache
from api.errors import ErrorKind, ServiceError
from api.gateway import Gateway, Outcome
from common.clock import RedisClock
from common.options import Query
from common.protocol import (
    ErrorCode,
    Prediction,
    Reply,
    WorkError,
    WorkItem,
    decode_item,
    encode_reply,
    new_request_id,
)
from tests.unit.api_harness import KEYS, settings
from tests.unit.fakes import Clock

Respond = Callable[[list[WorkItem], Clock], list[bytes]]


def answer(item: WorkItem, label: str = "POSITIVE", score: float = 0.9, **fields) -> bytes:
    return encode_reply(Reply(item.request_id, item.index, predictions=[Prediction(label, score)], **fields))


class Harness:
    """One gateway on fakeredis; ``respond(items, clock)`` plays the worker: it sees the enqueued items (and may
    move the clock) and returns the raw replies to put on the reply key, in that order."""

    def __init__(self, respond: Respond, **overrides) -> None:
        self.server = fakeredis.FakeServer()
        self.redis = fakeredis.FakeRedis(server=self.server)
        self.clock = Clock(1000.0)
        self.settings = settings(**overrides)
        self.respond = respond
        self.enqueued: list[WorkItem] = []

    def _on_enqueued(self, count: int) -> None:
        items = [decode_item(raw) for raw in self.redis.lrange(KEYS.requests, -count, -1)]  # this request's
        self.redis.ltrim(KEYS.requests, 0, -count - 1)
        self.enqueued += items
        if replies := self.respond(items, self.clock):
            self.redis.rpush(KEYS.reply(items[0].request_id), *replies)

    def classify(self, texts: list[str], *, request_id: str | None = None, client_request_id: str | None = None,
                 **gateway_kwargs) -> Outcome:
        async def call() -> Outcome:
            gateway = Gateway(fakeredis.FakeAsyncRedis(server=self.server), KEYS, self.settings,
                              on_enqueued=self._on_enqueued, clock=self.clock, **gateway_kwargs)
            try:
                return await gateway.classify([Query(t) for t in texts], request_id=request_id,
                                              client_request_id=client_request_id)
            finally:
                assert gateway.in_flight == 0  # the admission slot is given back, whatever happened

        return asyncio.run(call())

    def reply_keys(self) -> list[bytes]:
        return self.redis.keys(KEYS.reply("*"))


def test_the_first_reply_per_text_wins():
    def respond(items, _clock):
        first, second = items
        # Read two at a time (as many as are missing): the duplicate of the first text comes in the same read.
        return [answer(first, score=0.71), answer(first, "NEGATIVE", 0.99), answer(second, score=0.61),
                answer(second, "NEGATIVE", 0.98)]

    outcome = Harness(respond).classify(["a", "b"])
    assert outcome.predictions == [[Prediction("POSITIVE", 0.71)], [Prediction("POSITIVE", 0.61)]]


def test_the_in_flight_count_is_reported_as_a_request_takes_and_gives_back_its_slot():
    counts: list[int] = []

    def respond(items, _clock):
        counts.append(-1)  # the worker's turn: the request holds its slot
        return [answer(item) for item in items]

    Harness(respond).classify(["a", "b"], on_in_flight=counts.append)
    assert counts == [1, -1, 0]  # e.g. the sentimentalyzer_in_flight gauge's set


def test_replies_that_are_not_this_requests_are_dropped(caplog):
    foreign_id = new_request_id()

    def respond(items, _clock):
        item, = items
        return [encode_reply(Reply(foreign_id, 0, predictions=[Prediction("NEGATIVE", 0.11)])),  # another request
                encode_reply(Reply(item.request_id, 1, predictions=[Prediction("NEGATIVE", 0.12)])),  # no index 1
                encode_reply(Reply(item.request_id, -1, predictions=[Prediction("NEGATIVE", 0.13)])),
                b"\xc1 unreadable",
                answer(item, score=0.77)]

    with caplog.at_level(logging.ERROR, logger="api.gateway"):
        outcome = Harness(respond).classify(["a"])
    assert outcome.predictions == [[Prediction("POSITIVE", 0.77)]]
    rid = outcome.request_id
    assert caplog.messages == [f"dropping a reply for {foreign_id}/0 found on the key of {rid}",
                               f"dropping a reply for {rid}/1 found on the key of {rid}",
                               f"unreadable reply for request {rid}: reply lacks a valid request id or index",
                               f"unreadable reply for request {rid}: not a msgpack message: FormatError"]


def test_answers_come_in_input_order_with_the_slowest_texts_timing():
    def respond(items, _clock):
        a, b, c = items
        return [answer(c, score=0.3, queue_ms=2.0, inference_ms=1.0), answer(a, score=0.1, queue_ms=5.0,
                inference_ms=9.0), answer(b, score=0.2, queue_ms=7.0, inference_ms=3.0)]

    harness = Harness(respond)
    outcome = harness.classify(["a", "b", "c"])
    assert [ranked[0].score for ranked in outcome.predictions] == [0.1, 0.2, 0.3]
    assert (outcome.queue_ms, outcome.inference_ms) == (7.0, 9.0)
    assert outcome.request_id == harness.enqueued[0].request_id
    item = harness.enqueued[0]
    assert (item.enqueued_at, item.deadline) == (1000.0, 1000.0 + harness.settings.request_timeout_s)


@pytest.mark.parametrize("past_deadline_s", [0.0, 0.5])  # the deadline exactly now, or passed
def test_no_answer_by_the_deadline_is_504_and_a_late_reply_is_removed(past_deadline_s):
    def respond(items, clock):
        clock.now = items[0].deadline + past_deadline_s  # one of two texts answered as time ran out
        return [answer(items[0])]

    harness = Harness(respond, request_timeout_s=3.0)
    with pytest.raises(ServiceError) as info:
        harness.classify(["a", "b"])
    assert info.value.kind == ErrorKind.TIMEOUT
    assert info.value.message == "no answer within 3s; the workers are busy or absent"
    assert harness.reply_keys() == []  # nobody will read it: deleted, not left to expire


def test_just_before_the_deadline_the_answer_is_taken():
    def respond(items, clock):
        clock.now = items[0].deadline - 0.001
        return [answer(items[0], score=0.42)]

    assert Harness(respond).classify(["a"]).predictions == [[Prediction("POSITIVE", 0.42)]]


@pytest.mark.parametrize("queued,texts,admitted", [(2, 1, True), (3, 1, False), (1, 2, True), (2, 2, False),
                                                   (0, 3, True)])
def test_the_queue_is_full_exactly_at_its_limit(queued, texts, admitted):
    depth_after_push = []

    def no_worker(items, clock):
        depth_after_push.append(harness.redis.llen(KEYS.requests) + len(items))
        clock.now = items[0].deadline  # nobody answers: an admitted request ends in 504, not 429
        return []

    harness = Harness(no_worker, max_queue_depth=3, max_batch_texts=3, max_client_share=1.0, retry_after_s=4)
    if queued:
        harness.redis.rpush(KEYS.requests, *[b"earlier"] * queued)
    with pytest.raises(ServiceError) as info:
        harness.classify([f"t{i}" for i in range(texts)])
    if admitted:
        assert info.value.kind == ErrorKind.TIMEOUT and depth_after_push == [queued + texts]
    else:
        assert info.value.kind == ErrorKind.OVERLOADED and info.value.retry_after_s == 4
        assert "limit 3 texts" in info.value.message
        assert depth_after_push == [] and harness.redis.llen(KEYS.requests) == queued  # nothing was pushed


@pytest.mark.parametrize("code,meaning", [
    (ErrorCode.MALFORMED, "a worker could not read the request (API and worker versions differ?)"),
    (ErrorCode.INFERENCE_FAILED, "the model failed while processing this text"),
    (ErrorCode.POISON, "this text was set aside: set aside after 3 workers died processing it"),
    ("something_new", "the model failed while processing this text"),
])
def test_a_worker_error_fails_the_whole_request_with_what_happened(code, meaning):
    error = WorkError(code, "set aside after 3 workers died processing it")

    def respond(items, _clock):
        first, second = items
        return [answer(first), encode_reply(Reply(second.request_id, second.index, error=error))]

    with pytest.raises(ServiceError) as info:
        Harness(respond).classify(["fine", "troubled"])
    assert info.value.kind == ErrorKind.WORKER_ERROR and info.value.status == 500
    assert info.value.message == f"{meaning} [{code}]"


def test_a_text_the_model_cannot_answer_as_asked_is_422_naming_it():
    def respond(items, _clock):
        first, second = items
        refused = WorkError(ErrorCode.INVALID_INPUT, "the text is 600 tokens long and the model takes at most 512")
        return [answer(first), encode_reply(Reply(second.request_id, second.index, error=refused))]

    with pytest.raises(ServiceError) as info:
        Harness(respond).classify(["fine", "long"])
    assert info.value.kind == ErrorKind.VALIDATION and info.value.status == 422
    assert info.value.message == "text 1: the text is 600 tokens long and the model takes at most 512"


def cache_of(harness: Harness) -> dict:
    """A response cache on the harness's Redis, under what the live workers answer with: card-1."""
    return {"cache": ResponseCache(fakeredis.FakeAsyncRedis(server=harness.server), KEYS, 60), "answers": lambda: "card-1"}


def test_a_refused_text_is_named_by_its_place_in_the_request_when_the_cache_answered_the_others():
    """Only the texts the cache did not answer are queued: the worker's index is into those, the client's into all."""
    harness = Harness(lambda items, _clock: [
        answer(item, model="card-1") if item.text == "fine" else
        encode_reply(Reply(item.request_id, item.index, error=WorkError(ErrorCode.INVALID_INPUT, "too long")))
        for item in items])

    assert harness.classify(["fine"], **cache_of(harness)).predictions == [[Prediction("POSITIVE", 0.9)]]
    with pytest.raises(ServiceError) as info:
        harness.classify(["fine", "long"], **cache_of(harness))
    assert [item.text for item in harness.enqueued] == ["fine", "long"]  # the second call queued "long" alone
    assert info.value.status == 422 and info.value.message == "text 1: too long"


def test_what_the_cache_answers_keeps_the_request_id_and_no_queue_or_inference_time():
    harness = Harness(lambda items, _clock: [answer(item, model="card-1") for item in items])
    harness.classify(["fine"], **cache_of(harness))  # now cached
    whole = harness.classify(["fine"], request_id="a" * 32, **cache_of(harness))
    assert (whole.request_id, whole.cached, whole.queue_ms, whole.inference_ms) == ("a" * 32, 1, 0.0, 0.0)
    part = harness.classify(["fine", "new"], request_id="b" * 32, client_request_id="mine", **cache_of(harness))
    assert (part.request_id, part.cached) == ("b" * 32, 1)
    assert [(item.text, item.client_request_id) for item in harness.enqueued[-1:]] == [("new", "mine")]


def test_a_request_the_cache_answers_in_part_counts_against_its_clients_share():
    harness = Harness(lambda items, _clock: [answer(item, model="card-1") for item in items])
    harness.classify(["fine"], **cache_of(harness))  # now cached

    async def scenario() -> tuple[bool, ServiceError]:
        # One request slot per client; the worker never answers, so admitted requests hold their slots.
        gateway = Gateway(fakeredis.FakeAsyncRedis(server=harness.server), KEYS,
                          settings(max_in_flight=4, max_client_share=0.25), clock=harness.clock, **cache_of(harness))
        first = asyncio.create_task(gateway.classify([Query("fine"), Query("new")], "a"))
        await asyncio.sleep(0.05)
        another_client = asyncio.create_task(gateway.classify([Query("other")], "b"))
        await asyncio.sleep(0.05)
        try:
            with pytest.raises(ServiceError) as refused:
                await asyncio.wait_for(gateway.classify([Query("more")], "a"), timeout=1)
            return not another_client.done(), refused.value
        finally:
            first.cancel()
            another_client.cancel()

    b_admitted, refused = asyncio.run(scenario())
    assert b_admitted  # another client's slot is its own
    assert refused.status == 429 and "this client already has 1 requests in flight" in refused.message


def test_a_process_that_has_not_read_redis_clock_refuses_with_503_saying_why():
    server = fakeredis.FakeServer()
    server.connected = False  # Redis away since this process started: its clock was never read

    async def scenario() -> ServiceError:
        gateway = Gateway(fakeredis.FakeAsyncRedis(server=server), KEYS, settings(), clock=RedisClock())
        with pytest.raises(ServiceError) as refused:
            await gateway.classify([Query("fine")])
        return refused.value

    refused = asyncio.run(scenario())
    assert (refused.status, refused.retry_after_s) == (503, 1)
    assert refused.message == ("the request queue is unavailable: this API process could not read Redis's clock "
                               "yet, which deadlines are measured on; retry later")
