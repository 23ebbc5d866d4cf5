import inspect
import logging
import time
from dataclasses import replace

import msgpack
import pytest

from common.options import Options
from common.protocol import ErrorCode, decode_item, encode_item, new_request_id
from tests.unit.fakes import Clock, FakePredictor, FakeQueue, items
from worker.loop import BatchLoop, BatchPolicy, RequestQueue
from worker.redis_queue import RedisRequestQueue


def make_loop(queue, predictor=None, *, size=4, wait_s=0.0, clock=None):
    return BatchLoop(queue, predictor or FakePredictor(), BatchPolicy(size, wait_s, idle_block_s=0.5),
                     clock=clock or Clock())


def test_batches_are_bounded_by_max_batch_size_and_keep_fifo_order():
    texts = [f"text {i} good" if i % 2 else f"text {i}" for i in range(10)]
    queue, predictor = FakeQueue(items(texts)), FakePredictor()
    loop = make_loop(queue, predictor, size=4)
    assert loop.run(max_batches=3) == 3
    assert [len(b) for b in predictor.batches] == [4, 4, 2]
    assert [t for b in predictor.batches for t in b] == texts
    replies = queue.replies
    assert [r.index for r in replies] == list(range(10))
    assert [r.predictions[0].label for r in replies] == ["NEGATIVE", "POSITIVE"] * 5
    assert [outbox.counts.texts for outbox in queue.published] == [4, 4, 2]
    assert loop.totals.batches == 3 and loop.totals.texts == 10


def test_idle_queue_blocks_in_pop_and_runs_nothing():
    queue, predictor = FakeQueue(), FakePredictor()
    loop = make_loop(queue, predictor)
    assert loop.run_once() is False
    assert queue.pops == [(4, 0.5)]  # one blocking pop with the idle timeout
    assert predictor.batches == [] and queue.published == []


def test_expired_items_are_dropped_before_inference_without_reply():
    clock = Clock(1000.0)
    stale = items(["too late"], now=980.0, timeout=10.0)  # deadline 990 < now
    fresh = items(["in time good"], now=1000.0)
    queue, predictor = FakeQueue(stale + fresh), FakePredictor()
    make_loop(queue, predictor, clock=clock).run(max_batches=1)
    assert predictor.batches == [["in time good"]]
    assert [r.predictions[0].label for r in queue.replies] == ["POSITIVE"]
    assert queue.published[0].counts.expired == 1


def test_malformed_messages_are_skipped_and_answered_when_possible():
    rid = new_request_id()
    readable_but_broken = msgpack.packb({"v": 1, "request_id": rid, "index": 2, "text": 42})
    queue = FakeQueue([b"\xc1\xc1garbage"] + items(["fine good"]) + [readable_but_broken])
    predictor = FakePredictor()
    make_loop(queue, predictor).run(max_batches=1)
    assert predictor.batches == [["fine good"]]
    errors = [r for r in queue.replies if r.error]
    assert [(r.request_id, r.index, r.error.code) for r in errors] == [(rid, 2, ErrorCode.MALFORMED)]
    assert queue.published[0].counts.malformed == 2


def test_a_failing_forward_pass_answers_its_batch_with_errors_and_the_loop_goes_on(caplog):
    rid = new_request_id()
    queue = FakeQueue(items(["boom here"], request_id=rid) + items(["bystander"], client_request_id="client-7")
                      + items(["later good"]))
    predictor = FakePredictor(fail_on="boom")
    loop = make_loop(queue, predictor, size=2)
    with caplog.at_level(logging.ERROR, logger="worker.loop"):
        assert loop.run(max_batches=2) == 2
    failure, = caplog.records
    # Each request of the pass by the id its client knows: its own X-Request-ID, else the one it was answered with.
    assert failure.message == f"inference failed for a batch of 2 texts of requests {rid}, client-7"
    assert failure.request_ids == [rid, "client-7"]  # the same, as a field of JSON lines
    assert failure.exc_info[1].args == ("CUDA out of memory (simulated)",)
    first, second = queue.published
    assert all(r.error.code == ErrorCode.INFERENCE_FAILED for r in first.replies) and len(first.replies) == 2
    assert first.counts.failed == 2
    assert second.replies[0].predictions[0].label == "POSITIVE"


