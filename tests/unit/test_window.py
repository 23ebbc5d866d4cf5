"""The batch window's bookkeeping: what each publish sends, at the boundaries (deadline exactly now, several
passes' counts in one outbox)."""

import logging

import msgpack
import pytest

from common.counters import WorkerCounts
from common.protocol import PROTOCOL_VERSION, ErrorCode, Prediction, Reply, decode_reply, encode_reply, new_request_id
from tests.unit.fakes import items
from worker.window import Outbox, Popped, Window


def window_of(texts, **kwargs) -> Window:
    window = Window()
    window.add(Popped(items(texts, **kwargs)))
    return window


def test_a_deadline_exactly_now_has_passed():
    window = window_of(["a", "b"], now=1000.0, timeout=10.0)  # deadline 1010
    window.add(Popped(items(["c"], now=1000.0, timeout=20.0)))  # deadline 1020
    assert window.drop_expired(window.held, 1009.999) == window.held
    assert window.drop_expired(window.held[:2], 1010.0) == []
    assert window.drop_expired(window.held[2:], 1020.0) == []
    assert window.outbox.counts.expired == 3  # each pass's drops add up until the outbox is taken


def test_an_outbox_with_anything_in_it_is_sent():
    assert not Outbox()
    assert Outbox(done=[b"x"]) and Outbox(replies=[Reply(new_request_id(), 0, predictions=[Prediction("P", 0.5)])])
    assert Outbox(counts=WorkerCounts(expired=1))


def test_an_answer_needs_one_prediction_per_text():
    window = window_of(["a", "b"])
    with pytest.raises(ValueError):
        window.answer(window.held, [[Prediction("POSITIVE", 0.6)]], picked_up=1000.0, inference_s=0.01, model="m")


def test_counts_of_several_calls_add_up_in_one_outbox():
    window = window_of(["a", "bb", "ccc"])
    first, second, third = window.held
    window.answer([first], [[Prediction("POSITIVE", 0.6)]], picked_up=1000.0, inference_s=0.01, model="m")
    window.answer([second], [[Prediction("NEGATIVE", 0.7)]], picked_up=1000.0, inference_s=0.02, model="m")
    window.fail([third])
    window.fail([third])
    counts = window.take_outbox().counts
    assert (counts.batches, counts.texts, counts.failed) == (2, 2, 2)
    assert not window.outbox  # taken: the next publish starts empty


def test_failed_texts_are_answered_with_a_readable_error_reply_each():
    rid = new_request_id()
    window = window_of(["a", "b"], request_id=rid)
    window.fail(window.held)
    replies = [decode_reply(encode_reply(r)) for r in window.take_outbox().replies]  # over the wire and back
    assert [(r.request_id, r.index, r.error.code) for r in replies] == [(rid, 0, ErrorCode.INFERENCE_FAILED),
                                                                       (rid, 1, ErrorCode.INFERENCE_FAILED)]
    assert all(isinstance(r.error.message, str) and r.error.message for r in replies)


def test_queue_time_is_never_negative_under_clock_skew():
    window = window_of(["a"], enqueued_at=1000.5)  # the API's clock runs ahead of the worker's
    window.answer(window.held, [[Prediction("POSITIVE", 0.6)]], picked_up=1000.0, inference_s=0.01, model="m")
    reply, = window.take_outbox().replies
    assert reply.queue_ms == 0.0 and reply.inference_ms == 10.0 and reply.model == "m"


def test_token_counts_of_several_passes_add_up():
    window = window_of(["a", "bb", "ccc"])
    for h, tokens in zip(window.held, (3, 4, 6)):
        h.encoding = [0] * tokens  # any sized encoding: its length is the tokens it takes
    window.answer(window.held[:2], [[Prediction("POSITIVE", 0.6)]] * 2, picked_up=1000.0, inference_s=0.01, model="m")
    window.answer(window.held[2:], [[Prediction("POSITIVE", 0.6)]], picked_up=1000.0, inference_s=0.01, model="m")
    counts = window.take_outbox().counts
    assert (counts.tokens, counts.padded_tokens) == (13, 8 + 6)


