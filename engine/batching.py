"""Padding-aware batch formation: split a window of texts into forward passes by token length.

A forward pass costs roughly (longest text in it) x (texts in it) tokens, padding included. Grouping texts
of similar length wastes little padding, so the same window runs in fewer padded tokens. Like
text-embeddings-inference, the budget is counted in padded tokens, not in requests.
"""

from __future__ import annotations

from collections.abc import Sequence


def plan_batches(lengths: Sequence[int], max_batch_tokens: int) -> list[list[int]]:
    """Indices of ``lengths`` grouped into batches whose padded size (longest x count) stays within
    ``max_batch_tokens`` (a text longer than the budget runs alone). Batches run in the order of their oldest
    member, so the window's first arrival is in the first batch: no text waits behind later arrivals for more
    than the window it came in. ``max_batch_tokens <= 0`` keeps one batch in arrival order."""
    if not lengths:
        return []
    if max_batch_tokens <= 0:
        return [list(range(len(lengths)))]
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        candidate_longest = max(longest, lengths[i])
        if current and candidate_longest * (len(current) + 1) > max_batch_tokens:
            batches.append(current)
            current, candidate_longest = [], lengths[i]
        current.append(i)
        longest = candidate_longest
    batches.append(current)
    return sorted((sorted(batch) for batch in batches), key=lambda batch: batch[0])


def padded_tokens(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> int:
    return sum(max(lengths[i] for i in batch) * len(batch) for batch in batches)