def test_batch_wait_collects_arrivals_until_full():
    clock = Clock(1000.0)
    queue = FakeQueue(items(["a"]), arrivals={1: items(["b"]), 2: items(["c", "d"])})
    predictor = FakePredictor()
    make_loop(queue, predictor, size=4, wait_s=0.05, clock=clock).run(max_batches=1)
    assert predictor.batches == [["a", "b", "c", "d"]]
    # Each follow-up pop asks only for the room left and blocks for the remaining budget at most.
    assert [p[0] for p in queue.pops] == [4, 3, 2]
    assert all(0 < block <= 0.05 for _, block in queue.pops[1:])


def test_batch_wait_budget_counts_from_the_oldest_enqueue_time():
    clock = Clock(1000.0)
    old = items(["old"], enqueued_at=999.97)  # waited 30 ms already
    queue = FakeQueue(old, arrivals={1: items(["new"])})
    make_loop(queue, FakePredictor(), size=4, wait_s=0.05, clock=clock).run(max_batches=1)
    assert abs(queue.pops[1][1] - 0.02) < 1e-9


def test_batch_wait_of_zero_runs_what_is_there_at_once():
    queue = FakeQueue(items(["a"]), arrivals={1: items(["b"])})
    predictor = FakePredictor()
    make_loop(queue, predictor, size=4, wait_s=0.0).run(max_batches=1)
    assert predictor.batches == [["a"]] and len(queue.pops) == 1


def test_exhausted_wait_budget_runs_the_partial_batch():
    clock = Clock(1000.0)
    queue = FakeQueue(items(["a"], enqueued_at=999.0))  # older than the whole budget
    predictor = FakePredictor()
    make_loop(queue, predictor, size=4, wait_s=0.05, clock=clock).run(max_batches=1)
    assert predictor.batches == [["a"]] and len(queue.pops) == 1


def test_stop_request_finishes_the_batch_in_hand():
    queue = FakeQueue(items(["a", "b", "c"]))
    predictor = FakePredictor()
    loop = make_loop(queue, predictor, size=2, wait_s=1.0)

    original_pop = queue.pop

    def pop_then_stop(max_items, block_s, **kwargs):
        taken = original_pop(max_items, block_s, **kwargs)
        loop.request_stop()  # SIGTERM arrives while the worker holds a batch
        return taken

    queue.pop = pop_then_stop
    loop.run()
    assert predictor.batches == [["a", "b"]]  # the batch in hand ran and was published; no new pop
    assert len(queue.replies) == 2 and queue.pending  # "c" stays queued for another worker


def test_replies_carry_queue_and_inference_time():
    clock = Clock(1000.0)
    queue = FakeQueue(items(["a", "b"], enqueued_at=999.5) + items(["c"], enqueued_at=999.9))
    make_loop(queue, FakePredictor(pass_s=0.03), clock=clock).run(max_batches=1)
    assert [round(r.queue_ms, 6) for r in queue.replies] == [500.0, 500.0, 100.0]
    inference_ms = {r.inference_ms for r in queue.replies}
    assert len(inference_ms) == 1 and 30 <= inference_ms.pop() < 1000  # the pass took >= 30 ms
    assert 0.03 <= queue.published[0].inference_s < 1


def test_a_window_is_split_into_passes_by_token_budget_and_each_is_published():
    texts = ["a", "one two three four five six seven eight", "b", "nine ten eleven twelve thirteen fourteen x y", "c"]
    queue, predictor = FakeQueue(items(texts)), FakePredictor()
    loop = BatchLoop(queue, predictor, BatchPolicy(8, 0.0, 0.5, max_batch_tokens=20), clock=Clock())
    loop.run(max_batches=1)
    # short ones (3 tokens) together, the two 10-token ones together: 9 + 20 padded tokens instead of 50
    assert predictor.batches == [["a", "b", "c"], [texts[1], texts[3]]]
    assert len(queue.published) == 2
    assert [(o.counts.texts, o.counts.tokens, o.counts.padded_tokens) for o in queue.published] == [(3, 9, 9),
                                                                                                   (2, 20, 20)]
    assert sorted(r.index for r in queue.replies) == [0, 1, 2, 3, 4]
    assert loop.totals.batches == 2