def test_a_malformed_message_is_answered_only_when_its_identity_is_readable(caplog):
    rid = new_request_id()
    readable = msgpack.packb({"v": PROTOCOL_VERSION, "request_id": rid, "index": 1, "text": 5})
    no_index = msgpack.packb({"v": PROTOCOL_VERSION, "request_id": rid, "index": -1, "text": "x"})
    window = Window()
    with caplog.at_level(logging.WARNING, logger="worker.window"):
        window.add(Popped([readable, no_index, b"\xc1"]))
    outbox = window.take_outbox()
    assert [(r.request_id, r.index, r.error.code) for r in outbox.replies] == [(rid, 1, ErrorCode.MALFORMED)]
    assert "field 'text' must be str, got int" in outbox.replies[0].error.message
    assert outbox.done == [readable, no_index, b"\xc1"] and outbox.counts.malformed == 3 and window.taken == 3
    assert caplog.messages[2] == "skipping malformed message (1 bytes): not a msgpack message: FormatError"


def test_a_message_that_is_not_bytes_is_logged_without_a_size(caplog):
    with caplog.at_level(logging.WARNING, logger="worker.window"):
        Window().add(Popped(["not bytes"]))
    assert caplog.messages == ["skipping malformed message (-1 bytes): message must be bytes, got str"]


def test_a_non_finite_score_is_answered_as_a_failure_at_once_and_the_rest_normally():
    window = window_of(["a", "b", "c"])
    ranked = [[Prediction("POSITIVE", 0.9)], [Prediction("NEGATIVE", float("nan"))],
              [Prediction("POSITIVE", 0.5), Prediction("NEGATIVE", float("inf"))]]  # any label's score counts
    window.answer(window.held, ranked, picked_up=1000.0, inference_s=0.01, model="m")
    outbox = window.take_outbox()
    by_index = {r.index: r for r in outbox.replies}
    assert by_index[0].predictions == [Prediction("POSITIVE", 0.9)]
    assert {by_index[i].error.code for i in (1, 2)} == {ErrorCode.INFERENCE_FAILED}
    assert "non-finite score" in by_index[1].error.message
    assert (outbox.counts.texts, outbox.counts.failed, outbox.counts.batches) == (1, 2, 1)


def test_texts_a_pop_skipped_for_hung_up_clients_are_counted_with_the_next_publish():
    window = Window()
    window.add(Popped(items(["kept"]), cancelled=3))
    assert window.taken == 4 and len(window.held) == 1
    assert window.take_outbox().counts.cancelled == 3


def test_cancellations_of_several_pops_add_up():
    window = Window()
    window.add(Popped(items(["a"]), cancelled=2))
    window.add(Popped(items(["b"]), cancelled=3))
    assert window.take_outbox().counts.cancelled == 5


def test_a_non_finite_score_keeps_the_replies_already_in_the_outbox():
    window = window_of(["a", "b"])
    window.fail(window.held[:1])  # an earlier failure, waiting for the same publish
    window.answer(window.held[1:], [[Prediction("POSITIVE", float("nan"))]], picked_up=1000.0, inference_s=0.01,
                  model="m")
    replies = window.take_outbox().replies
    assert [r.error.message for r in replies] == [
        "the model failed on the batch holding this text",
        "the model produced a non-finite score for this text (numeric overflow in the forward pass)"]


def test_a_refused_text_is_answered_as_invalid_released_and_counted():
    rid = new_request_id()
    window = window_of(["a", "b"], request_id=rid)
    window.refuse(window.held[1], "top_k is 3 but the model has 2 label(s)")
    outbox = window.take_outbox()
    reply, = outbox.replies
    assert (reply.request_id, reply.index, reply.error.code) == (rid, 1, ErrorCode.INVALID_INPUT)
    assert reply.error.message == "top_k is 3 but the model has 2 label(s)"
    assert outbox.done == [window.held[1].raw] and outbox.counts.invalid == 1
