import random

from engine.batching import padded_tokens, plan_batches


def test_groups_similar_lengths_within_the_token_budget():
    lengths = [5, 40, 6, 38, 5, 41]
    plan = plan_batches(lengths, max_batch_tokens=90)
    assert sorted(sorted(b) for b in plan) == [[0, 2, 4], [1, 3], [5]]
    for batch in plan:
        assert max(lengths[i] for i in batch) * len(batch) <= 90


def test_every_text_is_planned_exactly_once():
    rng = random.Random(3)
    lengths = [rng.randint(3, 120) for _ in range(64)]
    plan = plan_batches(lengths, 512)
    assert sorted(i for b in plan for i in b) == list(range(64))


def test_grouping_wastes_less_padding_than_arrival_order():
    rng = random.Random(5)
    lengths = [rng.choice([8, 12, 20, 25, 30, 45, 60]) for _ in range(64)]
    grouped = padded_tokens(lengths, plan_batches(lengths, 512))
    arrival = padded_tokens(lengths, [list(range(i, i + 16)) for i in range(0, 64, 16)])
    assert grouped < 0.8 * arrival


def test_a_text_longer_than_the_budget_runs_alone():
    assert plan_batches([600, 5, 5], 512) == [[0], [1, 2]]


def test_batches_run_in_order_of_their_oldest_member():
    plan = plan_batches([50, 5, 50, 5], 100)
    assert plan == [[0, 2], [1, 3]]  # the first arrival's batch goes first
    assert plan_batches([5, 50, 5, 50], 100)[0][0] == 0


def test_no_budget_keeps_the_window_in_arrival_order():
    assert plan_batches([9, 1, 5], 0) == [[0, 1, 2]]
    assert plan_batches([], 512) == []


def test_a_budget_of_one_token_runs_every_text_alone():
    assert plan_batches([3, 2, 4], 1) == [[0], [1], [2]]