def test_counters_of_the_window_go_out_with_the_first_pass():
    stale = items(["late"], now=900.0, timeout=10.0)
    queue = FakeQueue(stale + [b"\xc1junk"] + items(["x", "y y y y y y y y y y y y"]))
    BatchLoop(queue, FakePredictor(), BatchPolicy(8, 0.0, 0.5, max_batch_tokens=14), clock=Clock()).run(max_batches=1)
    first, second = queue.published
    assert (first.counts.expired, first.counts.malformed) == (1, 1)
    assert (second.counts.expired, second.counts.malformed) == (0, 0)


def test_tokenization_failure_answers_the_window_with_errors(caplog):
    class BrokenTokenizer(FakePredictor):
        def tokenize(self, texts):
            raise RuntimeError("tokenizer exploded")

    queue = FakeQueue(items(["a", "b"], client_request_id="order-1"))
    loop = BatchLoop(queue, BrokenTokenizer(), BatchPolicy(8, 0.0, 0.5, max_batch_tokens=64), clock=Clock())
    with caplog.at_level(logging.ERROR, logger="worker.loop"):
        loop.run(max_batches=1)
    assert [r.error.code for r in queue.replies] == [ErrorCode.INFERENCE_FAILED] * 2
    assert caplog.messages == ["tokenization failed for a window of 2 texts of requests order-1"]
    assert caplog.records[0].request_ids == ["order-1"]  # the same, as a field of JSON lines


@pytest.mark.parametrize("budget,passes", [(0, [["a b", "c", "d e f"]]), (1, [["a b"], ["c"], ["d e f"]])])
def test_no_token_budget_keeps_the_window_whole_and_a_tiny_one_splits_it(budget, passes):
    predictor = FakePredictor()
    queue = FakeQueue(items(["a b", "c", "d e f"]))
    BatchLoop(queue, predictor, BatchPolicy(8, 0.0, 0.5, max_batch_tokens=budget), clock=Clock()).run(max_batches=1)
    assert predictor.batches == passes
    assert predictor.tokenized == [["a b", "c", "d e f"]]  # the window, tokenized once, whatever its passes


def test_a_window_is_tokenized_once_and_its_passes_run_on_those_encodings():
    """Planning by length and running the passes share one tokenization of the window."""
    texts = ["w " * n for n in (30, 2, 28, 3, 1, 29)]
    predictor = FakePredictor()
    queue = FakeQueue(items(texts))
    BatchLoop(queue, predictor, BatchPolicy(8, 0.0, 0.5, max_batch_tokens=70), clock=Clock()).run(max_batches=1)
    assert predictor.tokenized == [texts]
    assert sorted(map(sorted, predictor.batches)) == sorted(map(sorted, [[texts[2], texts[5]], [texts[0]],
                                                                         [texts[1], texts[3], texts[4]]]))
    assert sorted(r.predictions[0].score for r in queue.replies) == sorted(len(t) / 1000 for t in texts)
    assert sum(o.counts.tokens for o in queue.published) == sum(len(t.split()) + 2 for t in texts)


@pytest.mark.parametrize("step,reason", [("run", "predictor returned 2 results for 3 texts"),
                                         ("tokenize", "tokenizer returned 2 encodings for 3 texts")])
def test_a_predictor_that_miscounts_fails_the_texts_with_the_reason(step, reason, caplog):
    class Miscounting(FakePredictor):
        pass

    setattr(Miscounting, step, lambda self, *values: getattr(FakePredictor, step)(self, *values)[:-1])
    queue = FakeQueue(items(["a", "b", "c"]))
    with caplog.at_level(logging.ERROR, logger="worker.loop"):
        make_loop(queue, Miscounting()).run(max_batches=1)
    assert [r.error.code for r in queue.replies] == [ErrorCode.INFERENCE_FAILED] * 3
    assert str(caplog.records[0].exc_info[1]) == reason


def test_every_popped_message_is_released_exactly_once():
    stale = items(["late"], now=900.0, timeout=10.0)
    junk = [b"\xc1junk"]
    good = items(["a", "b b b b b b b b b b b b", "c"])
    boom = items(["boom"])
    queue = FakeQueue(stale + junk + good + boom)
    loop = BatchLoop(queue, FakePredictor(fail_on="boom"), BatchPolicy(4, 0.0, 0.5, max_batch_tokens=14), clock=Clock())
    loop.run(max_batches=2)
    assert sorted(queue.released) == sorted(stale + junk + good + boom)


def test_the_profile_adds_the_predictors_split_of_inference_to_the_loops_phases():
    predictor = FakePredictor(pass_s=0.02)
    predictor.tokenize_s, predictor.forward_s = 1.5, 2.5  # as a real predictor accumulates them
    loop = make_loop(FakeQueue(items(["a", "b"])), predictor)
    assert loop.last_batch_size == 0 and loop.profile().infer_s == 0
    loop.run(max_batches=1)
    assert loop.last_batch_size == 2
    profile = loop.profile()
    assert (profile.tokenize_s, profile.forward_s) == (1.5, 2.5)
    assert 0.02 <= profile.infer_s < 1 and profile.pop_s >= 0 and profile.publish_s >= 0
    assert loop.profile().infer_s == profile.infer_s  # reading it changes nothing


def test_pops_take_the_lease_and_publishes_renew_it_from_measured_passes():
    queue = FakeQueue(items(["a", "b", "c"]))
    # Passes of one text each (3 tokens > half the budget): the first window has two.
    policy = BatchPolicy(2, lease_floor_s=0.01, max_batch_tokens=4)
    loop = BatchLoop(queue, FakePredictor(pass_s=0.02), policy, clock=Clock())
    loop.run(max_batches=2)
    assert queue.leases[0] == 0.01  # nothing measured yet: the floor
    # A publish with more passes to come renews the lease to >= 4x the slowest pass so far; the window's last
    # publish drops it (nothing held).
    assert [outbox.lease_s >= 4 * 0.02 for outbox in queue.published] == [True, False, False]
    assert [outbox.lease_s for outbox in queue.published][1:] == [0.0, 0.0]
    assert queue.published[0].lease_s < 1.0  # 4x a 20 ms pass, not 4x anything else
    assert queue.leases[1] >= 4 * 0.02  # the next pop: as measured so far


def test_a_pass_that_outlived_its_lease_does_not_lengthen_the_lease():
    """A frozen pass (its publish finds the window taken back) says nothing about how long passes take: counted,
    a 6 s SIGSTOP made a 24 s lease, and a second freeze was never taken back in time."""
    queue = FakeQueue(items(["a", "b"]))
    queue.reclaim_after = 0  # the first pass's publish finds the window gone: it outlived its lease
    loop = BatchLoop(queue, FakePredictor(pass_s=0.05), BatchPolicy(1, lease_floor_s=0.01), clock=Clock())
    loop.run(max_batches=2)
    assert queue.leases == [0.01, 0.01]  # the next window's lease: still the floor


def test_the_lease_stays_within_a_third_of_the_requests_time_budget(caplog):
    """However slow recent passes were, a frozen window is taken back early enough for its texts to run again
    before their deadline (items carry their budget: deadline - enqueue time); the operator is told what to change
    so that a slow pass is not taken for a freeze."""
    import re

    queue = FakeQueue(items(["a", "b", "c"], timeout=0.3))
    policy = BatchPolicy(1, lease_floor_s=0.01)
    loop = BatchLoop(queue, FakePredictor(pass_s=0.05), policy, clock=Clock(1000.0))
    with caplog.at_level(logging.WARNING, logger="worker.loop"):
        loop.run(max_batches=3)
    assert queue.leases[0] == 0.01 and queue.leases[1:] == [pytest.approx(0.1)] * 2  # not 4 x 50 ms
    assert caplog.messages and all(re.fullmatch(
        r"passes take up to 0\.0[5-9] s; the work lease is held at 0\.10 s, a third of the requests' time budget, so "
        r"a slower pass is taken for a freeze and its window runs again elsewhere: raise REQUEST_TIMEOUT_S or lower "
        r"MAX_BATCH_TOKENS / MAX_BATCH_SIZE", m) for m in caplog.messages), caplog.messages


def test_a_window_taken_back_while_the_worker_stalled_is_not_run_any_further():
    texts = ["a", "b b", "c c c", "d d d d"]
    queue = FakeQueue(items(texts))
    queue.reclaim_after = 0  # the first pass's publish finds the window gone
    predictor = FakePredictor()
    # Passes of at most 8 padded tokens: [a, b b], then [c c c], then [d d d d].
    loop = BatchLoop(queue, predictor, BatchPolicy(4, max_batch_tokens=8), clock=Clock())
    assert loop.run(max_batches=1) == 1
    assert predictor.batches == [["a", "b b"]]  # the rest runs on the workers it was given to
    assert queue.published[-1].counts.reclaimed == 2 and loop.totals.reclaimed == 2
    assert queue.published[-1].lease_s == 0.0  # holds nothing any more
    assert [raw for outbox in queue.published for raw in outbox.done] == queue.published[0].done


def test_a_suspect_never_joins_a_window_being_filled():
    clock = Clock(1000.0)
    fresh, suspect = items(["fresh"]), items(["suspect"])
    queue = FakeQueue(fresh, arrivals={1: suspect})
    queue.suspects = set(suspect)
    predictor = FakePredictor()
    loop = BatchLoop(queue, predictor, BatchPolicy(4, max_batch_wait_s=0.05), clock=clock)
    loop.run(max_batches=2)
    assert predictor.batches == [["fresh"], ["suspect"]]  # the suspect ran alone, in a window of its own


def test_the_loop_records_its_progress_at_every_pop_and_publish():
    clock = Clock(1000.0)
    queue = FakeQueue(items(["a"]))
    loop = make_loop(queue, clock=clock)
    assert loop.last_progress == 1000.0
    clock.now = 1005.0
    loop.run_once()  # a pop and a publish
    assert loop.last_progress == 1005.0
    clock.now = 1009.0
    loop.run_once()  # an empty pop is progress too: the loop is not stuck
    assert loop.last_progress == 1009.0


def test_a_window_of_garbage_only_is_published_holding_nothing():
    queue = FakeQueue([b"\xc1 not msgpack", b"\xc1 neither"])
    make_loop(queue).run(max_batches=1)
    assert len(queue.published) == 1 and queue.published[0].lease_s == 0.0
    assert queue.published[0].counts.malformed == 2


def test_each_pass_is_logged_at_debug_with_its_size_and_the_requests_it_served(caplog):
    rid = new_request_id()
    queue = FakeQueue(items(["a good", "b"], client_request_id="abc-123") + items(["c"], request_id=rid)
                      + items(["d"], client_request_id="abc-123"))
    with caplog.at_level(logging.DEBUG, logger="worker.loop"):
        make_loop(queue, size=4).run(max_batches=1)
    line, = [r for r in caplog.records if r.message.startswith("pass of")]
    assert line.levelno == logging.DEBUG
    assert line.message.startswith("pass of 4 texts in ") and line.message.endswith(f"ms for requests abc-123, {rid}")
    assert (line.request_ids, line.texts) == (["abc-123", rid], 4)


def test_no_pass_line_is_built_above_debug(caplog):
    with caplog.at_level(logging.INFO, logger="worker.loop"):
        make_loop(FakeQueue(items(["a", "b"]))).run(max_batches=1)
    assert caplog.records == []


def test_texts_dropped_past_their_deadline_are_a_warning_naming_their_requests(caplog):
    clock = Clock(1000.0)
    late = items(["too late", "also late"], now=980.0, timeout=10.0, client_request_id="slow-client")
    queue = FakeQueue(late + items(["in time"], now=1000.0))
    with caplog.at_level(logging.WARNING, logger="worker.loop"):
        make_loop(queue, clock=clock).run(max_batches=1)
    warning, = caplog.records
    assert warning.message == ("dropped 2 text(s) past their deadline (their clients had a 504) of requests "
                               "slow-client")
    assert warning.request_ids == ["slow-client"]


def test_every_reply_names_what_answered_it():
    """Replies carry the card's ``answers``: the API keys its response cache by it (a reply naming nothing is
    never cached)."""
    queue, predictor = FakeQueue(items(["a good", "b"])), FakePredictor()
    make_loop(queue, predictor).run(max_batches=1)
    assert [r.model for r in queue.replies] == [predictor.card.answers] * 2


def test_a_window_taken_back_is_a_warning_naming_the_requests_of_its_unrun_texts(caplog):
    first, second = new_request_id(), new_request_id()
    queue = FakeQueue(items(["a"], request_id=first) + items(["b b b b b b"], client_request_id="late-1")
                      + items(["c c c c c c c"], request_id=second))
    queue.reclaim_after = 0  # the first pass's publish finds the window gone
    # Passes of at most 8 padded tokens: [a], then [b b b b b b], then [c c c c c c c].
    loop = BatchLoop(queue, FakePredictor(), BatchPolicy(4, max_batch_tokens=8), clock=Clock())
    with caplog.at_level(logging.WARNING, logger="worker.loop"):
        loop.run(max_batches=1)
    warning, = caplog.records
    assert warning.message == ("this worker held its window past its lease (2.0 s) and it was given to other "
                               f"workers; dropping its 2 unrun text(s) of requests late-1, {second}")
    assert warning.request_ids == ["late-1", second]


def test_a_text_whose_deadline_is_now_is_dropped_and_named(caplog):
    """The deadline is the instant the API answers 504: a text still queued then is one of the dropped."""
    clock = Clock(1000.0)
    queue = FakeQueue(items(["just too late"], now=990.0, timeout=10.0, client_request_id="edge-client")
                      + items(["in time"], now=1000.0))
    predictor = FakePredictor()
    with caplog.at_level(logging.WARNING, logger="worker.loop"):
        make_loop(queue, predictor, clock=clock).run(max_batches=1)
    assert predictor.batches == [["in time"]]
    warning, = caplog.records
    assert warning.request_ids == ["edge-client"]


def test_the_pass_line_gives_the_inference_time_the_replies_carry(caplog, monkeypatch):
    """Log line and replies agree on a pass's time, to the line's 0.1 ms: here 123.45 ms on a fake clock."""
    now = [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])

    class Timed(FakePredictor):
        def run(self, encodings, options):
            now[0] += 0.12345
            return super().run(encodings, options)

    queue = FakeQueue(items(["a", "b"]))
    with caplog.at_level(logging.DEBUG, logger="worker.loop"):
        make_loop(queue, Timed()).run(max_batches=1)
    line, = [r for r in caplog.records if r.message.startswith("pass of")]
    ms = queue.replies[0].inference_ms
    assert ms == pytest.approx(123.45)
    assert f"in {ms:.1f} ms for" in line.message
    assert line.inference_ms == round(ms, 1) and isinstance(line.inference_ms, float)


def test_every_queue_takes_the_calls_of_the_loop_as_the_protocol_declares_them():
    """The loop is written against RequestQueue; a queue that differs from it (a parameter, a default such as
    suspect_allowed's) would go unnoticed by the loop's tests, which run on the fake."""
    declared = inspect.signature(RequestQueue.pop)
    for queue in (RedisRequestQueue, FakeQueue):
        assert inspect.signature(queue.pop) == declared, queue
    # The calls the loop makes (an idle pop, then one filling a window) fit the declaration itself.
    assert RequestQueue.pop(FakeQueue(), 4, 0.5, lease_s=2.0) is None
    assert RequestQueue.pop(FakeQueue(), 3, 0.05, lease_s=2.0, suspect_allowed=False) is None


def test_a_window_of_refused_texts_runs_no_pass_and_warns_of_nothing_even_when_taken_back(caplog):
    """Every text refused (the model has 2 labels, they ask for 3): answered in one publish, holding nothing. Had the
    window been taken back meanwhile, no text was left unrun, so there is nothing to warn of."""
    queue = FakeQueue([encode_item(replace(decode_item(raw), options=Options(top_k=3))) for raw in items(["a", "b"])])
    queue.reclaim_after = 0
    predictor = FakePredictor()
    with caplog.at_level(logging.WARNING, logger="worker.loop"):
        assert make_loop(queue, predictor).run(max_batches=1) == 1
    assert predictor.batches == [] and caplog.records == []
    outbox, = queue.published
    assert [r.error.code for r in outbox.replies] == [ErrorCode.INVALID_INPUT] * 2
    assert (outbox.counts.invalid, outbox.lease_s) == (2, 0.0)
